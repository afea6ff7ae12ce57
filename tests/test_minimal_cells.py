"""minGRU and minLSTM: the scans against the cell stepped by hand, lengths, gradients,
golden values, long sequences and one-line errors."""

import pytest
import torch

import rnnkit
from conftest import D
from rnnkit.layers.minimal import SCANS, linear_scan, log_scan, sequential_scan

CELLS = {rnnkit.MinGRU: rnnkit.MinGRUCell, rnnkit.MinLSTM: rnnkit.MinLSTMCell}
# (scan, activation): the log scan needs the positive candidate g; the others take either
MODES = [("log", "g"), ("linear", "g"), ("linear", "identity"), ("sequential", "identity")]
CASES = [(cls, scan, act) for cls in CELLS for scan, act in MODES]


def close(actual, expected, rtol=1e-10, atol=1e-12):
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)


def cell_of(layer, layer_index, direction):
    """The layer's weights of one layer and direction, in a cell."""
    sfx = f"_l{layer_index}" + ("_reverse" if direction else "")
    cell_cls = CELLS[type(layer)]
    in_size = layer.input_size if layer_index == 0 else layer.hidden_size * layer.num_directions
    cell = cell_cls(in_size, layer.hidden_size, bias=layer.bias, dtype=D,
                    activation=layer.activation)
    state = {"weight_ih": getattr(layer, "weight_ih" + sfx)}
    if layer.bias:
        state["bias_ih"] = getattr(layer, "bias_ih" + sfx)
    cell.load_state_dict(state)
    return cell


def by_hand(layer, x, h0=None):
    """Stacked and bidirectional with cells and Python loops: x (T, B, I) -> out, h_n."""
    finals, inp = [], x
    for k in range(layer.num_layers):
        outs = []
        for d in range(layer.num_directions):
            cell = cell_of(layer, k, d)
            h = None if h0 is None else h0[k * layer.num_directions + d]
            seq = inp if d == 0 else inp.flip(0)
            ys = []
            for x_t in seq:
                h = cell(x_t, h)
                ys.append(h)
            y = torch.stack(ys)
            outs.append(y if d == 0 else y.flip(0))
            finals.append(h)
        inp = torch.cat(outs, dim=-1)
    return inp, torch.stack(finals)


def loss_of(*tensors):
    """A loss that weighs every element differently, so no gradient is checked only summed."""
    return sum((t * torch.arange(t.numel(), dtype=D).view_as(t).sin()).sum() for t in tensors)


# -- the cells ---------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["g", "identity"])
def test_cells_follow_their_equations(activation):
    torch.manual_seed(0)
    x, h = torch.randn(3, 4, dtype=D), torch.randn(3, 5, dtype=D)
    g = (lambda v: torch.where(v >= 0, v + 0.5, torch.sigmoid(v))) \
        if activation == "g" else (lambda v: v)

    gru = rnnkit.MinGRUCell(4, 5, dtype=D, activation=activation)
    k_z, k_h = (x @ gru.weight_ih.T + gru.bias_ih).split(5, dim=1)
    z = torch.sigmoid(k_z)
    close(gru(x, h), (1 - z) * h + z * g(k_h))
    close(gru(x[0], h[0]), ((1 - z) * h + z * g(k_h))[0])  # unbatched
    close(gru(x), z * g(k_h))  # h = 0 by default

    lstm = rnnkit.MinLSTMCell(4, 5, dtype=D, activation=activation)
    k_f, k_i, k_h = (x @ lstm.weight_ih.T + lstm.bias_ih).split(5, dim=1)
    f, i = torch.sigmoid(k_f), torch.sigmoid(k_i)
    close(lstm(x, h), f / (f + i) * h + i / (f + i) * g(k_h))


