"""The fused backend's CPU fast paths: the compiled kernels and the oneDNN products.

Each is checked against the torch-only loops and the reference backend: in float64
exactly (the kernel's double build), in float32 to float32 accuracy (the kernel's own
exp and tanh, and oneDNN's products); and each falls back cleanly when it cannot run.
"""

import ctypes
import logging

import pytest
import torch

import rnnkit
from rnnkit.backends import _cpu_kernels, _fused_cpu, _matmul

KINDS = ("LSTM", "GRU", "RNN")
OPTIONS = {
    "plain": {},
    "layer_norm": {"layer_norm": True},
    "zoneout": {"zoneout": (0.3, 0.6)},
    "recurrent_dropout": {"recurrent_dropout": 0.4},
    "everything": {"layer_norm": True, "recurrent_dropout": 0.3, "zoneout": 0.2, "weight_drop": 0.2},
    "no_bias": {"bias": False, "layer_norm": True, "zoneout": 0.1},
}
needs_kernels = pytest.mark.skipif(_cpu_kernels.library(torch.float32) is None,
                                   reason="no C compiler: the kernels cannot be built here")


def _run(layer, x, lengths, seed=5):
    torch.manual_seed(seed)
    y, h = layer(x, lengths=lengths)
    states = h if isinstance(h, tuple) else (h,)
    loss = (y * y.detach().cos()).sum() + sum((s ** 2).sum() * (k + 1) for k, s in enumerate(states))
    return [y, *states, *torch.autograd.grad(loss, [x, *layer.parameters()])]


def _pair(kind, option, dtype, train, backend="fused"):
    torch.manual_seed(0)
    kw = OPTIONS[option]
    a = getattr(rnnkit, kind)(6, 8, num_layers=2, bidirectional=True, dtype=dtype,
                              backend="reference", **kw)
    b = getattr(rnnkit, kind)(6, 8, num_layers=2, bidirectional=True, dtype=dtype,
                              backend=backend, **kw)
    b.load_state_dict(a.state_dict())
    return a.train(train), b.train(train)


@needs_kernels
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("kind", KINDS)
def test_kernel_equals_torch_loops_in_float64(kind, option, train, monkeypatch):
    _, layer = _pair(kind, option, torch.float64, train)
    x = torch.randn(7, 4, 6, dtype=torch.float64, requires_grad=True)
    _assert_kernels_equal_torch_loops(layer, x, torch.tensor([7, 2, 5, 1]), monkeypatch)


def _assert_kernels_equal_torch_loops(layer, x, lengths, monkeypatch):
    """Outputs, states and gradients with the kernels and with the torch loops, without
    and with ``lengths``: equal in float64."""
    for lens in (None, lengths):
        fast = _run(layer, x, lens)
        monkeypatch.setenv("RNNKIT_CPU_KERNELS", "0")
        slow = _run(layer, x, lens)
        monkeypatch.delenv("RNNKIT_CPU_KERNELS")
        for a, b in zip(fast, slow):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def _float32_error(kind, option, train, lengths) -> float:
    """The largest error of fused against reference in float32, relative to scale."""
    ref, fast = _pair(kind, option, torch.float32, train)
    torch.manual_seed(2)
    x = torch.randn(9, 5, 6, requires_grad=True)
    return max(((a - b).abs().max() / a.abs().max().clamp_min(1.0)).item()
               for a, b in zip(_run(ref, x, lengths), _run(fast, x, lengths)))


