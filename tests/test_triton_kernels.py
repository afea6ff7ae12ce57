"""The fused backend's Triton kernels against the reference backend, run on CPU tensors by
Triton's interpreter (so they are checked without a GPU), at small sizes.

Every test counts the kernel launches, so a fall back to the torch loops cannot pass for
the kernels. The CPU kernels are turned off (they come first for CPU tensors).
"""

import os

# Triton reads this when the kernels are defined, on their first use: set before that.
os.environ["TRITON_INTERPRET"] = "1"

import importlib.util  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

import rnnkit  # noqa: E402
from conftest import count_kernel_launches  # noqa: E402
from rnnkit.backends import _cpu_kernels, _triton_common  # noqa: E402
from rnnkit.cells import Weights  # noqa: E402

pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None,
                                reason="triton is not installed (pip install 'rnnkit[gpu]')")

T, B, I, H = 4, 3, 5, 8
LAYERS = {"LSTM": rnnkit.LSTM, "GRU": rnnkit.GRU, "RNN": rnnkit.RNN}
OPTIONS = {
    "plain": {},
    "layer_norm": {"layer_norm": True},
    "zoneout": {"zoneout": 0.3},
    "recurrent_dropout": {"recurrent_dropout": 0.4},
    "lengths": {},
    "everything": {"layer_norm": True, "recurrent_dropout": 0.3, "zoneout": 0.2,
                   "weight_drop": 0.2},
}
LENGTHS = {"lengths": [4, 1, 3], "everything": [2, 4, 1]}


@pytest.fixture
def launches(monkeypatch):
    """Run the kernels in the interpreter; count their launches by kernel name. Two
    rows per program, so B = 3 takes two programs, the second half masked."""
    monkeypatch.setenv("RNNKIT_TRITON", "interpret")
    monkeypatch.setenv("RNNKIT_CPU_KERNELS", "0")
    monkeypatch.setattr(_triton_common, "ROW_ELEMENTS", 2 * H)
    return count_kernel_launches(monkeypatch)


def _pair(kind, kw, hidden=H, dtype=torch.float32, **extra):
    """A reference layer and a fused one with the same weights, bidirectional."""
    kw = dict(kw, **extra)
    if kind == "LSTM" and "zoneout" in kw:
        kw["zoneout"] = (kw["zoneout"], 2 * kw["zoneout"])  # h and c apart
    torch.manual_seed(0)
    ref = LAYERS[kind](I, hidden, bidirectional=True, backend="reference", **kw)
    fast = LAYERS[kind](I, hidden, bidirectional=True, backend="fused", dtype=dtype, **kw)
    fast.load_state_dict(ref.state_dict())
    return ref, fast


def _run(layer, x, lengths, seed=7):
    """Outputs, final states and the gradients of x and every parameter, under one seed."""
    torch.manual_seed(seed)
    y, h = layer(x, lengths=lengths)
    states = h if isinstance(h, tuple) else (h,)
    weights = torch.linspace(-1, 1, y.numel()).view_as(y).sin().to(y.dtype)
    loss = (y * weights).sum() + sum((s.float() ** 2).sum() for s in states)
    if not x.requires_grad:
        return [y, *states]
    return [y, *states, *torch.autograd.grad(loss, [x, *layer.parameters()])]


