"""Cells against torch.nn cells, and layers against their cell stepped by hand."""

import pytest
import torch
from torch import nn

import rnnkit
from conftest import D, assert_all_close

PAIRS = [(rnnkit.RNNCell, nn.RNNCell, {"nonlinearity": "tanh"}),
         (rnnkit.RNNCell, nn.RNNCell, {"nonlinearity": "relu"}),
         (rnnkit.LSTMCell, nn.LSTMCell, {}), (rnnkit.GRUCell, nn.GRUCell, {})]


def _grads(cell, x, hx):
    out = cell(x, hx)
    outs = out if isinstance(out, tuple) else (out,)
    loss = sum((o * torch.arange(o.numel(), dtype=D).view_as(o).cos()).sum() for o in outs)
    leaves = [x] + (list(hx) if isinstance(hx, tuple) else [hx] if hx is not None else [])
    return [*outs, *torch.autograd.grad(loss, leaves + list(cell.parameters()))]


@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("ours_cls,torch_cls,kw", PAIRS)
def test_cell_equals_torch(ours_cls, torch_cls, kw, batched):
    torch.manual_seed(0)
    ours, theirs = ours_cls(4, 5, dtype=D, **kw), torch_cls(4, 5, dtype=D, **kw)
    theirs.load_state_dict(ours.state_dict())  # rnnkit -> torch.nn
    ours.load_state_dict(theirs.state_dict())  # and back
    shape = (3,) if batched else ()
    x = torch.randn(*shape, 4, dtype=D, requires_grad=True)
    for with_hx in (False, True):
        hx = None
        if with_hx:
            h = torch.randn(*shape, 5, dtype=D, requires_grad=True)
            hx = (h, torch.randn(*shape, 5, dtype=D, requires_grad=True)) \
                if ours_cls is rnnkit.LSTMCell else h
        assert_all_close(_grads(ours, x, hx), _grads(theirs, x, hx))


@pytest.mark.parametrize("backend", ["reference", "fused", "native"])
@pytest.mark.parametrize("layer_cls,cell_cls", [(rnnkit.RNN, rnnkit.RNNCell),
                                                (rnnkit.LSTM, rnnkit.LSTMCell),
                                                (rnnkit.GRU, rnnkit.GRUCell)])
def test_layer_equals_cell_stepped_by_hand(layer_cls, cell_cls, backend):
    torch.manual_seed(1)
    layer = layer_cls(4, 5, dtype=D, backend=backend)
    cell = cell_cls(4, 5, dtype=D)
    cell.load_state_dict({k.removesuffix("_l0"): v for k, v in layer.state_dict().items()})
    x = torch.randn(7, 3, 4, dtype=D)
    out, _ = layer(x)
    h = torch.zeros(3, 5, dtype=D)
    state = (h, h.clone()) if cell_cls is rnnkit.LSTMCell else h
    for t in range(7):
        state = cell(x[t], state)
        h_t = state[0] if isinstance(state, tuple) else state
        torch.testing.assert_close(out[t], h_t, rtol=1e-12, atol=1e-14)
