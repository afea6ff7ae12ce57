"""Decoding: top-k / top-p filtering, temperature, seeded sampling and the generate loop."""

import math

import pytest
import torch

from rnnkit.decoding import filter_logits, generate, sample_next

PROBS = torch.tensor([0.5, 0.3, 0.15, 0.05])
LOGITS = PROBS.log()


def kept(filtered):
    return torch.isfinite(filtered).tolist()


def frequencies(logits, n=20_000, seed=0, **kwargs):
    gen = torch.Generator().manual_seed(seed)
    draws = sample_next(logits.expand(n, -1), generator=gen, **kwargs)
    return torch.bincount(draws, minlength=logits.shape[-1]).double() / n


# --- filter_logits ---------------------------------------------------------------------------

def test_top_k_keeps_exactly_the_k_largest():
    logits = torch.tensor([[0.3, -1.0, 2.0, 0.7, 5.0, -3.0]])
    out = filter_logits(logits, top_k=3)
    assert kept(out) == [[False, False, True, True, True, False]]
    assert torch.equal(out[0, [2, 3, 4]], logits[0, [2, 3, 4]])   # kept values unchanged
    assert out[0, 0] == -math.inf


def test_top_k_per_row_and_k_at_least_v_keeps_all():
    logits = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    assert kept(filter_logits(logits, top_k=1)) == [[False, False, True], [True, False, False]]
    assert torch.equal(filter_logits(logits, top_k=3), logits)
    assert torch.equal(filter_logits(logits, top_k=10), logits)


@pytest.mark.parametrize("p,expected", [
    (0.8, [True, True, False, False]),    # 0.5 + 0.3 reaches 0.8
    (0.81, [True, True, True, False]),
    (0.5, [True, False, False, False]),
    (0.3, [True, False, False, False]),   # the most likely token alone already exceeds p
    (1e-9, [True, False, False, False]),  # at least one token
    (0.96, [True, True, True, True]),
    (1.0, [True, True, True, True]),
])
def test_top_p_on_a_hand_made_distribution(p, expected):
    assert kept(filter_logits(LOGITS, top_p=p)) == expected


def test_top_p_reaches_p_despite_float32_rounding():
    # float32 softmax(log probs) sums 0.4 + 0.25 + 0.2 to 0.84999996, an ulp under float32(0.85)
    logits = torch.tensor([0.4, 0.25, 0.2, 0.1, 0.05]).log()
    assert kept(filter_logits(logits, top_p=0.85)) == [True, True, True, False, False]
    assert kept(filter_logits(logits, top_p=0.4)) == [True, False, False, False, False]


def test_top_p_is_invariant_to_order_and_shift():
    perm = torch.tensor([2, 0, 3, 1])
    out = filter_logits(LOGITS[perm] + 7.0, top_p=0.8)
    assert kept(out) == [False, True, False, True]


def test_ties_are_kept_together():
    logits = torch.tensor([1.0, 3.0, 3.0, 0.0])
    assert kept(filter_logits(logits, top_k=1)) == [False, True, True, False]
    uniform = torch.zeros(4)
    assert kept(filter_logits(uniform, top_p=0.5)) == [True] * 4
    assert kept(filter_logits(uniform, top_k=2)) == [True] * 4


def test_top_k_then_top_p():
    # top-k=3 leaves [0.5, 0.3, 0.15] / 0.95; the first two carry 0.842 >= 0.8
    out = filter_logits(LOGITS, top_k=3, top_p=0.8)
    assert kept(out) == [True, True, False, False]
    # without top-k, 0.84 needs the third token too
    assert kept(filter_logits(LOGITS, top_p=0.84)) == [True, True, True, False]
    assert kept(filter_logits(LOGITS, top_k=3, top_p=0.84)) == [True, True, False, False]


def test_filter_keeps_shape_and_dtype_and_leaves_input_alone():
    logits = torch.randn(2, 3, 7, dtype=torch.float64)
    before = logits.clone()
    out = filter_logits(logits, top_k=2, top_p=0.9)
    assert out.shape == (2, 3, 7) and out.dtype == torch.float64
    assert torch.equal(logits, before)
    assert (torch.isfinite(out).sum(-1) >= 1).all()
    assert (torch.isfinite(out).sum(-1) <= 2).all()


# --- sample_next -----------------------------------------------------------------------------

def test_temperature_zero_is_argmax():
    logits = torch.randn(16, 11, generator=torch.Generator().manual_seed(3))
    out = sample_next(logits, temperature=0.0)
    assert out.dtype == torch.int64 and out.shape == (16,)
    assert torch.equal(out, logits.argmax(-1))
    assert torch.equal(sample_next(logits, temperature=0, top_k=1, top_p=0.1), logits.argmax(-1))


def test_top_k_one_is_argmax_whatever_the_temperature():
    logits = torch.randn(64, 9, generator=torch.Generator().manual_seed(4))
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(sample_next(logits, temperature=5.0, top_k=1, generator=gen),
                       logits.argmax(-1))