def _assert_matches(got, want, tol):
    """Each tensor within ``tol`` of the reference's, relative to its scale (at least 1)."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        scale = max(1.0, w.abs().max().item())
        torch.testing.assert_close(g.float(), w.float(), rtol=0, atol=tol * scale)


def _x(dtype=torch.float32, grad=True):
    torch.manual_seed(1)
    return torch.randn(T, B, I).to(dtype).requires_grad_(grad)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("kind", LAYERS)
def test_kernels_equal_reference(kind, option, train, launches):
    ref, fast = _pair(kind, OPTIONS[option])
    ref.train(train), fast.train(train)
    lengths = torch.tensor(LENGTHS[option]) if option in LENGTHS else None
    x = _x()
    _assert_matches(_run(fast, x, lengths), _run(ref, x, lengths), 2e-5)
    cell = kind.lower()
    assert launches == {f"{cell}_forward": 2 * T, f"{cell}_backward": 2 * T}


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_relu_rnn_with_everything(train, launches):
    ref, fast = _pair("RNN", OPTIONS["everything"], nonlinearity="relu")
    ref.train(train), fast.train(train)
    x, lengths = _x(), torch.tensor([3, 4, 2])
    _assert_matches(_run(fast, x, lengths), _run(ref, x, lengths), 2e-5)
    assert launches == {"rnn_forward": 2 * T, "rnn_backward": 2 * T}


@pytest.mark.parametrize("kind", LAYERS)
def test_a_hidden_size_not_a_power_of_two(kind, launches):
    """H = 5 in blocks of 8 columns: every load and store past H is masked."""
    ref, fast = _pair(kind, OPTIONS["everything"], hidden=5)
    x, lengths = _x(), torch.tensor([4, 2, 3])
    _assert_matches(_run(fast, x, lengths), _run(ref, x, lengths), 2e-5)
    assert sum(launches.values()) == 4 * T


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("kind", LAYERS)
def test_no_grad_forward_keeps_nothing_and_equals_reference(kind, train, launches):
    ref, fast = _pair(kind, OPTIONS["everything"])
    ref.train(train), fast.train(train)
    x, lengths = _x(grad=False), torch.tensor([2, 4, 1])
    with torch.no_grad():
        _assert_matches(_run(fast, x, lengths), _run(ref, x, lengths), 2e-5)
    assert launches == {f"{kind.lower()}_forward": 2 * T}


@pytest.mark.parametrize("kernels_in", ["forward", "backward"])
@pytest.mark.parametrize("kind", LAYERS)
def test_either_backward_runs_after_either_forward(kind, kernels_in, launches, monkeypatch):
    """The kernels keep what the torch loops keep, or (the LSTM with both gate norms)
    what ``_fused_lstm_triton.restore`` rebuilds it from: the kernels' forward with the
    torch loops' backward, and the other way round, still give the reference's gradients."""
    ref, fast = _pair(kind, OPTIONS["everything"])
    x, lengths = _x(), torch.tensor([2, 4, 1])
    want = _run(ref, x, lengths)
    monkeypatch.setenv("RNNKIT_TRITON", "interpret" if kernels_in == "forward" else "0")
    torch.manual_seed(7)
    y, h = fast(x, lengths=lengths)
    monkeypatch.setenv("RNNKIT_TRITON", "0" if kernels_in == "forward" else "interpret")
    states = h if isinstance(h, tuple) else (h,)
    weights = torch.linspace(-1, 1, y.numel()).view_as(y).sin()
    loss = (y * weights).sum() + sum((s ** 2).sum() for s in states)
    got = [y, *states, *torch.autograd.grad(loss, [x, *fast.parameters()])]
    _assert_matches(got, want, 2e-5)
    assert launches == {f"{kind.lower()}_{kernels_in}": 2 * T}


def test_lstm_with_both_gate_norms_keeps_less_for_backward(launches):
    """The kernels' LSTM with layer norm and zoneout keeps, per direction, the input
    norm's input x W_ih^T, no activations, no recurrent products and no c' apart from
    the zoned-out state (backward recomputes them), and the zoneout masks as bytes; its
    gradients are the reference's (the tests above)."""
    _, fast = _pair("LSTM", OPTIONS["everything"])
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
        y, _ = fast(_x())
    gates = [t for t in kept if t.numel() == T * B * 4 * H]
    masks = [t for t in kept if t.dtype == torch.uint8]
    states = [t for t in kept if t.shape == (T, B, H) and t.is_floating_point()]
    assert len(gates) == 2  # x W_ih^T, two directions: (h m) W_hh^T is recomputed
    assert len(states) == 2 * 2  # h and c: c' before zoneout is recomputed, not kept
    assert [tuple(m.shape) for m in masks] == [(T, B, H)] * 4  # keep_h, keep_c
    assert all(bool(((m == 0) | (m == 1)).all()) for m in masks)
    y.sum().backward()


