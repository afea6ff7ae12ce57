"""Sampling from a next-token distribution: temperature, top-k, top-p, and an autoregressive loop.

Nothing here knows about a task: ``generate`` drives any ``step(tokens, state) -> (logits,
state)`` callable, typically a recurrent model fed one token per step. Order of operations in
``sample_next``: divide by the temperature, keep the top-k, then the top-p nucleus, renormalise
and draw with ``torch.multinomial`` (reproducible with a seeded ``torch.Generator``).

Ties are kept together: a token whose logit equals that of the last token kept is kept as well,
so the filtered set never depends on how a sort breaks ties.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable

import torch
from torch import Tensor

# step(tokens (B,), state) -> (logits (B, V), state)
Step = Callable[[Tensor, Any], tuple[Tensor, Any]]

# Slack for "the kept probabilities reach top_p": a float32 cumulative sum may land an ulp or
# two under top_p (softmax of log [0.4, 0.25, 0.2, ...] sums the first three to 0.84999996).
_TOP_P_SLACK = 1e-6


def _check(temperature: float, top_k: int | None, top_p: float | None) -> None:
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) \
            or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral)
                              or top_k < 1):
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, numbers.Real)
                              or not 0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")


def filter_logits(logits: Tensor, *, top_k: int | None = None,
                  top_p: float | None = None) -> Tensor:
    """``logits`` (..., V) with the tokens outside the top-k and the top-p nucleus set to -inf.

    top-k keeps the k largest logits (k >= V keeps all). top-p, nucleus sampling (Holtzman,
    Buys, Du, Forbes and Choi, "The Curious Case of Neural Text Degeneration", ICLR 2020), keeps
    the smallest set of most likely tokens whose probabilities sum to at least ``top_p``, and
    always at least the most likely token. Both given: top-k first, then top-p on what is left.
    Returns a new tensor of the same shape and dtype.
    """
    _check(1.0, top_k, top_p)
    out = logits.clone()
    V = logits.shape[-1]
    if top_k is not None and top_k < V:
        kth = out.topk(top_k, dim=-1).values[..., -1:]                 # (..., 1)
        out = out.masked_fill(out < kth, -math.inf)
    if top_p is not None and top_p < 1:
        sorted_logits = out.sort(dim=-1, descending=True).values       # (..., V)
        probs = sorted_logits.float().softmax(dim=-1)                  # (..., V)
        before = probs.cumsum(dim=-1) - probs                          # mass of the likelier ones
        keep = before < top_p - _TOP_P_SLACK                           # (..., V), a prefix
        keep[..., 0] = True
        n_keep = keep.sum(dim=-1, keepdim=True)                        # (..., 1)
        threshold = sorted_logits.gather(-1, n_keep - 1)               # (..., 1)
        out = out.masked_fill(out < threshold, -math.inf)
    return out


def sample_next(logits: Tensor, *, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None,
                generator: torch.Generator | None = None) -> Tensor:
    """One token id per row of ``logits`` (B, V) → (B,) int64.

    ``temperature`` 0 is greedy (argmax); otherwise the logits are divided by it, filtered by
    ``filter_logits`` and sampled with ``torch.multinomial`` using ``generator`` (which must be on
    the logits' device).
    """
    _check(temperature, top_k, top_p)
    if logits.dim() != 2:
        raise ValueError(f"logits must be (B, V), got shape {tuple(logits.shape)}")
    if temperature == 0:
        return logits.argmax(dim=-1)                                   # (B,)
    filtered = filter_logits(logits.float() / temperature, top_k=top_k, top_p=top_p)
    probs = filtered.softmax(dim=-1)                                   # (B, V)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # (B,)


def generate(step: Step, state: Any, first: Tensor, length: int, *, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None,
             generator: torch.Generator | None = None, stop: int | None = None) -> Tensor:
    """Feed ``first`` (B,) to ``step``, then each sampled token; return (B, length) token ids.

    ``step(tokens (B,), state) -> (logits (B, V), state)``. With ``stop``, a row that has emitted
    ``stop`` emits only ``stop`` from then on, and the loop ends early (the rest filled with
    ``stop``) once every row has. Runs under ``torch.no_grad()``.
    """
    _check(temperature, top_k, top_p)
    if isinstance(length, bool) or not isinstance(length, numbers.Integral) or length < 0:
        raise ValueError(f"length must be an integer >= 0, got {length!r}")
    if first.dim() != 1:
        raise ValueError(f"first must be (B,), got shape {tuple(first.shape)}")
    if stop is not None and (isinstance(stop, bool) or not isinstance(stop, numbers.Integral)):
        raise ValueError(f"stop must be an integer token id, got {stop!r}")
    B = first.shape[0]
    out = torch.full((B, length), -1 if stop is None else stop, dtype=torch.long,
                     device=first.device)                              # (B, length)
    done = torch.zeros(B, dtype=torch.bool, device=first.device)       # (B,)
    tokens = first
    with torch.no_grad():
        for t in range(length):
            logits, state = step(tokens, state)                        # (B, V)
            tokens = sample_next(logits, temperature=temperature, top_k=top_k, top_p=top_p,
                                 generator=generator).to(first.device)  # (B,)
            if stop is not None:
                tokens = tokens.masked_fill(done, stop)
                done |= tokens == stop
            out[:, t] = tokens
            if stop is not None and bool(done.all()):
                break
    return out
