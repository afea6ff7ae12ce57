"""lengths= on a padded batch equals running each sequence alone."""

import pytest
import torch

import rnnkit
from conftest import D, states_of

EXTRAS = {"plain": {}, "ln_zoneout": {"layer_norm": True, "zoneout": 0.25},
          "rdrop_proj": {"recurrent_dropout": 0.3, "proj_size": 2}}
# native runs only torch.nn's options (forcing it with an extra is an error: test_errors)
CASES = [(b, name) for b in ("reference", "fused", "native") for name in EXTRAS
         if b != "native" or name == "plain"]


@pytest.mark.parametrize("backend,extras", CASES)
@pytest.mark.parametrize("cls", [rnnkit.RNN, rnnkit.LSTM, rnnkit.GRU])
def test_padded_batch_equals_each_sequence_alone(cls, backend, extras):
    kw = dict(EXTRAS[extras])
    if cls is not rnnkit.LSTM:
        kw.pop("proj_size", None)
    torch.manual_seed(0)
    layer = cls(3, 4, num_layers=2, bidirectional=True, dtype=D, backend=backend, **kw).eval()
    x = torch.randn(7, 4, 3, dtype=D)
    lengths = torch.tensor([7, 2, 5, 1])
    out, h = layer(x, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        alone, h_alone = layer(x[:n, b : b + 1])
        torch.testing.assert_close(out[:n, b : b + 1], alone, rtol=1e-10, atol=1e-12)
        assert torch.all(out[n:, b] == 0), "outputs past the end must be zero"
        for s, s_alone in zip(states_of(h), states_of(h_alone)):
            torch.testing.assert_close(s[:, b : b + 1], s_alone, rtol=1e-10, atol=1e-12)


def test_reverse_direction_starts_at_each_end():
    """The reverse direction's first step is each sequence's last valid element."""
    torch.manual_seed(1)
    layer = rnnkit.GRU(2, 3, bidirectional=True, dtype=D)
    x = torch.randn(5, 2, 2, dtype=D)
    lengths = torch.tensor([5, 3])
    out, _ = layer(x, lengths=lengths)
    # at position n-1, the reverse half has seen exactly one element: x[n-1]
    one_step, _ = layer(x[2:3, 1:2])
    torch.testing.assert_close(out[2, 1, 3:], one_step[0, 0, 3:], rtol=1e-12, atol=1e-14)


def test_lengths_as_list_and_on_cpu_are_accepted():
    layer = rnnkit.LSTM(2, 3, dtype=D)
    x = torch.randn(4, 2, 2, dtype=D)
    a, _ = layer(x, lengths=[4, 2])
    b, _ = layer(x, lengths=torch.tensor([4, 2], dtype=torch.int32))
    torch.testing.assert_close(a, b)
