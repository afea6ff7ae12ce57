"""The linear-chain CRF against brute force: every one of the K^n tag sequences of short
sequences scored by hand, for log Z, the likelihood and the Viterbi path, with lengths;
gradients against finite differences in float64."""

import itertools
import math

import pytest
import torch

from rnnkit.layers.crf import CRF

D = torch.float64


def random_crf(K, seed=0):
    g = torch.Generator().manual_seed(seed)
    crf = CRF(K).to(D)
    with torch.no_grad():
        for p in (crf.transitions, crf.start, crf.end):
            p.copy_(torch.randn(p.shape, generator=g, dtype=D))
    return crf


def path_score(crf, e, tags):
    """s(y) written out for one sequence e (n, K): start, emissions, transitions, end."""
    s = crf.start[tags[0]] + crf.end[tags[-1]]
    s = s + sum(e[t, y] for t, y in enumerate(tags))
    return s + sum(crf.transitions[a, b] for a, b in zip(tags, tags[1:]))


def brute_force(crf, e, n):
    """(log Z, best path, best score) of e[:n] by enumerating all K^n paths."""
    K = e.shape[1]
    with torch.no_grad():
        scores = {p: float(path_score(crf, e[:n], p)) for p in itertools.product(range(K), repeat=n)}
    best = max(scores, key=scores.get)
    log_z = math.log(sum(math.exp(s) for s in scores.values()))
    return log_z, list(best), scores[best]


@pytest.fixture
def batch():
    K, T = 3, 5
    crf = random_crf(K)
    emissions = torch.randn(4, T, K, generator=torch.Generator().manual_seed(1), dtype=D)
    lengths = torch.tensor([5, 1, 3, 4])
    return crf, emissions, lengths


def test_log_partition_matches_enumeration_with_lengths(batch):
    crf, e, lengths = batch
    got = crf.log_partition(e, lengths)
    for b, n in enumerate(lengths.tolist()):
        assert got[b].item() == pytest.approx(brute_force(crf, e[b], n)[0], rel=1e-12)