@needs_kernels
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("kind", KINDS)
def test_float32_fast_paths_are_as_accurate_as_the_torch_loops(kind, option, train, monkeypatch):
    """float32 (the kernel's exp/tanh, oneDNN's products) against the reference: the
    error is float32 roundoff (layer norm amplifies it to ~1e-5 in the gain gradients),
    and of the order of that of the torch-only loops on the same run."""
    for lengths in (None, torch.tensor([9, 3, 7, 1, 9])):
        fast = _float32_error(kind, option, train, lengths)
        monkeypatch.setenv("RNNKIT_CPU_KERNELS", "0")
        monkeypatch.setenv("RNNKIT_ONEDNN", "0")
        slow = _float32_error(kind, option, train, lengths)
        monkeypatch.delenv("RNNKIT_CPU_KERNELS")
        monkeypatch.delenv("RNNKIT_ONEDNN")
        assert fast < 5e-5 and fast <= 10 * slow + 1e-6, (fast, slow)


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_onednn_products_equal_torch_mm(kind, monkeypatch):
    """The same float32 run with products through oneDNN and through torch.mm."""
    torch.manual_seed(1)
    layer = getattr(rnnkit, kind)(16, 32, num_layers=2, layer_norm=True, backend="fused")
    x = torch.randn(20, 8, 16, requires_grad=True)  # 160 rows: oneDNN takes them
    assert 20 * 8 >= _matmul.MIN_ROWS
    runs = []
    for onednn in ("1", "0"):
        monkeypatch.setenv("RNNKIT_ONEDNN", onednn)
        y, _ = layer(x)
        runs.append([y, *torch.autograd.grad(y.square().sum(), [x, *layer.parameters()])])
    for a, b in zip(*runs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_fixed_product_is_x_times_w_transposed():
    w, x = torch.randn(12, 5), torch.randn(3, 5)
    prod = _matmul.Fixed(w, 3)
    torch.testing.assert_close(prod(x), x @ w.t(), rtol=1e-5, atol=1e-5)
    out, acc = torch.empty(3, 12), torch.ones(3, 12)
    torch.testing.assert_close(prod.into(x, out), x @ w.t(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(prod.add_to(acc, x), 1 + x @ w.t(), rtol=1e-5, atol=1e-5)
    wd, xd = w.double(), x.double()  # float64: torch.mm
    fixed = _matmul.Fixed(wd, 3)
    torch.testing.assert_close(fixed(xd), xd @ wd.t(), rtol=1e-14, atol=1e-14)
    assert fixed.packed is None


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("transpose", [True, False])
@pytest.mark.parametrize("threads", [1, 2])
def test_loop_product_matches_torch(dtype, transpose, threads):
    """csrc/loop.c's product, x @ w^T or x @ w, on shapes that leave a partial panel of
    columns and a partial block of rows, with rows of x and of the result apart."""
    lib = _cpu_kernels.library(dtype)
    width = lib.rnnkit_panel_width()
    torch.manual_seed(0)
    for M, K, N in ((1, 1, 1), (3, 7, width + 5), (17, 33, 2 * width), (9, 64, width - 1),
                    (2, 300, 260)):
        w = torch.randn((N, K) if transpose else (K, N), dtype=dtype)
        packed = _matmul.packed(w, transpose)
        x = torch.randn(M, K + 3, dtype=dtype)[:, :K]  # rows K + 3 apart
        want = x @ (w.t() if transpose else w)
        tol = 1e-5 * K ** 0.5 if dtype == torch.float32 else 1e-13  # sums of K products
        products = [(lib.rnnkit_product, packed)]
        if transpose:  # the short calls' product reads w (N, K) as it is
            products.append((lib.rnnkit_product_rows, w))
        for product, right in products:
            out = torch.full((M, N + 2), 7.0, dtype=dtype)  # rows N + 2 apart
            product(x.data_ptr(), K + 3, M, K, right.data_ptr(), N, out.data_ptr(), N + 2,
                    threads)
            torch.testing.assert_close(out[:, :N], want, rtol=tol, atol=tol)
            assert (out[:, N:] == 7).all()  # nothing written past the N columns


@needs_kernels
def test_kernel_activations_are_accurate_and_keep_nan():
    lib = _cpu_kernels.library(torch.float32)
    x = torch.cat([torch.linspace(-30, 30, 200_001), torch.tensor([-1e4, 1e4, -100.0, 100.0,
                                                                    1e-30, -1e-30, 0.0])])
    for kind, exact in ((0, torch.sigmoid), (1, torch.tanh)):
        y = x.clone()
        lib.rnnkit_activation(y.data_ptr(), y.numel(), kind)
        want = exact(x.double())
        assert ((y.double() - want).abs() <= 4e-7 * want.abs().clamp_min(2 ** -24)).all()
        special = torch.tensor([float("nan"), float("inf"), -float("inf")])
        lib.rnnkit_activation(special.data_ptr(), 3, kind)
        assert special[0].isnan() and special[1] == 1.0
        assert special[2] == -1.0 if kind else 0 <= special[2] < 1e-38


@needs_kernels
def test_nan_input_gives_nan_output():
    layer = rnnkit.LSTM(3, 4, backend="fused", layer_norm=True)
    x = torch.zeros(5, 2, 3)
    x[2, 1, 0] = float("nan")
    y, _ = layer(x)
    assert y[2:, 1].isnan().all() and not y[:, 0].isnan().any()


def test_without_a_compiler_fused_runs_its_torch_loops(monkeypatch, caplog):
    layer = rnnkit.LSTM(3, 4, backend="fused", zoneout=0.2).eval()
    x = torch.randn(5, 2, 3)
    want = layer(x)[0]
    _cpu_kernels.library.cache_clear()
    monkeypatch.setattr(_cpu_kernels, "_compiler", lambda: None)
    try:
        with caplog.at_level(logging.WARNING):
            assert _cpu_kernels.library(torch.float32) is None
            torch.testing.assert_close(layer(x)[0], want, rtol=1e-5, atol=1e-6)
        assert "no C compiler found" in caplog.text
    finally:
        _cpu_kernels.library.cache_clear()


def test_a_failed_build_leaves_nothing_behind(monkeypatch, tmp_path, caplog):
    if _cpu_kernels._compiler() is None:
        pytest.skip("no C compiler")
    broken = tmp_path / "csrc"
    broken.mkdir()
    (broken / "lstm.c").write_text("this is not C;\n")
    monkeypatch.setattr(_cpu_kernels, "SOURCES", broken)
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path / "cache"))
    _cpu_kernels.library.cache_clear()
    try:
        with caplog.at_level(logging.WARNING):
            assert _cpu_kernels.library(torch.float64) is None
        assert "building the fused backend's CPU kernels failed" in caplog.text
        assert not list((tmp_path / "cache").rglob("*.so"))  # no half-written library
    finally:
        _cpu_kernels.library.cache_clear()


@needs_kernels
def test_kernels_are_built_once_into_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path))
    _cpu_kernels.library.cache_clear()
    try:
        lib = _cpu_kernels.library(torch.float64)
        built = list(tmp_path.rglob("rnnkit_double.so"))
        assert isinstance(lib, ctypes.CDLL) and len(built) == 1
        stamp = built[0].stat().st_mtime_ns
        _cpu_kernels.library.cache_clear()
        _cpu_kernels.library(torch.float64)
        assert built[0].stat().st_mtime_ns == stamp  # found, not rebuilt
    finally:
        _cpu_kernels.library.cache_clear()


