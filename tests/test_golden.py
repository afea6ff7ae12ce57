"""Golden values from constant initialisers, computed step by step with plain ``math``."""

import math

import pytest
import torch

import rnnkit
from conftest import D

sig = lambda v: 1.0 / (1.0 + math.exp(-v))


def _constant(layer, w=0.5, b=0.1):
    with torch.no_grad():
        for name, p in layer.named_parameters():
            p.fill_(b if name.startswith("bias") else w)
    return layer


def _run(layer, xs, train=False):
    layer.train(train)
    x = torch.tensor(xs, dtype=D).view(len(xs), 1, 1)
    out, _ = layer(x)
    return out.view(-1).tolist()


@pytest.mark.parametrize("backend", ["reference", "fused", "native"])
def test_rnn_tanh_and_relu(backend):
    xs = [1.0, -3.0, 0.5]
    for act, fn in (("tanh", math.tanh), ("relu", lambda v: max(v, 0.0))):
        h, expected = 0.0, []
        for x in xs:
            h = fn(0.5 * x + 0.1 + 0.5 * h + 0.1)
            expected.append(h)
        layer = _constant(rnnkit.RNN(1, 1, nonlinearity=act, dtype=D, backend=backend))
        assert _run(layer, xs) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    # the same numbers written down once, so a change in both sides is caught too
    layer = _constant(rnnkit.RNN(1, 1, dtype=D, backend=backend))
    assert _run(layer, xs) == pytest.approx([0.6043677771171636, -0.7606754522349581,
                                             0.06954980574644042], rel=1e-12)


def _lstm_1x1(x, h, c):
    """One step of LSTM(1, 1) with every weight 0.5 and every bias 0.1: all four gates
    share one pre-activation ``a``."""
    a = 0.5 * x + 0.1 + 0.5 * h + 0.1
    c_new = sig(a) * c + sig(a) * math.tanh(a)
    return sig(a) * math.tanh(c_new), c_new


@pytest.mark.parametrize("backend", ["reference", "fused", "native"])
def test_lstm(backend):
    h = c = 0.0
    expected = []
    for x in (1.0, 1.0, 1.0):
        h, c = _lstm_1x1(x, h, c)
        expected.append(h)
    layer = _constant(rnnkit.LSTM(1, 1, dtype=D, backend=backend))
    assert _run(layer, [1.0] * 3) == pytest.approx(expected, rel=1e-12)
    assert expected[0] == pytest.approx(0.2560644343885229, rel=1e-12)


@pytest.mark.parametrize("backend", ["reference", "fused", "native"])
def test_gru(backend):
    h, expected = 0.0, []
    for x in (1.0, 1.0, 1.0):
        r = z = sig(0.5 * x + 0.1 + 0.5 * h + 0.1)
        n = math.tanh(0.5 * x + 0.1 + r * (0.5 * h + 0.1))
        h = (1 - z) * n + z * h
        expected.append(h)
    layer = _constant(rnnkit.GRU(1, 1, dtype=D, backend=backend))
    assert _run(layer, [1.0] * 3) == pytest.approx(expected, rel=1e-12)


def _ln(v, gain, bias):
    mean = sum(v) / len(v)
    var = sum((e - mean) ** 2 for e in v) / len(v)
    return [(e - mean) / math.sqrt(var + 1e-5) * g + b for e, g, b in zip(v, gain, bias)]


@pytest.mark.parametrize("backend", ["reference", "fused"])
def test_layer_norm_lstm(backend):
    H = 2
    w_ih = [0.1 * (k + 1) for k in range(4 * H)]
    w_hh = [[0.05 * (k - j) for j in range(H)] for k in range(4 * H)]
    g_ih = [1 + 0.1 * k for k in range(4 * H)]
    g_hh = [1 - 0.05 * k for k in range(4 * H)]
    g_c, b_c = [1.0, 0.5], [0.1, -0.1]
    layer = rnnkit.LSTM(1, H, layer_norm=True, dtype=D, backend=backend)
    with torch.no_grad():
        layer.weight_ih_l0.copy_(torch.tensor(w_ih, dtype=D).view(-1, 1))
        layer.weight_hh_l0.copy_(torch.tensor(w_hh, dtype=D))
        layer.bias_ih_l0.fill_(0.1), layer.bias_hh_l0.fill_(-0.05)
        layer.ln_weight_ih_l0.copy_(torch.tensor(g_ih, dtype=D))
        layer.ln_weight_hh_l0.copy_(torch.tensor(g_hh, dtype=D))
        layer.ln_weight_c_l0.copy_(torch.tensor(g_c, dtype=D)), layer.ln_bias_c_l0.copy_(torch.tensor(b_c, dtype=D))
    h, c, expected = [0.5, -0.5], [0.0, 0.0], []
    hx = (torch.tensor(h, dtype=D).view(1, 1, 2), torch.zeros(1, 1, 2, dtype=D))
    for x in (1.0, -2.0, 0.5):
        xi = _ln([w * x for w in w_ih], g_ih, [0.0] * 8)
        hh = _ln([sum(w * e for w, e in zip(row, h)) for row in w_hh], g_hh, [0.0] * 8)
        a = [p + q + 0.1 - 0.05 for p, q in zip(xi, hh)]
        i, f, g, o = [a[k * H : (k + 1) * H] for k in range(4)]
        c = [sig(f[j]) * c[j] + sig(i[j]) * math.tanh(g[j]) for j in range(H)]
        cn = _ln(c, g_c, b_c)
        h = [sig(o[j]) * math.tanh(cn[j]) for j in range(H)]
        expected += h
    out, _ = layer(torch.tensor([1.0, -2.0, 0.5], dtype=D).view(3, 1, 1), hx)
    assert out.view(-1).tolist() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("backend", ["reference", "fused"])
def test_zoneout_eval_is_the_expectation(backend):
    h = c = 0.0
    expected = []
    for x in (1.0, 1.0, 1.0):
        h_new, c_new = _lstm_1x1(x, h, c)
        h, c = 0.3 * h + 0.7 * h_new, 0.6 * c + 0.4 * c_new
        expected.append(h)
    layer = _constant(rnnkit.LSTM(1, 1, zoneout=(0.3, 0.6), dtype=D, backend=backend))
    assert _run(layer, [1.0] * 3) == pytest.approx(expected, rel=1e-12)


def test_forget_bias_initialisation():
    layer = rnnkit.LSTM(3, 4, num_layers=2, bidirectional=True, forget_bias=1.5)
    for name, p in layer.named_parameters():
        if name.startswith("bias_ih"):
            assert torch.all(p[4:8] == 1.5)
        if name.startswith("bias_hh"):
            assert torch.all(p[4:8] == 0.0)
        if name.startswith("ln_"):
            raise AssertionError("no layer-norm parameters without layer_norm=True")
