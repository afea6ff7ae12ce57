"""The clustered softmax (``rnnkit.layers.ClusteredSoftmax``): the distribution by hand,
its loss against the log-probabilities it gives, gradients by finite differences, and a
word model that trains, evaluates and samples with it."""

import math

import pytest
import torch

from rnnkit import config as configs
from rnnkit.layers.clustered_softmax import ClusteredSoftmax
from rnnkit.tasks.lm import ModelConfig, build_model


def _layer(cutoffs=(3, 7), vocab=12, d=5, seed=0):
    torch.manual_seed(seed)
    layer = ClusteredSoftmax(d, vocab, cutoffs).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_()
    return layer


def test_distribution_by_hand():
    layer = _layer()
    h = torch.randn(4, 5, dtype=torch.float64)
    logp = layer(h)  # (4, 12)
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(4, dtype=torch.float64))
    w, b, u, a = layer.weight, layer.bias, layer.cluster_weight, layer.cluster_bias
    head = torch.softmax(torch.cat([h @ w[:3].T + b[:3], h @ u.T + a], -1), -1)  # (4, 3 + 2)
    first = torch.softmax(h @ w[3:7].T + b[3:7], -1)  # words 3 … 6
    second = torch.softmax(h @ w[7:].T + b[7:], -1)  # words 7 … 11
    expected = torch.cat([head[:, :3], head[:, 3:4] * first, head[:, 4:5] * second], -1)
    torch.testing.assert_close(logp.exp(), expected)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_loss_is_minus_the_log_probability_with_its_gradients(reduction):
    layer = _layer()
    h = torch.randn(3, 6, 5, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([[0, 3, 7, 11, 2, 6], [8, 8, 1, 0, 4, 5],
                            [11, 10, 9, 3, 3, 0]])  # every cluster, first and last words
    loss = layer.loss(h, targets, reduction)
    reference = -layer(h).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    reference = {"none": reference, "sum": reference.sum(), "mean": reference.mean()}[reduction]
    torch.testing.assert_close(loss, reference)
    params = [h, *layer.parameters()]
    got = torch.autograd.grad(loss.sum(), params)
    want = torch.autograd.grad(reference.sum(), params)
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r)


def test_gradcheck():
    layer = _layer(cutoffs=(2, 4), vocab=7, d=3)
    h = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([0, 2, 4, 6, 3])
    names = [n for n, _ in layer.named_parameters()]

    def loss(h, *params):
        return _loss(layer, dict(zip(names, params)), h, targets)

    assert torch.autograd.gradcheck(
        loss, (h, *[p.detach().clone().requires_grad_() for p in layer.parameters()]))


class _Loss(torch.nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, h, targets):
        return self.layer.loss(h, targets, "sum")


def _loss(layer, params, h, targets):
    """layer.loss with ``params`` in place of its parameters (gradcheck perturbs them)."""
    wrapper = _Loss(layer)
    return torch.func.functional_call(wrapper, {f"layer.{k}": v for k, v in params.items()},
                                      (h, targets))


def test_head_only_targets_and_bf16_autocast_keeps_a_float32_loss():
    layer = ClusteredSoftmax(8, 50, [10, 30])
    h = torch.randn(20, 8)
    targets = torch.randint(0, 10, (20,))  # the head only
    torch.testing.assert_close(layer.loss(h, targets, "none"),
                               -layer(h).gather(-1, targets[:, None]).squeeze(-1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = layer.loss(h, torch.randint(0, 50, (20,)))
    assert loss.dtype == torch.float32 and math.isfinite(loss.item())


def test_cutoffs_are_checked():
    for bad in ([], [0, 5], [5, 5], [7, 3], [5, 50]):
        with pytest.raises(ValueError, match="cutoffs must be increasing"):
            ClusteredSoftmax(4, 50, bad)
    with pytest.raises(ValueError, match="softmax_cutoffs must be increasing"):
        configs.from_dict(ModelConfig, {"softmax_cutoffs": [100, 50]})


def test_language_model_ties_the_words_and_its_loss_is_the_distributions():
    cfg = configs.from_dict(ModelConfig, {"embedding_size": 8, "hidden_size": 8,
                                          "num_layers": 1, "tie_weights": True,
                                          "softmax_cutoffs": [4, 10]})
    model = build_model(20, cfg, seed=0).double().eval()
    assert model.head.weight is model.embed.weight
    tokens = torch.randint(0, 20, (6, 3))
    targets = torch.randint(0, 20, (6, 3))
    logits, _ = model(tokens)
    assert logits.shape == (6, 3, 20)
    loss, _ = model(tokens, targets=targets, reduction="sum")
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(
        logits.reshape(-1, 20), targets.reshape(-1), reduction="sum"))
    plain = build_model(20, configs.from_dict(ModelConfig, {
        "embedding_size": 8, "hidden_size": 8, "num_layers": 1, "tie_weights": True}), 0)
    assert set(plain.state_dict()) < set(model.state_dict())  # + the cluster vectors
