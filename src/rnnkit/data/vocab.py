"""A vocabulary: tokens (characters or words) to integer ids and back.

Id 0 is always the unknown symbol, so a token never seen in training (a new character,
an emoji, a Hangul syllable the corpus lacks) maps to it instead of failing.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

import torch
from torch import Tensor

UNK = "<unk>"


class Vocab:
    """Tokens in id order; ``tokens[0]`` is the unknown symbol."""

    def __init__(self, tokens: Sequence[str]) -> None:
        if not tokens or tokens[0] != UNK:
            raise ValueError(f"a vocabulary starts with {UNK!r}, got {list(tokens[:1])}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("a vocabulary lists each token once")
        self.tokens = list(tokens)
        self.index = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def build(cls, tokens: Iterable[str], *, min_count: int = 1) -> "Vocab":
        """From a training corpus: tokens seen at least ``min_count`` times, most
        frequent first (ties in first-seen order)."""
        counts = Counter(tokens)
        kept = [t for t, n in counts.most_common() if n >= min_count and t != UNK]
        return cls([UNK, *kept])

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: Iterable[str]) -> Tensor:
        """Token ids (N,) int64; unknown tokens become 0."""
        get = self.index.get
        return torch.tensor([get(t, 0) for t in tokens], dtype=torch.long)

    def decode(self, ids: Iterable[int], sep: str = "") -> str:
        """The text of ``ids``, tokens joined by ``sep`` ("" for characters)."""
        return sep.join(self.tokens[int(i)] for i in ids)
