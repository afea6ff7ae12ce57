"""On a CUDA device: the Triton kernels, cuDNN and CUDA-graph replay against the reference
backend. Skipped where there is no GPU (``tests/test_triton_kernels.py`` checks the same
kernels in Triton's interpreter there)."""

import importlib.util

import pytest
import torch

import rnnkit
from conftest import count_kernel_launches

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available() or importlib.util.find_spec("triton") is None,
    reason="needs a CUDA device and triton")

T, B, I, H = 12, 10, 24, 40  # H not a power of two: the tiles are masked past it
LAYERS = {"LSTM": rnnkit.LSTM, "GRU": rnnkit.GRU, "RNN": rnnkit.RNN}
OPTIONS = {
    "plain": {},
    "everything": {"layer_norm": True, "recurrent_dropout": 0.3, "zoneout": 0.2,
                   "weight_drop": 0.2},
}


@pytest.fixture(autouse=True)
def exact_products():
    """float32 products in float32 (no TF32), so 1e-4 separates right from wrong."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@pytest.fixture
def launches(monkeypatch):
    return count_kernel_launches(monkeypatch)


def _pair(kind, kw, dtype=torch.float32, backend="fused"):
    torch.manual_seed(0)
    ref = LAYERS[kind](I, H, bidirectional=True, backend="reference", **kw).cuda()
    fast = LAYERS[kind](I, H, bidirectional=True, backend=backend, **kw).cuda().to(dtype)
    ref.load_state_dict(fast.state_dict())  # bf16-rounded weights for both where bf16
    return ref, fast


def _run(layer, x, lengths=None, seed=7):
    torch.manual_seed(seed)
    y, h = layer(x) if lengths is None else layer(x, lengths=lengths)
    states = h if isinstance(h, tuple) else (h,)
    w = torch.linspace(-1, 1, y.numel(), device=y.device).view_as(y).sin().to(y.dtype)
    loss = (y * w).sum() + sum((s.float() ** 2).sum() for s in states)
    return [y, *states, *torch.autograd.grad(loss, [x, *layer.parameters()])]


def _assert_matches(got, want, tol):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert torch.isfinite(g).all()
        scale = max(1.0, w.abs().max().item())
        torch.testing.assert_close(g.float(), w.float(), rtol=0, atol=tol * scale)


def _x(dtype=torch.float32):
    torch.manual_seed(1)
    return torch.randn(T, B, I, device="cuda").to(dtype).requires_grad_()


@pytest.mark.parametrize("lengths", [False, True], ids=["padded", "lengths"])
@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("kind", LAYERS)
def test_kernels_equal_reference_on_the_gpu(kind, option, lengths, launches):
    ref, fast = _pair(kind, OPTIONS[option])
    x = _x()
    n = torch.randint(1, T + 1, (B,)) if lengths else None
    _assert_matches(_run(fast, x, n), _run(ref, x, n), 1e-4)
    cell = kind.lower()
    assert launches == {f"{cell}_forward": 2 * T, f"{cell}_backward": 2 * T}


@pytest.mark.parametrize("kind", LAYERS)
def test_bf16_kernels_as_accurate_as_bf16_autograd(kind, launches):
    """bf16 in memory, float32 inside the kernels: against the float32 reference (same
    bf16-rounded weights and input), each output and gradient is off by no more than the
    reference backend's own bf16 run is (autograd in bf16), within a margin."""
    ref, fast = _pair(kind, OPTIONS["everything"], dtype=torch.bfloat16)
    ref16 = LAYERS[kind](I, H, bidirectional=True, backend="reference",
                         **OPTIONS["everything"]).cuda().to(torch.bfloat16)
    ref16.load_state_dict(fast.state_dict())
    for layer in (ref, fast, ref16):
        layer.eval()
    x = _x(torch.bfloat16)
    x32 = x.detach().float().requires_grad_()
    got, want, bf16 = _run(fast, x), _run(ref, x32), _run(ref16, x)
    assert got[0].dtype == torch.bfloat16
    err = lambda t, w: ((t.float() - w).norm() / w.norm()).item()
    for g, w, b in zip(got, want, bf16):
        assert torch.isfinite(g).all() and err(g, w) <= 1.5 * err(b, w) + 1e-3, \
            (err(g, w), err(b, w))
    assert launches[f"{kind.lower()}_backward"] == 2 * T