def test_padding_beyond_the_length_changes_nothing(batch):
    crf, e, lengths = batch
    noisy = e.clone()
    for b, n in enumerate(lengths.tolist()):
        noisy[b, n:] = 1e3  # huge scores in the padding must not leak in
    tags = torch.randint(0, 3, (4, 5), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(crf.log_partition(noisy, lengths), crf.log_partition(e, lengths))
    torch.testing.assert_close(crf.log_likelihood(noisy, tags, lengths),
                               crf.log_likelihood(e, tags, lengths))
    assert torch.equal(crf.decode(noisy, lengths)[0], crf.decode(e, lengths)[0])


def test_score_and_likelihood_match_the_written_out_sum(batch):
    crf, e, lengths = batch
    tags = torch.tensor([[0, 1, 2, 1, 0], [2, 0, 0, 0, 0], [1, 1, 0, 2, 2], [2, 1, 0, 1, 1]])
    score, ll = crf.score(e, tags, lengths), crf.log_likelihood(e, tags, lengths)
    for b, n in enumerate(lengths.tolist()):
        expected = path_score(crf, e[b, :n], tags[b, :n].tolist())
        assert score[b].item() == pytest.approx(expected.item(), rel=1e-12)
        log_z = brute_force(crf, e[b], n)[0]
        assert ll[b].item() == pytest.approx(expected.item() - log_z, rel=1e-12)


def test_probabilities_of_all_paths_sum_to_one():
    crf = random_crf(2, seed=3)
    e = torch.randn(1, 4, 2, generator=torch.Generator().manual_seed(4), dtype=D)
    paths = torch.tensor(list(itertools.product(range(2), repeat=4)))  # (16, 4)
    ll = crf.log_likelihood(e.expand(16, 4, 2), paths)
    assert ll.exp().sum().item() == pytest.approx(1.0, abs=1e-12)


def test_viterbi_matches_enumeration_with_lengths(batch):
    crf, e, lengths = batch
    tags, scores = crf.decode(e, lengths)
    for b, n in enumerate(lengths.tolist()):
        _, best, best_score = brute_force(crf, e[b], n)
        assert tags[b, :n].tolist() == best
        assert tags[b, n:].tolist() == [0] * (5 - n)
        assert scores[b].item() == pytest.approx(best_score, rel=1e-12)


def test_viterbi_on_many_random_cases():
    for seed in range(20):
        K = 2 + seed % 3
        crf = random_crf(K, seed=seed)
        e = torch.randn(2, 4, K, generator=torch.Generator().manual_seed(100 + seed), dtype=D)
        lengths = torch.tensor([4, 1 + seed % 4])
        tags, _ = crf.decode(e, lengths)
        for b, n in enumerate(lengths.tolist()):
            assert tags[b, :n].tolist() == brute_force(crf, e[b], n)[1], (seed, b)


def test_untrained_crf_decodes_the_per_step_argmax():
    e = torch.randn(3, 6, 4, generator=torch.Generator().manual_seed(5))
    tags, _ = CRF(4).decode(e)
    assert torch.equal(tags, e.argmax(-1))


def test_transitions_decide_the_path():
    # emissions slightly prefer tag 0 everywhere, but 0 → 0 is forbidden
    crf = CRF(2).to(D)
    with torch.no_grad():
        crf.transitions[0, 0] = -100.0
    e = torch.tensor([[[1.0, 0.9]] * 5], dtype=D)
    assert crf.decode(e)[0].tolist() == [[0, 1, 0, 1, 0]]


def test_nll_reductions(batch):
    crf, e, lengths = batch
    tags = torch.zeros(4, 5, dtype=torch.long)
    per = -crf.log_likelihood(e, tags, lengths)
    torch.testing.assert_close(crf(e, tags, lengths, reduction="none"), per)
    torch.testing.assert_close(crf(e, tags, lengths, reduction="sum"), per.sum())
    torch.testing.assert_close(crf(e, tags, lengths), per.sum() / 13)


def test_gradients_against_finite_differences(batch):
    crf, e, lengths = batch
    tags = torch.tensor([[0, 1, 2, 1, 0], [2, 0, 0, 0, 0], [1, 1, 0, 2, 2], [2, 1, 0, 1, 1]])
    inputs = [t.detach().clone().requires_grad_() for t in
              (e, crf.transitions, crf.start, crf.end)]
    assert torch.autograd.gradcheck(lambda *xs: _nll(*xs, tags, lengths), inputs)


def _nll(e, transitions, start, end, tags, lengths):
    """The CRF's loss as a function of all its inputs, for gradcheck."""
    crf = CRF(e.shape[2]).to(D)
    del crf.transitions, crf.start, crf.end
    crf.transitions, crf.start, crf.end = transitions, start, end
    return crf(e, tags, lengths, reduction="none")


def test_gradient_of_log_z_is_the_marginals():
    # ∂ log Z / ∂ e[t, k] = p(y_t = k): the marginals, each step's summing to one
    crf = random_crf(3, seed=6)
    e = torch.randn(1, 3, 3, generator=torch.Generator().manual_seed(7), dtype=D,
                    requires_grad=True)
    crf.log_partition(e).sum().backward()
    paths = list(itertools.product(range(3), repeat=3))
    with torch.no_grad():
        weights = torch.tensor([float(path_score(crf, e[0], p)) for p in paths]).softmax(0)
    marginals = torch.zeros(3, 3, dtype=D)
    for w, p in zip(weights, paths):
        for t, k in enumerate(p):
            marginals[t, k] += w
    torch.testing.assert_close(e.grad[0], marginals)


@pytest.mark.parametrize("bad, message", [
    (lambda: CRF(0), "num_tags must be a positive int"),
    (lambda: CRF(3).log_partition(torch.zeros(2, 4, 2)), r"expected emissions of shape"),
    (lambda: CRF(3).log_partition(torch.zeros(4, 3)), r"expected emissions of shape"),
    (lambda: CRF(3).decode(torch.zeros(2, 4, 3), torch.tensor([4, 0])),
     r"lengths must be in \[1, 4\], got \[4, 0\]"),
    (lambda: CRF(3).decode(torch.zeros(2, 4, 3), torch.tensor([5, 1])), r"lengths must be in"),
    (lambda: CRF(3)(torch.zeros(2, 4, 3), torch.zeros(2, 3, dtype=torch.long)),
     r"expected tags of shape \(2, 4\), got \(2, 3\)"),
    (lambda: CRF(3)(torch.zeros(2, 4, 3), torch.zeros(2, 4, dtype=torch.long), reduction="avg"),
     "reduction must be"),
])
def test_bad_input_is_refused_in_one_line(bad, message):
    with pytest.raises(ValueError, match=message) as info:
        bad()
    assert "\n" not in str(info.value)
