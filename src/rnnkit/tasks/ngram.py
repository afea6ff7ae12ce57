"""A logistic regression over Naive-Bayes-weighted word n-grams (NBSVM's logistic form,
Wang & Manning 2012, "Baselines and Bigrams"): the bag-of-words partner whose
probabilities a text classifier averages with its own, as Mesnil et al. (2015,
arXiv:1412.5335) average an RNN's with NBSVM's. The network reads order and context; the
n-grams remember rare, telling phrases the network smooths over. On short texts the two
make different mistakes, so the average beats either.

Features: which n-grams of 1 … n words (lower-cased, ``\\w+`` and punctuation) a text
contains, each scaled by its log-count ratio between the class and the rest,

    r = log( (α + p) / ‖α + p‖₁ ) - log( (α + q) / ‖α + q‖₁ ),   α = 1,

p and q counting the texts in and out of the class that contain it. Then an
L2-regularised logistic regression, min over w, b of C · Σ log-loss + ½ ‖w‖², fitted by
L-BFGS, with C picked on the validation split. Two classes take one regression (the
second class against the first); more take one per class against the rest, whose
probabilities are normalised to sum to one.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from rnnkit.data.tokenizer import words

#: L2 costs tried, the one with the best validation accuracy kept (ties: the smaller)
COSTS = (0.1, 0.3, 1.0, 3.0)


def grams(text: str, n: int) -> set[str]:
    """The distinct n-grams of 1 … ``n`` words of ``text``, words joined by a space."""
    w = words(text, lowercase=True)
    return {" ".join(w[i : i + k]) for k in range(1, n + 1) for i in range(len(w) - k + 1)}


class NgramModel:
    """Fitted by :meth:`fit`; :meth:`probabilities` gives (N, C) class probabilities."""

    def __init__(self, n: int, vocabulary: Sequence[str], ratios: Tensor, weight: Tensor,
                 bias: Tensor, cost: float, num_classes: int) -> None:
        self.n, self.cost, self.num_classes = n, cost, num_classes
        self.vocabulary = list(vocabulary)
        self.index = {g: i for i, g in enumerate(self.vocabulary)}
        self.ratios, self.weight, self.bias = ratios, weight, bias  # (F, K'), (F, K'), (K',)

    @classmethod
    def fit(cls, texts: Sequence[str], labels: Sequence[int], num_classes: int,
            valid_texts: Sequence[str], valid_labels: Sequence[int], *, n: int = 3,
            max_features: int = 1_000_000, costs: Sequence[float] = COSTS) -> "NgramModel":
        """The regression on ``texts`` whose cost scores best on the validation texts."""
        if n < 1:
            raise ValueError(f"n-grams need n >= 1, got {n}")
        sets = [grams(t, n) for t in texts]
        # texts containing each n-gram; sorted, so that ties keep one order in every process
        counts = Counter(g for s in sets for g in sorted(s))
        vocabulary = [g for g, _ in counts.most_common(max_features)]
        index = {g: i for i, g in enumerate(vocabulary)}
        x = _presence(sets, index)  # (N, F), sparse
        xt = x.t().to_sparse_csr()
        targets = _targets(labels, num_classes)  # (N, K')
        ratios = _log_count_ratios(xt, targets)
        model = cls(n, vocabulary, ratios, torch.zeros_like(ratios),
                    torch.zeros(ratios.shape[1], dtype=torch.float64), costs[0], num_classes)
        valid_x = _presence([grams(t, n) for t in valid_texts], index)
        valid_y = torch.tensor(list(valid_labels))
        best = None
        for cost in sorted(costs):  # each fit starts from the last one's weights
            model.weight, model.bias = _fit(x, xt, targets, ratios, cost, model.weight,
                                            model.bias)
            accuracy = (model._probabilities(valid_x).argmax(-1) == valid_y).double().mean().item()
            if best is None or accuracy > best[0]:
                best = (accuracy, cost, model.weight.clone(), model.bias.clone())
        _, model.cost, model.weight, model.bias = best
        return model

    def probabilities(self, texts: Sequence[str]) -> Tensor:
        """(N, C) class probabilities, float32."""
        return self._probabilities(_presence([grams(t, self.n) for t in texts], self.index))

    def _probabilities(self, x: Tensor) -> Tensor:
        p = torch.sigmoid(x @ (self.ratios * self.weight) + self.bias)  # (N, K')
        if self.num_classes == 2:
            p = torch.cat([1 - p, p], dim=1)
        else:
            p = p / p.sum(dim=1, keepdim=True).clamp_min(1e-300)
        return p.float()

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "vocabulary": "\n".join(self.vocabulary), "cost": self.cost,
                "num_classes": self.num_classes, "ratios": self.ratios.float(),
                "weight": self.weight.float(), "bias": self.bias.float()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "NgramModel":
        vocabulary = d["vocabulary"].split("\n") if d["vocabulary"] else []
        return cls(d["n"], vocabulary, d["ratios"].double(), d["weight"].double(),
                   d["bias"].double(), d["cost"], d["num_classes"])


def _presence(sets: list[set[str]], index: dict[str, int]) -> Tensor:
    """(N, F) sparse float64: 1 where text i contains n-gram j (unknown ones dropped)."""
    rows, cols = [0], []
    for s in sets:
        cols.extend(sorted(index[g] for g in s if g in index))
        rows.append(len(cols))
    with warnings.catch_warnings():  # torch calls its CSR tensors beta, once per process
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.tensor(rows), torch.tensor(cols, dtype=torch.long),
            torch.ones(len(cols), dtype=torch.float64), size=(len(sets), len(index)),
            check_invariants=True)


def _targets(labels: Sequence[int], num_classes: int) -> Tensor:
    """(N, K') 0/1: the second class for two classes, else one column per class."""
    y = torch.nn.functional.one_hot(torch.tensor(list(labels)), num_classes).double()
    return y[:, 1:] if num_classes == 2 else y


def _log_count_ratios(xt: Tensor, targets: Tensor, alpha: float = 1.0) -> Tensor:
    """(F, K'): r of each n-gram for each column's class against the rest; ``xt`` is the
    (F, N) presence matrix transposed."""
    p = alpha + xt @ targets  # (F, K'): texts of the class containing the n-gram
    q = alpha + xt @ (1 - targets)
    return torch.log(p / p.sum(0)) - torch.log(q / q.sum(0))


def _fit(x: Tensor, xt: Tensor, targets: Tensor, ratios: Tensor, cost: float,
         weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """min C · Σ log-loss + ½ ‖w‖² by L-BFGS, each column its own regression."""
    w, b = weight.clone().requires_grad_(), bias.clone().requires_grad_()
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=500, history_size=20,
                            tolerance_grad=1e-7, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        with torch.no_grad():
            z = x @ (ratios * w) + b  # (N, K')
            loss = cost * torch.nn.functional.binary_cross_entropy_with_logits(
                z, targets, reduction="sum") + 0.5 * (w * w).sum()
            dz = cost * (torch.sigmoid(z) - targets)  # ∂loss/∂z
            w.grad = ratios * (xt @ dz) + w
            b.grad = dz.sum(0)
        return loss

    opt.step(closure)
    return w.detach(), b.detach()
