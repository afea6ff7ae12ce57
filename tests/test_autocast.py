"""Under autocast (bf16 on GPU by default in training) every backend runs, a carried bf16
state is accepted, and the fused and reference recurrences keep the weights' precision."""

import pytest
import torch

import rnnkit


@pytest.mark.parametrize("backend,extras", [
    ("fused", {"layer_norm": True}), ("reference", {"zoneout": 0.1}), ("fused", {}),
])
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_fused_and_reference_keep_float32_under_autocast(kind, backend, extras):
    torch.manual_seed(0)
    layer = getattr(rnnkit, kind)(6, 5, num_layers=2, backend=backend, **extras).eval()
    x = torch.randn(7, 3, 6)
    out, state = layer(x)
    carried = tuple(s.to(torch.bfloat16) for s in (state if kind == "LSTM" else (state,)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp_out, _ = layer(x, carried if kind == "LSTM" else carried[0])
        fresh, _ = layer(x)
    assert amp_out.dtype == fresh.dtype == torch.float32
    torch.testing.assert_close(fresh, out, rtol=0, atol=0)  # autocast left the recurrence alone
    exact, _ = layer(x, tuple(s.float() for s in carried) if kind == "LSTM"
                     else carried[0].float())
    torch.testing.assert_close(amp_out, exact, rtol=0, atol=0)


def test_native_accepts_a_bf16_state_under_autocast():
    torch.manual_seed(0)
    layer = rnnkit.LSTM(6, 5, backend="native")
    x = torch.randn(7, 3, 6)
    ref, _ = layer(x)
    h = (torch.zeros(1, 3, 5, dtype=torch.bfloat16),) * 2
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, (h_n, c_n) = layer(x, h)
        out.float().sum().backward()
    torch.testing.assert_close(out.float(), ref, rtol=0.05, atol=0.02)  # bf16 has 8 bits
    assert layer.weight_hh_l0.grad is not None
