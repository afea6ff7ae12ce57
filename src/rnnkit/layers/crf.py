"""A linear-chain conditional random field over per-step tag scores (Lafferty et al.
2001), as the output layer of a tagger (Huang, Xu & Yu 2015, arXiv:1508.01991; Lample
et al. 2016, arXiv:1603.01360).

For emissions ``e`` (B, T, K) — the network's score of tag k at step t — and a tag
sequence ``y_1 … y_n`` of a sequence of length n, the score is

    s(y) = start[y_1] + Σ_{t=1..n} e[t, y_t] + Σ_{t=2..n} A[y_{t-1}, y_t] + end[y_n]

and p(y | x) = exp s(y) / Z with Z = Σ_y' exp s(y') over all K^n sequences. The forward
algorithm computes log Z in O(n K²):

    α_1[k] = start[k] + e[1, k]
    α_t[k] = logsumexp_j(α_{t-1}[j] + A[j, k]) + e[t, k]
    log Z  = logsumexp_k(α_n[k] + end[k])

and Viterbi decoding is the same recursion with max for logsumexp, keeping the argmax
(the back-pointer) of every step. Padded batches take ``lengths``: past a sequence's end
α (and the Viterbi score) is carried unchanged, so each sequence ends at its own length.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["CRF"]


class CRF(nn.Module):
    """Transition scores ``transitions[i, j]`` (tag i then tag j), ``start[k]`` and
    ``end[k]``, all initialised to zero: an untrained CRF adds nothing to the emissions,
    and decodes as the per-step argmax does."""

    def __init__(self, num_tags: int) -> None:
        super().__init__()
        if not isinstance(num_tags, int) or num_tags < 1:
            raise ValueError(f"num_tags must be a positive int, got {num_tags!r}")
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))  # (K, K)
        self.start = nn.Parameter(torch.zeros(num_tags))  # (K,)
        self.end = nn.Parameter(torch.zeros(num_tags))  # (K,)

    def forward(self, emissions: Tensor, tags: Tensor, lengths: Tensor | None = None,
                reduction: str = "mean") -> Tensor:
        """The negative log-likelihood −log p(tags | x): per sequence (``"none"``), summed
        (``"sum"``) or averaged over the tokens of the batch (``"mean"``)."""
        nll = -self.log_likelihood(emissions, tags, lengths)  # (B,)
        if reduction == "none":
            return nll
        if reduction == "sum":
            return nll.sum()
        if reduction == "mean":
            lengths = self._lengths(emissions, lengths)
            return nll.sum() / lengths.sum()
        raise ValueError(f"reduction must be 'none', 'sum' or 'mean', got {reduction!r}")

    def log_likelihood(self, emissions: Tensor, tags: Tensor,
                       lengths: Tensor | None = None) -> Tensor:
        """log p(tags | x) = s(tags) − log Z, one value per sequence (B,)."""
        return self.score(emissions, tags, lengths) - self.log_partition(emissions, lengths)

    def score(self, emissions: Tensor, tags: Tensor, lengths: Tensor | None = None) -> Tensor:
        """s(tags) (B,): the unnormalised log score of the given tag sequences."""
        lengths = self._lengths(emissions, lengths)
        if tags.shape != emissions.shape[:2]:
            raise ValueError(f"expected tags of shape {tuple(emissions.shape[:2])}, "
                             f"got {tuple(tags.shape)}")
        B, T, _ = emissions.shape
        mask = _mask(lengths, T).to(emissions.dtype)  # (B, T)
        tags = tags.clamp(0, self.num_tags - 1)  # padding may hold anything
        emitted = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # (B, T)
        moved = self.transitions[tags[:, :-1], tags[:, 1:]]  # (B, T-1)
        last = tags.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)  # (B,)
        return (self.start[tags[:, 0]] + (emitted * mask).sum(1)
                + (moved * mask[:, 1:]).sum(1) + self.end[last])

    def log_partition(self, emissions: Tensor, lengths: Tensor | None = None) -> Tensor:
        """log Z (B,) by the forward algorithm."""
        lengths = self._lengths(emissions, lengths)
        mask = _mask(lengths, emissions.shape[1])  # (B, T)
        alpha = self.start + emissions[:, 0]  # (B, K)
        for t in range(1, emissions.shape[1]):
            # (B, K, 1) + (K, K) → (B, K, K), summed over the previous tag j
            step = torch.logsumexp(alpha.unsqueeze(2) + self.transitions, dim=1)
            alpha = torch.where(mask[:, t, None], step + emissions[:, t], alpha)
        return torch.logsumexp(alpha + self.end, dim=1)

    @torch.no_grad()
    def decode(self, emissions: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Viterbi: the best tag sequences (B, T) (0 past each length) and their scores (B,)."""
        lengths = self._lengths(emissions, lengths)
        B, T, K = emissions.shape
        mask = _mask(lengths, T)  # (B, T)
        score = self.start + emissions[:, 0]  # (B, K)
        stay = torch.arange(K, device=emissions.device).expand(B, K)
        pointers = []
        for t in range(1, T):
            best, prev = (score.unsqueeze(2) + self.transitions).max(dim=1)  # (B, K) each
            # past the end the score is carried and every tag points to itself, so the
            # backtrace walks through the padding unchanged to the sequence's last step
            score = torch.where(mask[:, t, None], best + emissions[:, t], score)
            pointers.append(torch.where(mask[:, t, None], prev, stay))
        score = score + self.end
        best_score, tag = score.max(dim=1)  # (B,)
        path = [tag]
        for prev in reversed(pointers):
            tag = prev.gather(1, tag.unsqueeze(1)).squeeze(1)
            path.append(tag)
        tags = torch.stack(path[::-1], dim=1)  # (B, T)
        return tags.masked_fill(~mask, 0), best_score

    def _lengths(self, emissions: Tensor, lengths: Tensor | None) -> Tensor:
        if not isinstance(emissions, Tensor) or emissions.dim() != 3:
            shape = tuple(emissions.shape) if isinstance(emissions, Tensor) else type(emissions)
            raise ValueError(f"expected emissions of shape (B, T, {self.num_tags}), got {shape}")
        B, T, K = emissions.shape
        if K != self.num_tags or T == 0:
            raise ValueError(f"expected emissions of shape (B, T>0, {self.num_tags}), "
                             f"got {tuple(emissions.shape)}")
        if lengths is None:
            return torch.full((B,), T, dtype=torch.long, device=emissions.device)
        lengths = torch.as_tensor(lengths, device=emissions.device)
        if lengths.shape != (B,) or lengths.dtype.is_floating_point:
            raise ValueError(f"expected integer lengths of shape ({B},), got "
                             f"{lengths.dtype} {tuple(lengths.shape)}")
        if B and (int(lengths.min()) < 1 or int(lengths.max()) > T):
            raise ValueError(f"lengths must be in [1, {T}], got {lengths.tolist()}")
        return lengths.long()

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}"


def _mask(lengths: Tensor, T: int) -> Tensor:
    """(B, T) bool: True at the valid steps of each sequence."""
    return torch.arange(T, device=lengths.device) < lengths.unsqueeze(1)