@pytest.mark.parametrize("kwargs,expected", [
    (dict(), [0.5, 0.3, 0.15, 0.05]),
    (dict(top_p=0.8), [0.625, 0.375, 0.0, 0.0]),
    (dict(top_k=3), [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0.0]),
    (dict(top_k=2, top_p=0.5), [1.0, 0.0, 0.0, 0.0]),   # after top-k, 0.625 alone reaches 0.5
    (dict(temperature=0.5), [0.25 / 0.365, 0.09 / 0.365, 0.0225 / 0.365, 0.0025 / 0.365]),
    (dict(temperature=2.0, top_k=2),
     [math.sqrt(0.5) / (math.sqrt(0.5) + math.sqrt(0.3)),
      math.sqrt(0.3) / (math.sqrt(0.5) + math.sqrt(0.3)), 0.0, 0.0]),
])
def test_sampling_frequencies_match_the_filtered_distribution(kwargs, expected):
    freq = frequencies(LOGITS, **kwargs)
    torch.testing.assert_close(freq, torch.tensor(expected, dtype=torch.float64),
                               atol=0.02, rtol=0.0)
    assert (freq[torch.tensor(expected) == 0] == 0).all()   # filtered tokens are never drawn


def test_same_seed_same_draws_different_seed_different_draws():
    logits = torch.zeros(200, 10)
    a = sample_next(logits, generator=torch.Generator().manual_seed(1))
    b = sample_next(logits, generator=torch.Generator().manual_seed(1))
    c = sample_next(logits, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


# --- generate --------------------------------------------------------------------------------

V = 6


def counting_step(tokens, state):
    """Logits that make token (t + 1) mod V the likeliest after t; state counts the calls."""
    logits = torch.nn.functional.one_hot((tokens + 1) % V, V).float() * 10.0   # (B, V)
    return logits, state + 1


def test_generate_greedy_follows_the_step_function():
    out = generate(counting_step, 0, torch.tensor([0, 3]), 8, temperature=0.0)
    assert out.dtype == torch.int64 and out.shape == (2, 8)
    assert out.tolist() == [[1, 2, 3, 4, 5, 0, 1, 2], [4, 5, 0, 1, 2, 3, 4, 5]]


def test_generate_threads_the_state_and_runs_without_grad():
    seen = []

    def step(tokens, state):
        seen.append((tokens.tolist(), state, torch.is_grad_enabled()))
        return counting_step(tokens, state)

    generate(step, 10, torch.tensor([2]), 3, temperature=0.0)
    assert seen == [([2], 10, False), ([3], 11, False), ([4], 12, False)]


def test_generate_stop_token():
    calls = []

    def step(tokens, state):
        calls.append(tokens.tolist())
        return counting_step(tokens, state)

    # row 0 reaches 4 after 3 steps, row 1 after 1 step and then emits only 4
    out = generate(step, 0, torch.tensor([1, 3]), 7, temperature=0.0, stop=4)
    assert out.tolist() == [[2, 3, 4, 4, 4, 4, 4], [4, 4, 4, 4, 4, 4, 4]]
    assert len(calls) == 3   # the loop ends once every row has stopped
    # a stop that never comes changes nothing
    out = generate(counting_step, 0, torch.tensor([0]), 4, temperature=0.0, stop=V + 1)
    assert out.tolist() == [[1, 2, 3, 4]]


def test_generate_is_reproducible_with_a_seed():
    def step(tokens, state):
        return torch.zeros(tokens.shape[0], 50), state

    first = torch.zeros(4, dtype=torch.long)
    a = generate(step, None, first, 30, generator=torch.Generator().manual_seed(7))
    b = generate(step, None, first, 30, generator=torch.Generator().manual_seed(7))
    c = generate(step, None, first, 30, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() < 50


def test_generate_length_zero():
    out = generate(counting_step, 0, torch.tensor([0, 1, 2]), 0)
    assert out.shape == (3, 0) and out.dtype == torch.int64


# --- bad arguments ---------------------------------------------------------------------------

BAD = [
    (lambda: filter_logits(LOGITS, top_k=0), r"^top_k must be a positive integer, got 0$"),
    (lambda: filter_logits(LOGITS, top_k=-2), r"^top_k must be a positive integer, got -2$"),
    (lambda: filter_logits(LOGITS, top_k=2.5), r"^top_k must be a positive integer, got 2.5$"),
    (lambda: filter_logits(LOGITS, top_k=True), r"^top_k must be a positive integer, got True$"),
    (lambda: filter_logits(LOGITS, top_p=0.0), r"^top_p must be in \(0, 1\], got 0.0$"),
    (lambda: filter_logits(LOGITS, top_p=1.5), r"^top_p must be in \(0, 1\], got 1.5$"),
    (lambda: filter_logits(LOGITS, top_p=float("nan")), r"^top_p must be in \(0, 1\], got nan$"),
    (lambda: sample_next(LOGITS[None], temperature=-0.1), r"^temperature must be a finite number >= 0, got -0.1$"),
    (lambda: sample_next(LOGITS[None], temperature=float("inf")), r"^temperature must be a finite number >= 0, got inf$"),
    (lambda: sample_next(LOGITS[None], top_p=2.0), r"^top_p must be in \(0, 1\], got 2.0$"),
    (lambda: sample_next(LOGITS), r"^logits must be \(B, V\), got shape \(4,\)$"),
    (lambda: generate(counting_step, 0, torch.tensor([0]), -1), r"^length must be an integer >= 0, got -1$"),
    (lambda: generate(counting_step, 0, torch.tensor(0), 3), r"^first must be \(B,\), got shape \(\)$"),
    (lambda: generate(counting_step, 0, torch.tensor([0]), 3, stop=1.5), r"^stop must be an integer token id, got 1.5$"),
    (lambda: generate(counting_step, 0, torch.tensor([0]), 0, top_k=0), r"^top_k must be a positive integer, got 0$"),
]


@pytest.mark.parametrize("call,message", BAD)
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()
