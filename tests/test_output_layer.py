"""The language models' output layer: oneDNN's product forward, torch's backward."""

import pytest
import torch
from torch.nn import functional as F

from rnnkit.backends import _matmul
from rnnkit.backends._matmul import linear_layer

needs_onednn = pytest.mark.skipif(not _matmul.onednn(torch.zeros(1)),
                                  reason="torch without oneDNN")


def _grads(fn, x, w, b):
    x, w, b = (t.detach().clone().requires_grad_() for t in (x, w, b))
    out = fn(x, w, b)
    (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
    return out, x.grad, w.grad, b.grad


@needs_onednn
def test_float32_goes_to_onednn_and_equals_f_linear(monkeypatch):
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(5, 40, 30, generator=g), torch.randn(300, 30, generator=g), \
        torch.randn(300, generator=g)
    got, want = _grads(linear_layer, x, w, b), _grads(F.linear, x, w, b)
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-5)
    calls = []
    real = torch.ops.mkldnn._linear_pointwise
    monkeypatch.setattr(_matmul, "_onednn_linear", lambda *a: calls.append(1) or real(*a))
    linear_layer(x, w, b)
    assert calls


def test_float64_few_rows_and_autocast_are_f_linear(monkeypatch):
    monkeypatch.setattr(_matmul, "_onednn_linear", lambda *a: pytest.fail("oneDNN called"))
    x, w, b = torch.randn(200, 8, dtype=torch.float64), torch.randn(6, 8, dtype=torch.float64), \
        torch.randn(6, dtype=torch.float64)
    for a, e in zip(_grads(linear_layer, x, w, b), _grads(F.linear, x, w, b)):
        torch.testing.assert_close(a, e, rtol=0, atol=0)
    few = torch.randn(_matmul.MIN_ROWS - 1, 8)
    linear_layer(few, w.float(), b.float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert linear_layer(x.float(), w.float(), b.float()).dtype == torch.bfloat16
