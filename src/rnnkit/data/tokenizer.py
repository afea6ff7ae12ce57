"""Tokenisers for classification: words, characters, or BPE subwords, learnt from the
training texts and saved with the model as plain data.

- ``word``: runs of letters/digits (``\\w+``, so Hangul, Cyrillic, accents) and single
  punctuation marks; a vocabulary of the words seen ``min_freq`` times or more, at most
  ``max_size`` of them, the rest ``<unk>``.
- ``char``: Unicode code points, any script; the same vocabulary rules.
- ``bpe``: byte-pair encoding (Sennrich et al. 2016, arXiv:1508.07909) trained on the
  training texts with the ``tokenizers`` library, ``max_size`` merges' worth of vocabulary.

Id 0 is always ``<unk>``; a padded batch pads with it too (the recurrent layer's
``lengths`` keep padding out of every result).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from typing import Any, Protocol

from rnnkit.data.vocab import UNK, Vocab

KINDS = ("word", "char", "bpe")
_WORD = re.compile(r"\w+|[^\w\s]")


class Tokenizer(Protocol):
    kind: str

    def encode(self, text: str) -> list[int]: ...
    def __len__(self) -> int: ...
    def to_dict(self) -> dict[str, Any]: ...


def _normal(text: str, lowercase: bool) -> str:
    text = unicodedata.normalize("NFC", text)
    return text.lower() if lowercase else text


def words(text: str, lowercase: bool = True) -> list[str]:
    """The ``word`` tokeniser's split: runs of ``\\w`` and single punctuation marks."""
    return _WORD.findall(_normal(text, lowercase))


class VocabTokenizer:
    """Words or characters through a :class:`~rnnkit.data.vocab.Vocab`."""

    def __init__(self, kind: str, vocab: Vocab, lowercase: bool) -> None:
        if kind not in ("word", "char"):
            raise ValueError(f"kind must be 'word' or 'char', got {kind!r}")
        self.kind, self.vocab, self.lowercase = kind, vocab, lowercase

    def split(self, text: str) -> list[str]:
        if self.kind == "word":
            return words(text, self.lowercase)
        # white space runs count as one space
        return list(" ".join(_normal(text, self.lowercase).split()))

    @classmethod
    def fit(cls, kind: str, texts: Iterable[str], *, lowercase: bool = True,
            min_freq: int = 1, max_size: int | None = None) -> "VocabTokenizer":
        """The ``max_size`` most frequent tokens seen at least ``min_freq`` times (ties
        in first-seen order), ``<unk>`` included in the size."""
        probe = cls(kind, Vocab([UNK]), lowercase)
        counts = Counter(t for text in texts for t in probe.split(text))
        kept = [t for t, n in counts.most_common() if n >= min_freq and t != UNK]
        if max_size is not None:
            kept = kept[: max(0, max_size - 1)]
        return cls(kind, Vocab([UNK, *kept]), lowercase)

    def encode(self, text: str) -> list[int]:
        get = self.vocab.index.get
        return [get(t, 0) for t in self.split(text)]

    def __len__(self) -> int:
        return len(self.vocab)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "lowercase": self.lowercase, "tokens": self.vocab.tokens}


class BPETokenizer:
    """Subwords from a trained ``tokenizers.Tokenizer``; characters it never saw are
    ``<unk>``."""

    kind = "bpe"

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer

    @classmethod
    def fit(cls, texts: Iterable[str], *, lowercase: bool = True, min_freq: int = 1,
            vocab_size: int = 8000) -> "BPETokenizer":
        tk = _tokenizers()
        tokenizer = tk.Tokenizer(tk.models.BPE(unk_token=UNK))
        steps = [tk.normalizers.NFC()] + ([tk.normalizers.Lowercase()] if lowercase else [])
        tokenizer.normalizer = tk.normalizers.Sequence(steps)
        tokenizer.pre_tokenizer = tk.pre_tokenizers.Whitespace()  # \w+ | [^\w\s]+
        trainer = tk.trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_freq,
                                         special_tokens=[UNK], show_progress=False)
        tokenizer.train_from_iterator(list(texts), trainer)
        return cls(tokenizer)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids

    def tokens(self, text: str) -> list[str]:
        return self.tokenizer.encode(text).tokens

    def __len__(self) -> int:
        return self.tokenizer.get_vocab_size()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "bpe", "json": self.tokenizer.to_str()}


def _tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise ImportError("BPE needs the tokenizers library: pip install 'rnnkit[text]' "
                          "(or pip install tokenizers)") from None
    return tokenizers


def fit_tokenizer(kind: str, texts: Iterable[str], *, lowercase: bool = True,
                  min_freq: int = 1, max_size: int | None = None) -> Tokenizer:
    """A tokeniser of ``kind`` learnt from ``texts``; for ``bpe``, ``max_size`` is the
    vocabulary size to reach (8000 when None)."""
    if kind == "bpe":
        return BPETokenizer.fit(texts, lowercase=lowercase, min_freq=min_freq,
                                vocab_size=max_size or 8000)
    if kind in ("word", "char"):
        return VocabTokenizer.fit(kind, texts, lowercase=lowercase, min_freq=min_freq,
                                  max_size=max_size)
    raise ValueError(f"tokenizer kind must be one of {', '.join(KINDS)}, got {kind!r}")


def tokenizer_from_dict(data: dict[str, Any]) -> Tokenizer:
    """The tokeniser :meth:`to_dict` saved; ``ValueError`` when ``data`` is not one."""
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind == "bpe" and isinstance(data.get("json"), str):
        try:
            return BPETokenizer(_tokenizers().Tokenizer.from_str(data["json"]))
        except Exception as e:  # the library raises its own exception type
            raise ValueError(f"the saved BPE tokenizer cannot be read ({e})") from None
    if kind in ("word", "char") and isinstance(data.get("tokens"), list):
        return VocabTokenizer(kind, Vocab(data["tokens"]), bool(data.get("lowercase")))
    raise ValueError(f"not a saved tokenizer: kind {kind!r}")