def test_log_coefficients_are_the_logs_of_the_coefficients():
    from rnnkit.cells import minimal
    k = torch.linspace(-40, 40, 600, dtype=D).view(100, 6)  # saturated gates included
    for lin, log in [(minimal.min_gru_coefficients, minimal.min_gru_log_coefficients),
                     (minimal.min_lstm_coefficients, minimal.min_lstm_log_coefficients)]:
        a, b = lin(k)
        log_a, log_b = log(k)
        assert torch.isfinite(log_a).all() and torch.isfinite(log_b).all()
        close(log_a.exp(), a, rtol=1e-12, atol=0)
        close(log_b.exp(), b, rtol=1e-12, atol=0)


# -- the three scans of h_t = a_t h_{t-1} + b_t -------------------------------------------


def test_scans_equal_the_sequential_recurrence():
    torch.manual_seed(0)
    a = torch.rand(37, 3, 4, dtype=D)  # 37: not a power of two
    b_pos, b_any = torch.rand(37, 3, 4, dtype=D) + 0.1, torch.randn(37, 3, 4, dtype=D)
    h0 = torch.randn(3, 4, dtype=D)  # any sign, even in log space
    for init in (None, h0):
        ref = sequential_scan(a, b_pos, init)
        close(log_scan(a.log(), b_pos.log(), init), ref)
        close(linear_scan(a, b_pos, init), ref)
        close(linear_scan(a, b_any, init), sequential_scan(a, b_any, init))
    h = h0  # and the reference itself, written out
    for t in range(37):
        h = a[t] * h + b_any[t]
    close(sequential_scan(a, b_any, h0)[-1], h)
    close(linear_scan(a[:1], b_any[:1], h0), (a[0] * h0 + b_any[0]).unsqueeze(0))  # T = 1
    for chunk in (1, 2, 5, 36, 37, 50):  # any chunk, padded or not, gives the same
        close(linear_scan(a, b_any, h0, chunk=chunk), sequential_scan(a, b_any, h0))


@pytest.mark.parametrize("cls", list(CELLS))
def test_log_scan_at_T_2048_equals_the_loop(cls):
    """a* reaches about -3500 here (-1.7 a step): the log-space sum must neither overflow
    nor underflow, and the gradient must stay finite and equal the loop's."""
    torch.manual_seed(0)
    layer = cls(3, 4, dtype=D, scan="log")
    with torch.no_grad():
        layer.bias_ih_l0[:4] = 1.5 if cls is rnnkit.MinGRU else -2.0  # forget hard
    x = torch.randn(2048, 2, 3, dtype=D, requires_grad=True)
    h0 = torch.randn(1, 2, 4, dtype=D)
    out, h_n = layer(x, h0)
    a, _ = layer._coefficients(layer.gates(x, 0, 0), "g")
    assert a.log().sum(0).min() < -1000  # the regime the test is about
    grad = torch.autograd.grad(loss_of(out), x)[0]
    layer.scan = "sequential"
    ref, ref_n = layer(x, h0)
    close(out, ref, rtol=1e-9, atol=1e-12)
    close(h_n, ref_n, rtol=1e-9, atol=1e-12)
    close(grad, torch.autograd.grad(loss_of(ref), x)[0], rtol=1e-8, atol=1e-10)
    layer32 = cls(3, 4, scan="log").to(torch.float32)
    layer32.load_state_dict(layer.state_dict())
    out32, _ = layer32(x.detach().float(), h0.float())
    close(out32.double(), ref.detach(), rtol=1e-3, atol=1e-5)  # float32: ~|a*| eps, 3e-4
    layer32.scan = "linear"  # products only: float32 rounding, 2.5e-7
    close(layer32(x.detach().float(), h0.float())[0].double(), ref.detach(), rtol=2e-6, atol=1e-7)


# -- the layers against the cells --------------------------------------------------------


