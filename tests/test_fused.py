"""The fused backend (BPTT by hand) against the reference backend (autograd per step)."""

import pytest
import torch
from torch.autograd import gradcheck

import rnnkit
from rnnkit.backends import fused
from rnnkit.backends.spec import Masks
from rnnkit.cells import Weights

D = torch.float64
LAYERS = {"LSTM": rnnkit.LSTM, "GRU": rnnkit.GRU, "RNN": rnnkit.RNN}
OPTIONS = {
    "plain": {},
    "layer_norm": {"layer_norm": True},
    "zoneout": {"zoneout": 0.3},
    "zoneout_hc": {"zoneout": (0.3, 0.6)},
    "recurrent_dropout": {"recurrent_dropout": 0.4},
    "weight_drop": {"weight_drop": 0.3, "dropout": 0.2},
    "no_bias": {"bias": False, "layer_norm": True},
    "projection": {"proj_size": 2},
    "everything": {"layer_norm": True, "recurrent_dropout": 0.3, "zoneout": 0.2,
                   "weight_drop": 0.2, "proj_size": 3},
}


def _run(layer, x, lengths, seed):
    """Outputs, final states and gradients of x and every parameter, under one seed."""
    torch.manual_seed(seed)
    y, h = layer(x, lengths=lengths)
    states = h if isinstance(h, tuple) else (h,)
    weights = torch.linspace(-1, 1, y.numel(), dtype=D).view_as(y).sin()
    loss = (y * weights).sum() + sum((s ** 2).sum() for s in states)
    grads = torch.autograd.grad(loss, [x, *layer.parameters()])
    return [y, *states, *grads]


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("kind", LAYERS)
def test_fused_equals_reference(kind, option, train):
    kw = dict(OPTIONS[option])
    if kind != "LSTM" and "proj_size" in kw:
        kw.pop("proj_size")
    torch.manual_seed(0)
    ref = LAYERS[kind](4, 5, num_layers=2, bidirectional=True, dtype=D, backend="reference", **kw)
    fast = LAYERS[kind](4, 5, num_layers=2, bidirectional=True, dtype=D, backend="fused", **kw)
    fast.load_state_dict(ref.state_dict())
    ref.train(train), fast.train(train)
    x = torch.randn(6, 3, 4, dtype=D, requires_grad=True)
    for lengths in (None, torch.tensor([6, 1, 4])):
        for a, b in zip(_run(ref, x, lengths, 7), _run(fast, x, lengths, 7)):
            torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)


def _direction_inputs(mode, *, ln, proj, drop, zoneout, lengths, bias=True):
    """Random leaves for one direction of one layer, in ``fused.run_direction``'s terms."""
    T, B, I, H = 4, 3, 5, 4
    G = {"LSTM": 4, "GRU": 3}.get(mode, 1)
    P = 2 if proj else H
    leaf = lambda *s: torch.randn(*s, dtype=D, requires_grad=True)
    w = Weights(leaf(G * H, I), leaf(G * H, P), leaf(G * H) if bias else None,
                leaf(G * H) if bias else None, leaf(P, H) if proj else None,
                leaf(G * H) if ln else None, leaf(G * H) if ln else None,
                leaf(H) if ln and mode == "LSTM" else None,
                leaf(H) if ln and mode == "LSTM" else None)
    state = (leaf(B, P), leaf(B, H)) if mode == "LSTM" else (leaf(B, P),)
    keep = lambda n: torch.bernoulli(torch.full((T, B, n), 0.4, dtype=D)) if zoneout else 0.0
    masks = Masks(torch.bernoulli(torch.full((B, P), 0.7, dtype=D)) / 0.7 if drop else None,
                  keep(P), keep(H))
    valid = None
    if lengths:
        valid = (torch.arange(T).unsqueeze(1) < torch.tensor([4, 1, 3])).unsqueeze(-1)
    return leaf(T, B, I), state, w, masks, valid


GRADCHECK_CASES = [
    ("LSTM", dict(ln=False, proj=False, drop=False, zoneout=False, lengths=False)),
    ("LSTM", dict(ln=True, proj=True, drop=True, zoneout=True, lengths=True)),
    ("LSTM", dict(ln=True, proj=False, drop=False, zoneout=False, lengths=False, bias=False)),
    ("GRU", dict(ln=False, proj=False, drop=False, zoneout=False, lengths=False)),
    ("GRU", dict(ln=True, proj=False, drop=True, zoneout=True, lengths=True)),
    ("RNN_TANH", dict(ln=True, proj=False, drop=True, zoneout=True, lengths=True)),
    ("RNN_RELU", dict(ln=False, proj=False, drop=True, zoneout=False, lengths=True)),
]


@pytest.mark.parametrize("mode,opts", GRADCHECK_CASES)
def test_gradcheck(mode, opts):
    torch.manual_seed(1)
    x, state, w, masks, valid = _direction_inputs(mode, **opts)
    leaves = [x, *state, *[t for t in w if t is not None]]

    def f(*args):
        it = iter(args)
        xx = next(it)
        st = tuple(next(it) for _ in state)
        ww = Weights(*[None if t is None else next(it) for t in w])
        y, final = fused.run_direction(xx, st, ww, mode, masks, valid)
        return (y, *final)

    assert gradcheck(f, leaves, eps=1e-6, atol=1e-7)


def test_eval_mode_backward_and_no_grad():
    """Gradients without train mode (cuDNN cannot), and a plain no_grad forward."""
    torch.manual_seed(2)
    layer = rnnkit.LSTM(3, 4, layer_norm=True, zoneout=0.2, backend="fused", dtype=D).eval()
    x = torch.randn(5, 2, 3, dtype=D, requires_grad=True)
    y, _ = layer(x)
    y.sum().backward()
    ref = rnnkit.LSTM(3, 4, layer_norm=True, zoneout=0.2, backend="reference", dtype=D).eval()
    ref.load_state_dict(layer.state_dict())
    x2 = x.detach().clone().requires_grad_()
    ref(x2)[0].sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-10, atol=1e-12)
    with torch.no_grad():
        torch.testing.assert_close(layer(x)[0], ref(x)[0], rtol=1e-10, atol=1e-12)


def test_float32_close_to_float64():
    torch.manual_seed(3)
    layer = rnnkit.GRU(8, 16, num_layers=2, layer_norm=True, backend="fused")
    x = torch.randn(20, 4, 8)
    y32, _ = layer(x)
    y64, _ = layer.double()(x.double())
    torch.testing.assert_close(y32.double(), y64, rtol=1e-4, atol=1e-5)


def test_state_hook_is_refused():
    with pytest.raises(ValueError, match="state hook"):
        fused.run_direction(*_direction_inputs("GRU", ln=False, proj=False, drop=False,
                                               zoneout=False, lengths=False)[:2],
                            None, "GRU", Masks(), None, state_hook=lambda t, s: s)


@pytest.mark.parametrize("kind", LAYERS)
def test_two_backwards_through_one_forward(kind):
    """retain_graph=True: a second backward sees the same saved state as the first."""
    torch.manual_seed(4)
    layer = LAYERS[kind](3, 4, layer_norm=True, backend="fused", dtype=D)
    x = torch.randn(5, 2, 3, dtype=D, requires_grad=True)
    y, _ = layer(x)
    first = torch.autograd.grad(y.sum(), x, retain_graph=True)[0]
    second = torch.autograd.grad((2 * y).sum(), x)[0]
    torch.testing.assert_close(second, 2 * first, rtol=1e-12, atol=1e-14)
