"""Variable lengths on the fused backend's CPU path: the batch sorted longest-first once
for the whole stack (``run_stack``), and the products over the valid rows only.

Checked against the same backend sorting in each direction, against the reference
backend under one seed (the random masks must come out the same), and in float32
against float64.
"""

import pytest
import torch

import rnnkit
from rnnkit.backends import _rows, fused
from rnnkit.backends._rows import AllRows, ValidRows
from rnnkit.layers import run

D = torch.float64
KINDS = ("LSTM", "GRU", "RNN")
OPTIONS = {
    "plain": {},
    "layer_norm": {"layer_norm": True},
    "regularised": {"recurrent_dropout": 0.3, "zoneout": 0.2, "weight_drop": 0.2,
                    "dropout": 0.4},
    "everything": {"layer_norm": True, "recurrent_dropout": 0.3, "zoneout": (0.2, 0.4),
                   "dropout": 0.3},
}
#: Unsorted, with ties, one sequence of full length and one of length 1.
LENGTHS = torch.tensor([4, 9, 1, 9, 6, 4])


def _layer(kind, option, dtype=D, backend="fused", train=True):
    torch.manual_seed(0)
    kw = dict(OPTIONS[option])
    if kind != "LSTM" and isinstance(kw.get("zoneout"), tuple):
        kw["zoneout"] = kw["zoneout"][0]
    layer = getattr(rnnkit, kind)(5, 7, num_layers=3, bidirectional=True, dtype=dtype,
                                  backend=backend, **kw)
    return layer.train(train)


def _inputs(kind, dtype=D):
    torch.manual_seed(1)
    x = torch.randn(9, 6, 5, dtype=dtype, requires_grad=True)
    states = [torch.randn(6, 6, 7, dtype=dtype, requires_grad=True)
              for _ in range(2 if kind == "LSTM" else 1)]
    return x, states


def _run(layer, x, states, lengths, seed=3):
    """Outputs, final states and the gradients of x, the initial states and every
    parameter, under one seed."""
    torch.manual_seed(seed)
    hx = tuple(states) if layer.mode == "LSTM" else states[0]
    y, h = layer(x, hx, lengths=lengths)
    finals = h if isinstance(h, tuple) else (h,)
    loss = (y * y.detach().cos()).sum() + sum((s ** 2).sum() * (k + 1)
                                              for k, s in enumerate(finals))
    return [y, *finals, *torch.autograd.grad(loss, [x, *states, *layer.parameters()])]


def _per_direction(monkeypatch):
    """The fused backend without ``longest_first``: each direction sorts for itself."""
    plain = lambda *args, **kw: fused.run_direction(*args, **kw)  # noqa: E731
    monkeypatch.setattr(rnnkit.backends, "per_direction", lambda name: plain)


@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("kind", KINDS)
def test_sorting_once_equals_sorting_per_direction(kind, option, monkeypatch):
    layer = _layer(kind, option)
    x, states = _inputs(kind)
    once = _run(layer, x, states, LENGTHS)
    _per_direction(monkeypatch)
    each = _run(layer, x, states, LENGTHS)
    for a, b in zip(once, each):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.fixture(params=["rowwise as chosen", "rowwise always"])
def rowwise(request, monkeypatch):
    """Products over the valid rows as chosen by their cost, or always (at these tiny
    widths they would take all rows)."""
    if request.param == "rowwise always":
        monkeypatch.setattr(_rows, "ROWWISE_WORTH", 0)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("kind", KINDS)