@pytest.mark.parametrize("cls,scan,activation", CASES)
def test_layer_equals_cell_stepped_by_hand(cls, scan, activation):
    torch.manual_seed(1)
    layer = cls(4, 5, dtype=D, scan=scan, activation=activation)
    x, h0 = torch.randn(9, 3, 4, dtype=D), torch.randn(1, 3, 5, dtype=D)
    cell = cell_of(layer, 0, 0)
    for init in (None, h0):
        out, h_n = layer(x, init)
        h = None if init is None else init[0]
        for t in range(9):
            h = cell(x[t], h)
            close(out[t], h)
        close(h_n[0], h)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("cls,scan,activation", CASES)
def test_stacked_bidirectional(cls, scan, activation, batch_first):
    torch.manual_seed(2)
    layer = cls(3, 4, num_layers=2, bidirectional=True, batch_first=batch_first, dtype=D,
                scan=scan, activation=activation)
    x, h0 = torch.randn(6, 2, 3, dtype=D), torch.randn(4, 2, 4, dtype=D)
    ref, ref_n = by_hand(layer, x, h0)
    out, h_n = layer(x.transpose(0, 1) if batch_first else x, h0)
    close(out.transpose(0, 1) if batch_first else out, ref)
    close(h_n, ref_n)
    assert out.shape == ((2, 6, 8) if batch_first else (6, 2, 8)) and h_n.shape == (4, 2, 4)


