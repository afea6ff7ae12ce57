"""rnnkit.losses.cross_entropy: the compiled CPU kernel against torch's cross-entropy."""

import pytest
import torch
from torch.nn import functional as F

from rnnkit import losses
from rnnkit.backends import _cpu_kernels
from rnnkit.losses import cross_entropy


@pytest.fixture(autouse=True)
def _kernel_for_every_width(monkeypatch):
    """The kernel takes wide outputs only; these tests give it narrow ones too."""
    monkeypatch.setattr(losses, "MIN_CLASSES", 1)


needs_kernels = pytest.mark.skipif(_cpu_kernels.library(torch.float64) is None,
                                   reason="no C compiler: the kernels cannot be built")


def _data(dtype, N=37, V=1001, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(N, V, generator=g, dtype=torch.float64) * 4).to(dtype)
    t = torch.randint(0, V, (N,), generator=g)
    return x, t


def _both(x, t, reduction, weight=1.7, **kw):
    """(loss, gradient) of rnnkit's and of F's, for the same upstream weight."""
    out = []
    for fn in (cross_entropy, F.cross_entropy):
        xi = x.detach().clone().requires_grad_()
        loss = fn(xi, t, reduction=reduction, **kw)
        (loss * weight).sum().backward()
        out.append((loss, xi.grad))
    return out


@needs_kernels
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_equals_torch_in_float64(reduction):
    x, t = _data(torch.float64)
    t[3] = t[9] = -100
    (a, ga), (b, gb) = _both(x, t, reduction)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ga, gb, rtol=1e-12, atol=1e-14)
    assert ga[3].abs().max() == 0  # ignored rows: no gradient


@needs_kernels
def test_gradcheck_float64_with_a_per_row_upstream_gradient():
    x, t = _data(torch.float64, N=5, V=13)
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda z: cross_entropy(z, t, "none"), (x,))
    assert torch.autograd.gradcheck(lambda z: cross_entropy(z, t, "mean"), (x,))


@needs_kernels
def test_float32_close_to_float64_and_uses_the_kernel(monkeypatch):
    x, t = _data(torch.float32, N=64, V=14115)
    (a, ga), _ = _both(x, t, "mean")
    (b, gb), _ = _both(x.double(), t, "mean")
    assert a.dtype == torch.float32 and ga.dtype == torch.float32
    torch.testing.assert_close(a.double(), b, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ga.double(), gb, rtol=1e-4, atol=1e-9)
    called = []
    lib = _cpu_kernels.library(torch.float32)
    monkeypatch.setattr(lib, "xent_forward", lambda *a: called.append(a) or None,
                        raising=True)
    cross_entropy(x, t)
    assert called, "float32 on the CPU goes to the compiled kernel"


@needs_kernels
def test_bf16_logits_give_a_float32_loss_and_a_bf16_gradient():
    """Under autocast the output layer's logits are bf16: the loss is not rounded to bf16,
    and the gradient is the float32 one rounded once."""
    x, t = _data(torch.float32, N=40, V=3000)
    xb = x.bfloat16()
    (a, ga), _ = _both(xb, t, "mean")
    (b, gb), _ = _both(xb.float(), t, "mean")
    assert a.dtype == torch.float32 and ga.dtype == torch.bfloat16
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ga, gb.bfloat16(), rtol=0, atol=0)  # round-to-nearest-even
    # torch's own bf16 log_softmax rounds the loss itself
    assert abs(F.cross_entropy(xb, t).item() - b.item()) > abs(a.item() - b.item())


@needs_kernels
def test_extreme_logits_stay_finite_and_nan_propagates():
    x = torch.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [float("nan"), 0.0, 1.0]])
    t = torch.tensor([0, 2, 1])
    loss = cross_entropy(x, t, "none")
    want = F.cross_entropy(x, t, reduction="none")
    torch.testing.assert_close(loss[:2], want[:2])
    assert torch.isnan(loss[2])


def test_without_kernels_it_is_torch(monkeypatch):
    monkeypatch.setenv("RNNKIT_CPU_KERNELS", "0")
    x, t = _data(torch.float32)
    (a, ga), (b, gb) = _both(x, t, "mean")
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(ga, gb)
    xb = x.bfloat16()
    assert cross_entropy(xb, t).dtype == torch.float32


def test_bad_input_is_refused_with_a_message():
    x, t = _data(torch.float32, N=4, V=5)
    with pytest.raises(ValueError, match="reduction must be one of"):
        cross_entropy(x, t, reduction="avg")
    with pytest.raises(ValueError, match="same leading shape"):
        cross_entropy(x, t[:3])
    with pytest.raises(TypeError, match="int64"):
        cross_entropy(x, t.int())
    if _cpu_kernels.library(torch.float32) is not None:
        with pytest.raises(IndexError, match="outside"):
            cross_entropy(x, torch.tensor([0, 1, 5, 2]))


def test_leading_dimensions_are_kept():
    x, t = _data(torch.float32, N=12, V=7)
    loss = cross_entropy(x.view(3, 4, 7), t.view(3, 4), reduction="none")
    assert loss.shape == (3, 4)
    torch.testing.assert_close(loss.flatten(), F.cross_entropy(x, t, reduction="none"))



@needs_kernels
def test_narrow_outputs_go_to_torch(monkeypatch):
    """Below MIN_CLASSES torch's kernels are as fast: a character model's 70 classes."""
    monkeypatch.setattr(losses, "MIN_CLASSES", 4096)
    lib = _cpu_kernels.library(torch.float32)
    monkeypatch.setattr(lib, "xent_forward", lambda *a: pytest.fail("the kernel ran"))
    x, t = _data(torch.float32, N=8, V=70)
    torch.testing.assert_close(cross_entropy(x, t), F.cross_entropy(x, t))