def test_sorted_fused_equals_reference_under_one_seed(kind, option, train, rowwise):
    """The masks are drawn in the caller's order, so a seed gives the reference's run."""
    fast = _layer(kind, option, train=train)
    ref = _layer(kind, option, backend="reference", train=train)
    x, states = _inputs(kind)
    for a, b in zip(_run(ref, x, states, LENGTHS), _run(fast, x, states, LENGTHS)):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_padding_stays_zero_and_finals_come_from_the_last_valid_step(kind, rowwise):
    layer = _layer(kind, "plain", train=False)
    x, states = _inputs(kind)
    y, h = layer(x, tuple(states) if kind == "LSTM" else states[0], lengths=LENGTHS)
    h = h[0] if kind == "LSTM" else h
    past = torch.arange(9).unsqueeze(1) >= LENGTHS  # (T, B)
    assert bool((y[past] == 0).all())
    last = y[LENGTHS - 1, torch.arange(6)]  # (B, 2H): each sequence's last valid output
    torch.testing.assert_close(h[-2], last[:, :7], rtol=0, atol=0)  # forward direction
    torch.testing.assert_close(h[-1], y[0, :, 7:], rtol=0, atol=0)  # reverse: ends at t=0


@pytest.mark.parametrize("option", ["plain", "everything"])
@pytest.mark.parametrize("kind", KINDS)
def test_float32_close_to_float64(kind, option, rowwise):
    """In eval mode: the masks drawn in float32 are other numbers than in float64."""
    wide = _layer(kind, option, train=False)
    narrow = _layer(kind, option, dtype=torch.float32, train=False)
    narrow.load_state_dict({k: v.float() for k, v in wide.state_dict().items()})
    x, states = _inputs(kind)
    x32 = x.detach().float().requires_grad_()
    states32 = [s.detach().float().requires_grad_() for s in states]
    for a, b in zip(_run(wide, x, states, LENGTHS), _run(narrow, x32, states32, LENGTHS)):
        torch.testing.assert_close(b, a.float(), rtol=1e-3, atol=1e-4)


def test_sorted_or_unasked_batches_are_left_as_they_are():
    x = torch.zeros(9, 6, 1)
    assert run._longest_first(LENGTHS, x, fused.run_direction).tolist() == [1, 3, 4, 0, 5, 2]
    assert run._longest_first(LENGTHS.sort(descending=True).values, x, fused.run_direction) is None
    assert run._longest_first(None, x, fused.run_direction) is None
    assert run._longest_first(LENGTHS, x, lambda *a: None) is None


def _valid(lengths, steps=9):
    return run.valid_mask(lengths, steps)


def test_valid_rows_only_for_a_sorted_batch_with_enough_padding():
    sorted_lengths = LENGTHS.sort(descending=True).values  # 9 9 6 4 4 1
    rows = ValidRows.of(_valid(sorted_lengths))
    assert isinstance(rows, ValidRows)
    assert rows.full == 6 and rows.valid == 33 and rows.pad.numel() == 21  # step 0 is full
    assert type(ValidRows.of(_valid(LENGTHS))) is AllRows  # not a prefix at each step
    assert type(ValidRows.of(None)) is AllRows
    assert type(ValidRows.of(_valid(torch.tensor([9, 9, 9, 8])))) is AllRows  # 1 of 36


@pytest.mark.parametrize("lengths", [[9, 9, 6, 4, 4, 1], [5, 5, 5, 5, 5, 5], [9, 3, 1, 1, 1, 1]])
def test_valid_row_products_equal_the_products_over_all_rows(lengths, monkeypatch):
    monkeypatch.setattr(_rows, "ROWWISE_WORTH", 0)
    valid = _valid(torch.tensor(lengths))
    rows = ValidRows.of(valid)
    assert isinstance(rows, ValidRows)
    torch.manual_seed(2)
    a = torch.randn(9, 6, 4, dtype=D) * valid  # a gradient: zero on the padding
    b, w, bias = torch.randn(54, 3, dtype=D), torch.randn(5, 4, dtype=D), torch.randn(5, dtype=D)
    a = a.view(54, 4)
    torch.testing.assert_close(rows.tmm(a, b), a.t() @ b, rtol=1e-12, atol=1e-12)
    want = (a @ w.t() + bias).view(9, 6, 5) * valid  # zero on the padding
    torch.testing.assert_close(rows.linear(a, w, bias), want.view(54, 5), rtol=1e-12, atol=1e-12)