@pytest.mark.parametrize("cls,scan,activation", CASES)
def test_lengths_equal_each_sequence_alone(cls, scan, activation):
    torch.manual_seed(3)
    layer = cls(3, 4, num_layers=2, bidirectional=True, dtype=D, scan=scan,
                activation=activation)
    x, h0 = torch.randn(7, 4, 3, dtype=D), torch.randn(4, 4, 4, dtype=D)
    x[6, 2] = 1e300  # padding never reaches a valid step
    lengths = torch.tensor([7, 2, 5, 1])
    out, h_n = layer(x, h0, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        alone, alone_n = layer(x[:n, b:b + 1], h0[:, b:b + 1])
        close(out[:n, b:b + 1], alone)
        assert torch.all(out[n:, b] == 0), "outputs past the end must be zero"
        close(h_n[:, b:b + 1], alone_n)


def test_reverse_direction_starts_at_each_end():
    torch.manual_seed(4)
    layer = rnnkit.MinGRU(2, 3, bidirectional=True, dtype=D)
    x = torch.randn(5, 2, 2, dtype=D)
    out, h_n = layer(x, lengths=torch.tensor([5, 3]))
    one, one_n = layer(x[2:3, 1:2])  # at position n - 1 the reverse half has seen x[n-1]
    close(out[2, 1, 3:], one[0, 0, 3:])
    close(h_n[1, 1], layer(x[:3, 1:2])[1][1, 0])  # its final state: after x[0]


def test_packed_sequence_equals_lengths():
    torch.manual_seed(5)
    layer = rnnkit.MinLSTM(3, 4, bidirectional=True, dtype=D)
    x, lengths = torch.randn(6, 3, 3, dtype=D), torch.tensor([4, 6, 2])
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    out_p, h_p = layer(packed)
    out_l, h_l = layer(x, lengths=lengths)
    close(torch.nn.utils.rnn.pad_packed_sequence(out_p)[0], out_l[:6])
    close(h_p, h_l)


@pytest.mark.parametrize("cls", list(CELLS))
def test_unbatched_equals_batch_of_one(cls):
    torch.manual_seed(6)
    layer = cls(3, 4, num_layers=2, dtype=D)
    x, h0 = torch.randn(5, 3, dtype=D), torch.randn(2, 4, dtype=D)
    out, h_n = layer(x, h0)
    out_b, h_b = layer(x.unsqueeze(1), h0.unsqueeze(1))
    assert out.shape == (5, 4) and h_n.shape == (2, 4)
    close(out, out_b[:, 0])
    close(h_n, h_b[:, 0])


@pytest.mark.parametrize("cls", list(CELLS))
def test_step_by_step_generation_equals_forward(cls):
    torch.manual_seed(7)
    layer = cls(3, 4, num_layers=3, dropout=0.5, dtype=D).eval()  # eval: no dropout
    x, h0 = torch.randn(8, 2, 3, dtype=D), torch.randn(3, 2, 4, dtype=D)
    out, h_n = layer(x, h0)
    h = h0
    for t in range(8):
        y, h = layer.step(x[t], h)
        close(y, out[t])
    close(h, h_n)
    y, h1 = layer.step(x[0, 0])  # unbatched, h = 0
    close(y, layer(x[:1, :1])[0][0, 0])
    assert h1.shape == (3, 4)


def test_dropout_acts_between_layers_in_training_only():
    torch.manual_seed(8)
    layer = rnnkit.MinGRU(3, 4, num_layers=2, dropout=0.5, dtype=D)
    x = torch.randn(5, 2, 3, dtype=D)
    plain, _ = layer.eval()(x)
    torch.manual_seed(0)
    dropped, _ = layer.train()(x)
    torch.manual_seed(0)
    again, _ = layer(x)
    close(dropped, again)  # the same generator, the same masks
    assert (dropped - plain).abs().max() > 1e-3


# -- gradients ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls,scan,activation", CASES[:3] + CASES[4:7])
def test_gradients_equal_the_sequential_loop(cls, scan, activation):
    torch.manual_seed(9)
    layer = cls(3, 4, num_layers=2, bidirectional=True, dtype=D, scan=scan,
                activation=activation)
    x = torch.randn(6, 3, 3, dtype=D, requires_grad=True)
    h0 = torch.randn(4, 3, 4, dtype=D, requires_grad=True)
    lengths = torch.tensor([6, 3, 5])
    leaves = [x, h0, *layer.parameters()]
    grads = torch.autograd.grad(loss_of(*layer(x, h0, lengths=lengths)), leaves)
    layer.scan = "sequential"
    expected = torch.autograd.grad(loss_of(*layer(x, h0, lengths=lengths)), leaves)
    assert len(grads) == 2 + 2 * 2 * 2  # x, h0, weight and bias of 2 layers x 2 directions
    for g, e in zip(grads, expected):
        assert e.abs().max() > 0
        close(g, e)


@pytest.mark.parametrize("cls,scan,activation", [(c, "log", "g") for c in CELLS]
                         + [(c, "linear", "identity") for c in CELLS])
def test_gradcheck(cls, scan, activation):
    torch.manual_seed(10)
    layer = cls(2, 3, bidirectional=True, dtype=D, scan=scan, activation=activation)
    names = [n for n, _ in layer.named_parameters()]
    x = torch.randn(4, 2, 2, dtype=D, requires_grad=True)
    h0 = torch.randn(2, 2, 3, dtype=D, requires_grad=True)
    params = [p.detach().clone().requires_grad_() for p in layer.parameters()]

    def run(x, h0, *ps):
        return torch.func.functional_call(layer, dict(zip(names, ps)), (x, h0),
                                          {"lengths": torch.tensor([4, 3])})

    assert torch.autograd.gradcheck(run, (x, h0, *params))


# -- golden values -----------------------------------------------------------------------

# weight_ih = 0.25 everywhere; bias 1.0 for z (f), -0.5 for i and h; x = (1, 2), (-1, -2),
# (2, 0): so k = 0.25 (x_1 + x_2) + bias. Worked out with Python floats from the paper's
# equations, for h_0 = 0 and h_0 = 0.3 (every unit is alike, so one number a step).
GOLDEN = {
    (rnnkit.MinGRU, "g", 0.0): [0.6389646014762329, 0.4049505024200295, 0.4826605456164429],
    (rnnkit.MinGRU, "identity", 0.0): [0.21298820049207765, -0.609469386897769, -0.11118277214876436],
    (rnnkit.MinLSTM, "g", 0.0): [0.2981568763290432, 0.2767468545916505, 0.3614681168209053],
    (rnnkit.MinLSTM, "identity", 0.0): [0.0993856254430144, -0.28348774714919955, -0.17590834565374458],
    (rnnkit.MinGRU, "g", 0.3): [0.6833787608857398, 0.4243960651029157, 0.48620791257457774],
    (rnnkit.MinGRU, "identity", 0.3): [0.25740235990158444, -0.5900238242148828, -0.1076354051906295],
    (rnnkit.MinLSTM, "g", 0.3): [0.4788941257974259, 0.40620189165742127, 0.44179688459230004],
    (rnnkit.MinLSTM, "identity", 0.3): [0.2801228749113971, -0.15403271008342875, -0.09557957788234983],
}


@pytest.mark.parametrize("key,scan", [(k, s) for k in GOLDEN for s in SCANS
                                      if s != "log" or k[1] == "g"],
                         ids=lambda v: v if isinstance(v, str) else f"{v[0].__name__}-{v[1]}-{v[2]}")
def test_golden_values(key, scan):
    cls, activation, h0 = key
    layer = cls(2, 2, dtype=D, scan=scan, activation=activation)
    with torch.no_grad():
        layer.weight_ih_l0.fill_(0.25)
        layer.bias_ih_l0.fill_(-0.5)
        layer.bias_ih_l0[:2] = 1.0
    x = torch.tensor([[1.0, 2.0], [-1.0, -2.0], [2.0, 0.0]], dtype=D)
    out, h_n = layer(x, torch.full((1, 2), h0, dtype=D))
    expected = torch.tensor(GOLDEN[key], dtype=D).unsqueeze(1).expand(3, 2)
    close(out, expected, rtol=1e-14, atol=1e-15)
    close(h_n[0], expected[-1], rtol=1e-14, atol=1e-15)


# -- errors ------------------------------------------------------------------------------

BAD_ARGS = [
    (dict(hidden_size=0), ValueError, r"hidden_size must be >= 1, got 0"),
    (dict(input_size=2.5), TypeError, r"input_size must be an int, got float 2.5"),
    (dict(dropout=1.5), ValueError, r"dropout must be a probability in \[0, 1\], got 1.5"),
    (dict(scan="fft"), ValueError, r"scan must be one of \('log', 'linear', 'sequential'\), got 'fft'"),
    (dict(activation="tanh"), ValueError, r"activation must be one of \('g', 'identity'\), got 'tanh'"),
    (dict(activation="identity", scan="log"), ValueError, r"scan='log' needs activation='g' .* got activation='identity'"),
]


@pytest.mark.parametrize("cls", list(CELLS))
@pytest.mark.parametrize("kwargs,error,message", BAD_ARGS)
def test_bad_arguments_are_refused_in_one_line(cls, kwargs, error, message):
    args = {"input_size": 3, "hidden_size": 4, **kwargs}
    with pytest.raises(error, match=message) as info:
        cls(**args)
    assert "\n" not in str(info.value)


BAD_CALLS = [
    (lambda m: m(torch.randn(2, 3, 4, 3, dtype=D)), ValueError,
     r"expected input of shape \(T, B, I\) or unbatched \(T, I\), got 4-D \(2, 3, 4, 3\)"),
    (lambda m: m(torch.randn(5, 2, 7, dtype=D)), ValueError,
     r"expected input with 3 features \(input_size\), got shape \(5, 2, 7\)"),
    (lambda m: m(torch.randn(5, 2, 3)), TypeError,
     r"input must have dtype torch.float64 like the weights, got torch.float32"),
    (lambda m: m(torch.randn(5, 2, 3, dtype=D), torch.zeros(1, 2, 4, dtype=D)), ValueError,
     r"expected hx of shape \(L\*D, B, H\) = \(2, 2, 4\), got \(1, 2, 4\)"),
    (lambda m: m(torch.randn(5, 2, 3, dtype=D), lengths=torch.tensor([5, 6])), ValueError,
     r"lengths must lie in \[1, 5\] \(the sequence length\), got min 5, max 6"),
    (lambda m: m.step(torch.randn(2, 5, dtype=D)), ValueError,
     r"step: expected input of shape \(B, 3\) or \(3,\), got \(2, 5\)"),
    (lambda m: rnnkit.MinGRU(3, 4, bidirectional=True).step(torch.randn(3)), ValueError,
     r"step\(\) runs forward in time; a bidirectional layer needs the whole sequence"),
    (lambda m: rnnkit.MinGRUCell(3, 4, dtype=D)(torch.randn(2, 5, dtype=D)), ValueError,
     r"MinGRUCell: expected input of shape \(B, 3\) or \(3,\), got \(2, 5\)"),
    (lambda m: rnnkit.MinLSTMCell(3, 4, dtype=D)(torch.randn(2, 3, dtype=D),
                                                  torch.zeros(2, 5, dtype=D)), ValueError,
     r"expected hx of shape \(B, H\) = \(2, 4\), got \(2, 5\)"),
]


def test_scan_is_checked_when_changed_too():
    layer = rnnkit.MinGRU(3, 4, activation="identity")
    with pytest.raises(ValueError, match=r"scan='log' needs activation='g'"):
        layer.scan = "log"
    assert layer.scan == "linear"
    with pytest.warns(UserWarning, match="dropout acts between stacked layers"):
        rnnkit.MinLSTM(3, 4, dropout=0.5)


@pytest.mark.parametrize("call,error,message", BAD_CALLS)
def test_bad_calls_are_refused_in_one_line(call, error, message):
    layer = rnnkit.MinLSTM(3, 4, num_layers=2, dtype=D)
    with pytest.raises(error, match=message) as info:
        call(layer)
    assert "\n" not in str(info.value)


# -- the benchmark script ----------------------------------------------------------------


def test_bench_scan_quick_run(monkeypatch):
    """bench_scan end to end at tiny sizes: every row, ratios to its anchors (speed
    itself is never tested)."""
    import importlib.util
    from pathlib import Path

    here = Path(__file__).resolve().parents[1] / "benchmarks"
    monkeypatch.syspath_prepend(str(here))  # bench_scan imports bench_engine
    spec = importlib.util.spec_from_file_location("bench_scan", here / "bench_scan.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    a = bench.parse_args(["--quick"])  # B=2, input 8, hidden 16
    medians = bench.time_all(a, 5)
    assert all(seconds > 0 for seconds in medians.values())
    rows = bench.build_rows(a, {5: medians})
    names = [r["name"] for r in rows]
    assert names == ["torch.nn.LSTM", "MinGRUCell loop", "MinGRU scan='log'",
                     "MinGRU scan='linear'", "MinGRU scan='sequential'", "MinLSTMCell loop",
                     "MinLSTM scan='log'", "MinLSTM scan='linear'", "MinLSTM scan='sequential'"]
    assert rows[0]["vs_lstm"] == 1.0 and "| 5 | MinLSTM scan='log' |" in bench.markdown(
        {"command": "c", "machine": bench.machine(), "rows": rows,
         "config": {"batch": 2, "input": 8, "hidden": 16, "repeats": 1, "warmup": 1}})
    assert rows[2]["loop"] == "MinGRUCell loop" and rows[6]["loop"] == "MinLSTMCell loop"


@pytest.mark.parametrize("cls", [rnnkit.MinGRU, rnnkit.MinLSTM])
def test_bf16_autocast_runs_the_products_in_bf16_and_the_scan_in_float32(cls):
    """Under autocast the gate product may be bf16 but the state stays float32, and a
    state carried out of an autocast region in bf16 is taken back by forward and step."""
    torch.manual_seed(0)
    layer = cls(8, 16, num_layers=2)
    x = torch.randn(30, 3, 8)
    want, h_want = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, h = layer(x)
        again, _ = layer(x, h.bfloat16())
        out, h_step = layer.step(x[0], h.bfloat16())
    assert got.dtype == h.dtype == again.dtype == out.dtype == h_step.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=0.05, atol=0.02)  # bf16 products only
    assert (got - want).abs().max() > 0  # the products did run in bf16