@pytest.mark.parametrize("steps", [11, 16])
def test_lstm_recurrent_products_recomputed_piece_by_piece(steps, launches):
    """Backward recomputes (h m) W_hh^T and sums δW_hh a piece of ceil(T / PIECES) steps
    at a time: several steps a piece, the last one shorter where T is not a multiple."""
    from rnnkit.backends._fused_common import PIECES

    assert -(-steps // PIECES) > 1
    ref, fast = _pair("LSTM", OPTIONS["everything"])
    torch.manual_seed(1)
    x = torch.randn(steps, B, I, requires_grad=True)
    lengths = torch.tensor([steps, 3, steps - 2])
    # against the float64 reference: over 16 steps of every extra, float32 rounding alone
    # takes either implementation ~2-4e-5 of the scale away from it
    want = _run(ref.double(), x.detach().double().requires_grad_(), lengths)
    _assert_matches(_run(fast, x, lengths), want, 4e-5)
    assert launches == {"lstm_forward": 2 * steps, "lstm_backward": 2 * steps}


def test_lstm_stacked_batch_first_with_states_and_lengths(launches):
    """Two bidirectional layers with every extra and dropout between them, batch first,
    initial states and lengths, over pieces of two steps: the reference's outputs, final
    states and gradients (inputs, initial states, every weight)."""
    kw = dict(OPTIONS["everything"], zoneout=(0.2, 0.3), dropout=0.25, batch_first=True,
              bidirectional=True)
    torch.manual_seed(0)
    ref = rnnkit.LSTM(I, H, 2, backend="reference", **kw)
    fast = rnnkit.LSTM(I, H, 2, backend="fused", **kw)
    fast.load_state_dict(ref.state_dict())
    steps = 13
    x = torch.randn(B, steps, I, requires_grad=True)
    h0 = tuple(torch.randn(4, B, H, requires_grad=True) for _ in range(2))
    lengths = torch.tensor([steps, 6, 9])

    def run(layer):
        torch.manual_seed(5)
        y, (h, c) = layer(x, h0, lengths=lengths)
        loss = (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum() + (h ** 2).sum() \
            + (c ** 3).sum()
        return [y, h, c, *torch.autograd.grad(loss, [x, *h0, *layer.parameters()])]

    _assert_matches(run(fast), run(ref), 2e-5)
    assert launches == {"lstm_forward": 4 * steps, "lstm_backward": 4 * steps}


def test_lstm_kernels_normalise_the_input_share_themselves(launches, monkeypatch):
    """With both gate norms the forward kernel normalises x W_ih^T step by step: no
    layer norm over all steps at once, so no normalised (T, B, 4H) copy exists."""
    from rnnkit.backends import fused

    def no_norm(*args, **kwargs):
        raise AssertionError("the input share was normalised outside the kernels")

    monkeypatch.setattr(fused, "ln", no_norm)
    ref, fast = _pair("LSTM", OPTIONS["everything"])
    x, lengths = _x(), torch.tensor([2, 4, 1])
    _assert_matches(_run(fast, x, lengths), _run(ref, x, lengths), 2e-5)


@pytest.mark.parametrize("batch_first", [False, True], ids=["time_first", "batch_first"])
@pytest.mark.parametrize("kind", LAYERS)
def test_output_gradient_read_where_it_lies(kind, batch_first, launches):
    """The backward kernels read ∂L/∂y through its strides: a sum's gradient (every
    stride 0) and a batch-first output's (rows T·H apart) give the reference's gradients
    without a contiguous copy."""
    ref, fast = _pair(kind, OPTIONS["everything"], batch_first=batch_first)
    x = _x()
    if batch_first:
        x = x.detach().transpose(0, 1).requires_grad_()
    got, want = (_sum_grads(layer, x) for layer in (fast, ref))
    _assert_matches(got, want, 2e-5)
    _assert_matches(_run(fast, x, None), _run(ref, x, None), 2e-5)
    assert launches[f"{kind.lower()}_backward"] == 2 * 2 * T


def _sum_grads(layer, x):
    torch.manual_seed(7)
    y, _ = layer(x)
    return torch.autograd.grad(y.sum(), [x, *layer.parameters()])


def test_lstm_cell_norm_with_zoneout_from_kept_activations(launches, monkeypatch):
    """An LSTM whose gate pre-activations are not both normalised keeps its activations;
    with the cell norm and zoneout on c, backward recomputes c' from them (the kept state
    is not c'), in the kernels and in the torch loops after the kernels' forward."""
    from rnnkit.backends import fused, reference
    from rnnkit.backends.spec import Masks

    torch.manual_seed(3)
    G, D = 4 * H, torch.float64
    w = Weights(*(torch.randn(*s, dtype=D).mul_(0.3).requires_grad_()
                  for s in ((G, I), (G, H), (G,), (G,))),
                ln_hh=torch.rand(G, dtype=D).add_(0.5).requires_grad_(),
                ln_c_weight=torch.rand(H, dtype=D).add_(0.5).requires_grad_(),
                ln_c_bias=torch.randn(H, dtype=D).requires_grad_())
    x = torch.randn(T, B, I, dtype=D, requires_grad=True)
    state = (torch.randn(B, H, dtype=D), torch.randn(B, H, dtype=D))
    keep_c = (torch.rand(T, B, H) < 0.4).to(D)
    leaves = [x, *(t for t in w if t is not None)]

    def grads(run, dtype):
        cast = lambda t: None if t is None else t.to(dtype)
        y, (_, c) = run(cast(x), tuple(map(cast, state)), Weights(*map(cast, w)), "LSTM",
                        Masks(None, 0.0, cast(keep_c)), None)
        loss = (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum() + (c ** 2).sum()
        return loss, leaves

    want = torch.autograd.grad(*grads(reference.run_direction, D))
    for backward_in in ("interpret", "0"):  # the kernels, then the torch loops
        monkeypatch.setenv("RNNKIT_TRITON", "interpret")
        loss, _ = grads(fused.run_direction, torch.float32)
        monkeypatch.setenv("RNNKIT_TRITON", backward_in)
        _assert_matches(torch.autograd.grad(loss, leaves), want, 2e-5)
    assert launches == {"lstm_forward": 2 * T, "lstm_backward": T}


@pytest.mark.parametrize("kind", LAYERS)
def test_bf16_against_float32_reference(kind, launches):
    """bf16 in memory, float32 inside the kernels: within bf16's 8 bits of the float32
    reference run with the same (bf16-rounded) weights and input."""
    ref, fast = _pair(kind, OPTIONS["everything"], dtype=torch.bfloat16)
    ref.load_state_dict(fast.state_dict())  # the reference gets the rounded weights
    ref.eval(), fast.eval()
    x, lengths = _x(torch.bfloat16), torch.tensor([4, 2, 3])
    x32 = x.detach().float().requires_grad_()
    got, want = _run(fast, x, lengths), _run(ref, x32, lengths)
    assert got[0].dtype == torch.bfloat16
    n_out = 3 if kind == "LSTM" else 2  # outputs and final states, then the gradients
    _assert_matches(got[:n_out], want[:n_out], 2e-2)
    _assert_matches(got[n_out:], want[n_out:], 6e-2)
    assert launches == {f"{kind.lower()}_forward": 2 * T, f"{kind.lower()}_backward": 2 * T}


def test_lstm_projection_stays_with_the_torch_loops(launches):
    ref, fast = _pair("LSTM", {"layer_norm": True}, proj_size=3)
    x = _x()
    _assert_matches(_run(fast, x, None), _run(ref, x, None), 2e-5)
    assert not launches


@pytest.mark.skipif(_cpu_kernels.library(torch.float32) is None, reason="no C compiler")
def test_cpu_kernels_come_first_for_cpu_tensors(launches, monkeypatch):
    monkeypatch.setenv("RNNKIT_CPU_KERNELS", "1")
    for kind in LAYERS:
        ref, fast = _pair(kind, {"layer_norm": True})
        x = _x()
        _assert_matches(_run(fast, x, None), _run(ref, x, None), 2e-5)
    assert not launches


def test_usable_only_on_cuda_or_in_the_interpreter(monkeypatch):
    from rnnkit.backends import _fused_gru_triton, _fused_lstm_triton, _fused_rnn_triton

    def run(mode, dtype=torch.float32, proj=False, G=4):
        t = lambda *s: torch.zeros(*s, dtype=dtype)
        w = Weights(t(G * H, I), t(G * H, 2 if proj else H), w_hr=t(2, H) if proj else None)
        return SimpleNamespace(x=t(T, B, I), h0=t(B, H), c0=t(B, H), w=w, mode=mode)

    monkeypatch.setenv("RNNKIT_TRITON", "interpret")
    assert _fused_lstm_triton.usable(run("LSTM"))
    assert _fused_gru_triton.usable(run("GRU", torch.bfloat16, G=3))
    assert _fused_rnn_triton.usable(run("RNN_TANH", G=1))
    assert not _fused_lstm_triton.usable(run("LSTM", proj=True))  # a product inside a step
    assert not _fused_gru_triton.usable(run("GRU", torch.float64, G=3))
    monkeypatch.delenv("RNNKIT_TRITON")  # CPU tensors outside the interpreter
    assert not _fused_lstm_triton.usable(run("LSTM"))
    monkeypatch.setenv("RNNKIT_TRITON", "interpret")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert not _fused_rnn_triton.usable(run("RNN_TANH", G=1))


#: Run in a fresh process, where triton is not interpreting: the fused backend runs on CPU
#: tensors with every kernel launch replaced by compiling that kernel, with those
#: arguments, for an sm_90 GPU. Prints the number of kernel variants compiled.
_COMPILE_FOR_A_GPU = r"""
import os, torch, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
import rnnkit
from rnnkit.backends import _triton_common, _triton_gru, _triton_lstm, _triton_rnn
os.environ.update(TRITON_INTERPRET="1", RNNKIT_TRITON="interpret", RNNKIT_CPU_KERNELS="0")
TYPES = {torch.float32: "*fp32", torch.bfloat16: "*bf16", torch.uint8: "*u8"}
built = set()

def compile_instead(kernel, B, H, *args, **flags):
    flags.update(BLOCK_B=2, BLOCK_H=triton.next_power_of_2(H))
    sig, const = {}, dict(flags)
    for name, v in zip(kernel.arg_names, (*args, B, H)):
        if v is None:
            sig[name], const[name] = "constexpr", None
        elif isinstance(v, torch.Tensor):
            sig[name] = TYPES[v.dtype]
        else:
            sig[name] = "i32" if isinstance(v, int) else "fp32"
    sig.update(dict.fromkeys(flags, "constexpr"))
    key = (kernel.fn.__name__, str(sig), str(const))
    if key not in built:
        binary = triton.compile(ASTSource(kernel, sig, const), target=GPUTarget("cuda", 90, 32))
        assert binary.asm["cubin"]
        built.add(key)

_triton_common.launch = compile_instead
everything = dict(layer_norm=True, recurrent_dropout=0.3, zoneout=0.2)
for dtype, options in ((torch.float32, ({}, everything)), (torch.bfloat16, (everything,))):
    for kw in options:
        kw = dict(kw, backend="fused")
        for layer in (rnnkit.LSTM(4, 6, dtype=dtype, **kw), rnnkit.GRU(4, 6, dtype=dtype, **kw),
                      rnnkit.RNN(4, 6, dtype=dtype, nonlinearity="relu", **kw)):
            x = torch.randn(3, 2, 4, dtype=dtype, requires_grad=True)
            y, _ = layer(x, lengths=torch.tensor([3, 2]))
            y.float().sum().backward()
            with torch.no_grad():
                layer.eval()(x, lengths=torch.tensor([3, 2]))
print(len(built))
"""


def _ptxas() -> bool:
    spec = importlib.util.find_spec("triton")
    return spec is not None and (Path(spec.origin).parent / "backends/nvidia/bin/ptxas").exists()


@pytest.mark.skipif(not _ptxas(), reason="no ptxas in this triton")
def test_kernels_compile_for_a_gpu(tmp_path):
    """What the interpreter cannot check: each kernel variant the runs launch (every cell,
    float32 and bf16, options off and on, train, eval, no-grad) compiles to a GPU binary."""
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "RNNKIT_TRITON")}
    env["TRITON_CACHE_DIR"] = str(tmp_path)  # compiled here, not found in a cache
    done = subprocess.run([sys.executable, "-c", _COMPILE_FOR_A_GPU], env=env, text=True,
                          capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    assert int(done.stdout.split()[-1]) == 27  # 3 cells x 3 options/dtypes x (2 forwards + backward)