@needs_kernels
@pytest.mark.parametrize("extras", [{}, {"layer_norm": True, "zoneout": 0.3, "recurrent_dropout": 0.2}])
def test_relu_rnn_kernel_equals_torch_loops(extras, monkeypatch):
    torch.manual_seed(0)
    layer = rnnkit.RNN(6, 8, num_layers=2, nonlinearity="relu", bidirectional=True,
                       dtype=torch.float64, backend="fused", **extras)
    x = torch.randn(7, 4, 6, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([7, 2, 5, 1])
    fast = _run(layer, x, lengths)
    monkeypatch.setenv("RNNKIT_CPU_KERNELS", "0")
    slow = _run(layer, x, lengths)
    assert (fast[0] == 0).any() and (fast[0] > 0).any()  # the ReLU is active and inactive
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@needs_kernels
def test_a_structure_mismatch_turns_the_kernels_off(monkeypatch, caplog):
    """A stale build whose run structure differs from the ctypes mirror is never called."""
    from rnnkit.backends import _fused_cpu

    _fused_cpu._layout_matches.cache_clear()
    monkeypatch.setattr(_fused_cpu, "_INTS", _fused_cpu._INTS + ("extra",))
    try:
        with caplog.at_level(logging.WARNING):
            assert not _fused_cpu._layout_matches(torch.float32)
        assert "running without the kernels" in caplog.text
    finally:
        _fused_cpu._layout_matches.cache_clear()


@needs_kernels
def test_auto_sends_cpu_float32_gru_and_rnn_to_the_kernels(monkeypatch):
    from rnnkit import backends

    if not _matmul.onednn(torch.ones(1)):
        pytest.skip("no oneDNN in this torch")
    x32, x64 = torch.ones(16, 2, 4), torch.ones(16, 2, 4, dtype=torch.float64)
    pick = lambda mode, x, **kw: backends.choose("auto", native_ok=True, x=x, training=True,
                                                 mode=mode, **kw)
    assert [pick(m, x32) for m in ("GRU", "RNN_TANH", "RNN_RELU", "LSTM")] == \
        ["fused", "fused", "fused", "native"]
    assert pick("GRU", x64) == "native" and pick("LSTM", x32, has_lengths=True) == "fused"
    # a short call (generation, one step at a time): the other way round
    assert [pick(m, x32[:15]) for m in ("GRU", "RNN_TANH", "LSTM")] == ["native", "native", "fused"]
    # an LSTM trained on a batch of 32 or more with 128 units or more goes to fused, not
    # in inference, under autocast (oneDNN's kernel in bf16) or with a projection
    wide = torch.ones(16, 32, 4)
    lstm = lambda x, **kw: pick("LSTM", x, **{"hidden_size": 128, **kw})
    assert lstm(wide) == "fused" and lstm(x32) == "native"
    assert lstm(wide, hidden_size=100) == "native" and lstm(wide, projected=True) == "native"
    assert backends.choose("auto", native_ok=True, x=wide, training=False, mode="LSTM",
                           hidden_size=128) == "native"
    with torch.no_grad():
        assert lstm(wide) == "native"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert lstm(wide) == "native"
    monkeypatch.setenv("RNNKIT_CPU_KERNELS", "0")
    assert pick("GRU", x32) == "native"
    # and the layer itself takes that path, with torch.nn's numbers
    monkeypatch.delenv("RNNKIT_CPU_KERNELS")
    torch.manual_seed(0)
    ours, theirs = rnnkit.GRU(4, 6, num_layers=2), torch.nn.GRU(4, 6, num_layers=2)
    theirs.load_state_dict(ours.state_dict())
    calls = []
    monkeypatch.setattr(backends, "per_direction",
                        lambda name, f=backends.per_direction: calls.append(name) or f(name))
    torch.testing.assert_close(ours(x32)[0], theirs(x32)[0], rtol=1e-5, atol=1e-6)
    assert calls == ["fused"]


@needs_kernels
def test_rows_past_their_end_skip_the_products(monkeypatch):
    """Longest sequences first, each step's product runs over the rows still running only,
    and the result equals the torch loops (which compute every row)."""
    seen = []
    rows = _fused_cpu._rows
    monkeypatch.setattr(_fused_cpu, "_rows", lambda n: seen.append(n) or rows(n))
    torch.manual_seed(0)
    layer = rnnkit.LSTM(3, 4, dtype=torch.float64, backend="fused", zoneout=0.2, layer_norm=True)
    x = torch.randn(16, 4, 3, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([3, 16, 1, 9])
    fast = _run(layer, x, lengths)
    assert seen == [[4] + [3] * 2 + [2] * 6 + [1] * 7] * 2  # forward, backward
    monkeypatch.setenv("RNNKIT_CPU_KERNELS", "0")
    for a, b in zip(fast, _run(layer, x, lengths)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_the_onednn_probe_leaves_the_global_generator_alone():
    """The first fused call of a process must draw the same masks as any later one."""
    _matmul._onednn_works.cache_clear()
    try:
        before = torch.get_rng_state()
        _matmul._onednn_works()
        assert torch.equal(torch.get_rng_state(), before)
    finally:
        _matmul._onednn_works.cache_clear()


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch without oneDNN")
def test_the_onednn_probe_under_bf16_autocast():
    """Training with amp=bf16 on the CPU makes the first fused call under autocast: the
    probe still compares float32 products (it once raised 'Float did not match BFloat16')."""
    _matmul._onednn_works.cache_clear()
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            works = _matmul._onednn_works()
        assert works == _matmul._onednn_works.__wrapped__()
        assert works
    finally:
        _matmul._onednn_works.cache_clear()


@needs_kernels
@pytest.mark.parametrize("forward_kernels", ["1", "0"])
@pytest.mark.parametrize("option", ["layer_norm", "everything", "no_bias"])
def test_either_loop_runs_the_backward_of_either_forward(option, forward_kernels, monkeypatch):
    """They keep the same tensors: a forward through the kernels and a backward through
    the torch loops, or the other way round, give the gradients of one path throughout."""
    _, layer = _pair("LSTM", option, torch.float64, True)
    x = torch.randn(7, 4, 6, dtype=torch.float64, requires_grad=True)
    for lengths in (None, torch.tensor([7, 2, 5, 1])):
        want = _run(layer, x, lengths)
        torch.manual_seed(5)
        monkeypatch.setenv("RNNKIT_CPU_KERNELS", forward_kernels)
        y, (h, c) = layer(x, lengths=lengths)
        monkeypatch.setenv("RNNKIT_CPU_KERNELS", "0" if forward_kernels == "1" else "1")
        loss = (y * y.detach().cos()).sum() + (h ** 2).sum() + 2 * (c ** 2).sum()
        got = [y, h, c, *torch.autograd.grad(loss, [x, *layer.parameters()])]
        monkeypatch.delenv("RNNKIT_CPU_KERNELS")
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@needs_kernels
def test_short_calls_see_a_weight_changed_in_any_way():
    """Generation steps one token per call: every call reads W_hh as it is now, after an
    optimiser's in-place step or a change through ``.data`` (which no version counter
    sees)."""
    torch.manual_seed(0)
    layer = rnnkit.LSTM(5, 7, num_layers=2, backend="fused").eval()
    ref = rnnkit.LSTM(5, 7, num_layers=2, backend="reference").eval()
    x = torch.randn(1, 3, 5)
    with torch.no_grad():
        for change in (None, "in place", "through .data", "new memory"):
            if change == "in place":
                layer.weight_hh_l1.mul_(0.5)
            elif change == "through .data":
                layer.weight_hh_l0.data.mul_(-1.5)
            elif change == "new memory":
                layer.weight_hh_l1.data = torch.randn(28, 7)
            ref.load_state_dict(layer.state_dict())
            torch.testing.assert_close(layer(x)[0], ref(x)[0], rtol=1e-5, atol=1e-6)


def _fused_node(y):
    """The fused direction's autograd node below ``y``."""
    todo, seen = [y.grad_fn], set()
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if "FusedDirection" in type(node).__name__:
            return node
        todo.extend(n for n, _ in node.next_functions)
    raise AssertionError("no fused direction in the graph")


@needs_kernels
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_rows_past_their_end_keep_numbers_for_a_backward_in_torch(kind):
    """Forward keeps, for rows past their sequence's end, numbers a backward through the
    torch loops multiplies by a zero gradient: never what the memory held before (a NaN
    there made such a backward's weight gradients NaN)."""
    torch.manual_seed(0)
    layer = getattr(rnnkit, kind)(6, 8, layer_norm=True, zoneout=0.1, dtype=torch.float64,
                                  backend="fused")
    x = torch.randn(7, 4, 6, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([7, 2, 5, 1])
    for _ in range(3):
        poison = [torch.full((n,), float("nan"), dtype=torch.float64)
                  for n in range(16, 1024, 8) for _ in range(2)]
        del poison  # freed: the forward's buffers may be given this memory
        y, _ = layer(x, lengths=lengths)
        for saved in _fused_node(y).saved_tensors:
            if saved is not None and saved.is_floating_point():
                assert torch.isfinite(saved).all()


@needs_kernels
@pytest.mark.parametrize("kind", KINDS)
def test_rows_shared_between_threads_equal_the_torch_loops(kind, monkeypatch):
    """From 2048 state values a step (B H) on (1024 under the layer norm), two threads
    share each step's rows, and the product fetches each one's rows ahead: the same
    numbers as the torch loops, with every extra and rows ending at different steps."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(0)
        kw = dict(OPTIONS["everything"], zoneout=0.2)
        layer = getattr(rnnkit, kind)(5, 128, dtype=torch.float64, backend="fused", **kw)
        x = torch.randn(6, 16, 5, dtype=torch.float64, requires_grad=True)
        _assert_kernels_equal_torch_loops(layer, x, torch.tensor([6, 2, 5, 1] * 4), monkeypatch)
    finally:
        torch.set_num_threads(threads)
