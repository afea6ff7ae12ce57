"""rnnkit.graphed: what it refuses, without a GPU (tests/test_cuda.py replays graphs on one)."""

import pytest
import torch

import rnnkit


@pytest.mark.parametrize("args, error, message", [
    ((), ValueError, "at least one sample input"),
    ((torch.zeros(3, 2, 4),), ValueError, "sample input 0 must be a CUDA tensor, got cpu"),
    (([1.0],), ValueError, "sample input 0 must be a CUDA tensor, got list"),
])
def test_bad_samples_are_refused(args, error, message):
    with pytest.raises(error, match=message):
        rnnkit.graphed(rnnkit.LSTM(4, 5), *args)


def test_only_modules():
    with pytest.raises(TypeError, match="needs an nn.Module, got function"):
        rnnkit.graphed(lambda x: x, torch.zeros(1))