@pytest.mark.parametrize("kind", LAYERS)
def test_auto_runs_cudnn_and_equals_reference(kind, launches):
    ref, fast = _pair(kind, {}, backend="auto")
    x = _x()
    _assert_matches(_run(fast, x), _run(ref, x), 1e-4)
    assert not launches  # cuDNN, not the kernels


@pytest.mark.parametrize("kind", LAYERS)
def test_graph_replay_equals_the_eager_run(kind, launches):
    """Layer norm, no random masks: every replay computes what the eager run computes,
    for new input values copied into the captured input."""
    _, fast = _pair(kind, {"layer_norm": True})
    eager = LAYERS[kind](I, H, bidirectional=True, backend="fused", layer_norm=True).cuda()
    eager.load_state_dict(fast.state_dict())
    graphed = rnnkit.graphed(fast, _x())
    assert launches[f"{kind.lower()}_backward"] > 0  # the kernels were captured
    for seed in (2, 3):
        torch.manual_seed(seed)
        x = torch.randn(T, B, I, device="cuda", requires_grad=True)
        for p in (*graphed.parameters(), *eager.parameters()):
            p.grad = None
        _assert_matches(_run(graphed, x), _run(eager, x), 1e-5)


def test_graph_replay_draws_fresh_masks():
    torch.manual_seed(0)
    layer = rnnkit.LSTM(I, H, backend="fused", **OPTIONS["everything"]).cuda()
    x = _x()
    layer = rnnkit.graphed(layer, x)
    first = layer(x)[0].detach().clone()
    second, _ = layer(x)
    assert torch.isfinite(second).all() and not torch.equal(first, second)
    second.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())
    layer.eval()  # the other mode runs uncaptured, without masks
    with torch.no_grad():
        assert torch.equal(layer(x)[0], layer(x)[0])


@pytest.mark.parametrize("kind, native", [("LSTM", torch.nn.LSTM), ("GRU", torch.nn.GRU),
                                          ("RNN", torch.nn.RNN)])
def test_cudnn_takes_the_weights_as_they_are(kind, native):
    """After .cuda() the weights lie in one block as cuDNN wants them (no copy per call,
    no warning), and the state_dict still moves to and from torch.nn."""
    import warnings

    torch.manual_seed(0)
    layer = LAYERS[kind](I, H, 2, bidirectional=True).cuda()
    assert len({p.untyped_storage().data_ptr() for p in layer.parameters()}) == 1
    twin = native(I, H, 2, bidirectional=True).cuda()
    twin.load_state_dict(layer.state_dict())
    x = _x()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "not part of single contiguous chunk of memory"
        _assert_matches(_run(layer, x), _run(twin, x), 1e-5)
    layer.to(torch.float64)  # moved again: flattened again
    assert len({p.untyped_storage().data_ptr() for p in layer.parameters()}) == 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bf16"])
def test_regularised_lstm_trains_in_no_more_memory_than_cudnn(dtype):
    """bench_gpu.py's config (T=100, B=64, 512/512, a sum as the loss): a training step of
    the layer-normalised LSTM with recurrent dropout and zoneout through ``fused`` peaks
    no higher than one of cuDNN's plain LSTM (its weights flattened, as cuDNN wants them),
    each measured above what its previous step left (parameters and their gradients)."""
    steps, batch, size = 100, 64, 512
    torch.manual_seed(0)
    x = torch.randn(steps, batch, size, device="cuda", dtype=dtype, requires_grad=True)

    def peak(layer):
        for _ in range(2):  # the second step: the gradients and cuBLAS's workspace exist
            x.grad = None
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            start = torch.cuda.memory_allocated()
            layer(x)[0].sum().backward()
            torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - start) / 2**20

    cudnn = torch.nn.LSTM(size, size).to("cuda", dtype)
    cudnn.flatten_parameters()
    fused = rnnkit.LSTM(size, size, backend="fused", layer_norm=True, recurrent_dropout=0.25,
                        zoneout=0.1).to("cuda", dtype)
    assert peak(fused) <= peak(cudnn)
