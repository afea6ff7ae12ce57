r"""A softmax over a large vocabulary, factorised through clusters of rarer words.

The vocabulary is sorted by frequency and cut at ``cutoffs`` = (c₀, c₁, …): the c₀ most
frequent words form the head, the rest fall into tail clusters k = 1 … K of the words
[c_{k-1}, c_k) (the last ending at V). For an output vector h,

.. math::
    p(w \mid h) = \mathrm{softmax}\big([h E_{<c_0}^\top + b_{<c_0};\ h U^\top + a]\big)_w
        \quad (w < c_0)

    p(w \mid h) = \mathrm{softmax}(\ldots)_{c_0 + k - 1} \cdot
        \mathrm{softmax}(h E_{[c_{k-1}, c_k)}^\top + b_{[c_{k-1}, c_k)})_{w - c_{k-1}}
        \quad (w \text{ in cluster } k)

with E (V, D) and b (V,) the words' output vectors and biases (tied to the embedding
like a plain output layer's weight) and U (K, D), a (K,) one vector and bias per
cluster. This is Goodman's (2001) class-based softmax with classes by frequency, as
Mikolov et al. (2011) use it for RNN language models and Grave et al. (2017,
arXiv:1609.04309) make adaptive; unlike adaptive softmax the tail keeps the full
dimension D, so every word's vector stays tied to its embedding.

It is an exact distribution, not an estimate: the losses are -log p(w | h) of that
distribution. What it saves is work in training and evaluation. A position computes the
head's c₀ + K logits and only its own word's cluster, so with Zipf-distributed words
(most positions in the head) the output layer costs a fraction of the full V-way
product. Sampling asks for the whole distribution (:meth:`forward`), which costs the
same as a plain output layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class ClusteredSoftmax(nn.Module):
    """``weight`` (V, D) and ``bias`` (V,) as ``nn.Linear(D, V)`` has them (so the
    weight can be tied to an embedding); ``cluster_weight`` (K, D), ``cluster_bias`` (K,)."""

    def __init__(self, in_features: int, vocab_size: int, cutoffs: Sequence[int]) -> None:
        super().__init__()
        cutoffs = list(cutoffs)
        if not cutoffs or any(not isinstance(c, int) for c in cutoffs) or \
                cutoffs != sorted(set(cutoffs)) or not 0 < cutoffs[0] or \
                cutoffs[-1] >= vocab_size:
            raise ValueError(f"cutoffs must be increasing word counts between 0 and the "
                             f"vocabulary size {vocab_size}, got {cutoffs}")
        self.edges = [*cutoffs, vocab_size]  # cluster k holds words [edges[k-1], edges[k])
        self.head_size = cutoffs[0]
        linear = nn.Linear(in_features, vocab_size)
        self.weight, self.bias = linear.weight, linear.bias
        clusters = nn.Linear(in_features, len(cutoffs))
        self.cluster_weight, self.cluster_bias = clusters.weight, clusters.bias

    @property
    def num_clusters(self) -> int:
        return len(self.edges) - 1

    def _head(self, h: Tensor) -> Tensor:
        """(N, c₀ + K) logits of the head's words and of the tail clusters."""
        c0 = self.head_size
        weight = torch.cat([self.weight[:c0], self.cluster_weight])
        return F.linear(h, weight, torch.cat([self.bias[:c0], self.cluster_bias]))

    def _tail(self, h: Tensor, k: int) -> Tensor:
        """(N, size of cluster k) logits of cluster k's words (k = 1 … K)."""
        lo, hi = self.edges[k - 1], self.edges[k]
        return F.linear(h, self.weight[lo:hi], self.bias[lo:hi])

    def forward(self, h: Tensor) -> Tensor:
        """(..., D) → (..., V) log-probabilities of every word: logits whose softmax is
        the distribution (for sampling and beam search)."""
        flat = h.reshape(-1, h.shape[-1])
        head = torch.log_softmax(_wide(self._head(flat)), dim=-1)  # (N, c₀ + K)
        parts = [head[:, : self.head_size]]
        for k in range(1, self.num_clusters + 1):
            tail = torch.log_softmax(_wide(self._tail(flat, k)), dim=-1)
            parts.append(head[:, self.head_size + k - 1 : self.head_size + k] + tail)
        return torch.cat(parts, dim=-1).view(*h.shape[:-1], -1)

    def loss(self, h: Tensor, targets: Tensor, reduction: str = "mean") -> Tensor:
        """-log p(target | h) in nats for h (..., D) and word ids (...), at least float32;
        ``mean``, ``sum`` or ``none``. Each position computes only its own cluster."""
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be mean, sum or none, got {reduction!r}")
        if h.shape[:-1] != targets.shape:
            raise ValueError(f"h must be (..., D) and targets (...) with the same leading "
                             f"shape, got h {tuple(h.shape)} and targets "
                             f"{tuple(targets.shape)}")
        flat, t = h.reshape(-1, h.shape[-1]), targets.reshape(-1)
        c0 = self.head_size
        cluster = torch.bucketize(t, torch.tensor(self.edges[:-1], device=t.device),
                                  right=True)  # (N,): 0 for the head, k for cluster k
        head_target = torch.where(cluster == 0, t, c0 + cluster - 1)
        losses = F.cross_entropy(_wide(self._head(flat)), head_target, reduction="none")
        for k in range(1, self.num_clusters + 1):
            rows = (cluster == k).nonzero().squeeze(1)
            if rows.numel():
                tail = _wide(self._tail(flat[rows], k))
                losses = losses.index_add(0, rows, F.cross_entropy(
                    tail, t[rows] - self.edges[k - 1], reduction="none"))
        if reduction == "none":
            return losses.view(targets.shape)
        return losses.sum() if reduction == "sum" else losses.mean()

    def extra_repr(self) -> str:
        d = self.weight.shape[1]
        return f"in_features={d}, vocab_size={self.edges[-1]}, cutoffs={self.edges[:-1]}"


def _wide(logits: Tensor) -> Tensor:
    """bf16/float16 logits (autocast) widened to float32 for the softmax; others as
    they are."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))
