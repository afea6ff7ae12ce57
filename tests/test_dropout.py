"""The cheap random masks (rnnkit.layers.dropout) and the layers' zoneout masks."""

import pytest
import torch
from torch import nn

import rnnkit
from rnnkit.layers.dropout import Dropout, dropout, keep_mask, splitmix_words


def test_keep_mask_keeps_with_probability_p_independently():
    torch.manual_seed(0)
    mask = keep_mask((401, 33, 5), 0.3, dtype=torch.float32)  # 66,165: not a multiple of 4
    assert mask.shape == (401, 33, 5) and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert mask.mean().item() == pytest.approx(0.3, abs=0.007)  # 4 standard deviations
    flat = mask.flatten() - 0.3  # neighbours are lanes of one random word: independent
    assert (flat[1:] * flat[:-1]).mean().item() == pytest.approx(0.0, abs=0.004)
    for lane in range(4):  # each 16-bit lane of the words alike
        assert flat[lane::4].mean().item() == pytest.approx(0.0, abs=0.014)
    torch.manual_seed(0)
    assert torch.equal(keep_mask((401, 33, 5), 0.3, dtype=torch.float32), mask)
    assert torch.all(keep_mask((3, 2), 0.999999, dtype=torch.float64) == 1.0)
    assert torch.all(keep_mask((3, 2), 0.0, dtype=torch.float64) == 0.0)


def test_keep_mask_is_splitmix64_from_one_seed_with_or_without_the_kernels(monkeypatch):
    # SplitMix64's first output from state 0, as published with the generator
    assert splitmix_words(0, 1).item() == 0xE220A8397B1DCDAF - 2**64
    shape = (37, 3, 7)  # 777 entries: the last word's first lanes only
    torch.manual_seed(5)
    seed = int(torch.empty((), dtype=torch.int64).random_(-2**63, None)) % 2**64
    lanes = splitmix_words(seed, 195).view(torch.int16)[:777].view(shape)
    expected = (lanes < round(0.3 * 65536) - 32768).double()
    for kernels in ("1", "0"):
        monkeypatch.setenv("RNNKIT_CPU_KERNELS", kernels)
        for dtype in (torch.float32, torch.float64):
            torch.manual_seed(5)
            mask = keep_mask(shape, 0.3, dtype=dtype)
            assert mask.dtype == dtype and torch.equal(mask.double(), expected)
    monkeypatch.setenv("RNNKIT_CPU_KERNELS", "1")
    torch.manual_seed(5)
    mask = keep_mask((300_001,), 0.3, dtype=torch.float32)  # shared between threads
    torch.manual_seed(5)
    monkeypatch.setenv("RNNKIT_CPU_KERNELS", "0")
    assert torch.equal(keep_mask((300_001,), 0.3, dtype=torch.float32), mask)


def test_zoneout_masks_are_drawn_per_step_with_probability_p():
    layer = rnnkit.LSTM(3, 5, zoneout=(0.3, 0.85)).train()
    torch.manual_seed(0)
    masks = layer.draw_masks(401, 33, torch.zeros(1))
    assert masks.keep_h.shape == masks.keep_c.shape == (401, 33, 5)
    assert masks.keep_h.mean().item() == pytest.approx(0.3, abs=0.007)
    assert masks.keep_c.mean().item() == pytest.approx(0.85, abs=0.006)
    torch.manual_seed(0)
    assert torch.equal(layer.draw_masks(401, 33, torch.zeros(1)).keep_h, masks.keep_h)


def test_dropout_zeroes_with_probability_p_and_scales_the_rest():
    x = torch.randn(200, 50, 40, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(3)
    y = Dropout(0.35).train()(x)
    kept = y != 0
    assert 1 - kept.double().mean().item() == pytest.approx(0.35, abs=0.006)
    torch.testing.assert_close(y[kept], x[kept] / 0.65, rtol=1e-15, atol=0)
    (g,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(g, kept.double() / 0.65, rtol=1e-15, atol=0)
    torch.manual_seed(3)
    assert torch.equal(dropout(x, 0.35), y)


def test_dropout_is_a_drop_in_for_torch_nn_dropout():
    x = torch.randn(4, 6)
    layer = Dropout(0.5)
    assert layer.state_dict() == nn.Dropout(0.5).state_dict() == {}
    assert torch.equal(layer.eval()(x), x)  # evaluation: the identity
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))
    assert repr(layer) == "Dropout(p=0.5)"
    with pytest.raises(ValueError, match=r"dropout must be a probability in \[0, 1\], got 1.5"):
        Dropout(1.5)
    with pytest.raises(TypeError, match="dropout must be a float, got str"):
        Dropout("0.1")


def test_dropout_under_bf16_keeps_the_dtype():
    x = torch.randn(35, 20, 16).to(torch.bfloat16)
    y = dropout(x, 0.25)
    assert y.dtype == torch.bfloat16
    ratio = (y[y != 0].float() / x[y != 0].float())
    torch.testing.assert_close(ratio, torch.full_like(ratio, 4 / 3), rtol=8e-3, atol=0)
