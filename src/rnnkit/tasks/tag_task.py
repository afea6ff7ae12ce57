"""Tagged sentences as the trainer sees them: vocabularies, tensors, batches, scores.

Sentences are batched whole (no state is carried from one batch to the next), in an
order fixed by the seed and the epoch, so a resumed run sees the batches it would have
seen. Within a pool of 50 batches, sentences of similar length go together: less padding.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from rnnkit.data.vocab import Vocab
from rnnkit.tasks import tag_metrics
from rnnkit.tasks.tag import Batch, TagConfig, Tagger

log = logging.getLogger(__name__)
POOL = 50  # batches sorted by length together


@dataclass
class Vocabs:
    """What a run needs to turn words into ids and ids into tags."""

    words: Vocab
    chars: Vocab
    tags: list[str]
    lower: bool = False

    @classmethod
    def build(cls, train: Sequence[Sequence[tuple[str, str]]], cfg: TagConfig,
              extra_tags: Sequence[str] = ()) -> "Vocabs":
        """From the training sentences; tags seen only in ``extra_tags`` (the held-out
        splits) are added after the training ones, so that every gold tag has an id."""
        lower = cfg.data.lower
        words = Vocab.build((w.lower() if lower else w for s in train for w, _ in s),
                            min_count=cfg.data.min_count)
        chars = Vocab.build(c for s in train for w, _ in s for c in w)
        tags = list(dict.fromkeys([*(t for s in train for _, t in s), *extra_tags]))
        return cls(words, chars, tags, lower)

    def to_dict(self) -> dict:
        return {"words": self.words.tokens, "chars": self.chars.tokens, "tags": self.tags,
                "lower": self.lower}

    @classmethod
    def from_dict(cls, d: dict) -> "Vocabs":
        return cls(Vocab(d["words"]), Vocab(d["chars"]), list(d["tags"]), bool(d["lower"]))

    def encode(self, sentences: Sequence[Sequence[str]],
               tags: Optional[Sequence[Sequence[str]]] = None, *,
               max_word_length: int) -> "Encoded":
        """Sentences of words (and their tags, if known) as tensors."""
        forms: dict[str, int] = {}
        word_ids, form_ids, tag_ids = [], [], []
        tag_index = {t: i for i, t in enumerate(self.tags)}
        if tags is not None:
            unknown = sorted({t for s in tags for t in s} - tag_index.keys())
            if unknown:
                raise ValueError(f"tags the model was not trained with: "
                                 f"{', '.join(unknown[:10])}")
        for i, words in enumerate(sentences):
            keys = [w.lower() for w in words] if self.lower else words
            word_ids.append(self.words.encode(keys))
            form_ids.append(torch.tensor([forms.setdefault(w, len(forms)) for w in words],
                                         dtype=torch.long))
            tag_ids.append(torch.tensor([tag_index[t] for t in tags[i]], dtype=torch.long)
                           if tags is not None else torch.zeros(len(words), dtype=torch.long))
        spelled = [self.chars.encode(w[:max_word_length]) for w in forms]
        return Encoded(word_ids, form_ids, tag_ids, spelled)


class Encoded:
    """One split: per sentence its word ids, form ids (rows of this split's own table of
    distinct words, spelled in character ids) and tag ids."""

    def __init__(self, words: list[Tensor], forms: list[Tensor], tags: list[Tensor],
                 spelled: list[Tensor]) -> None:
        self.words, self.forms, self.tags = words, forms, tags
        self.char_lengths = torch.tensor([len(s) for s in spelled], dtype=torch.long)
        self.chars = torch.nn.utils.rnn.pad_sequence(spelled, batch_first=True) \
            if spelled else torch.zeros(0, 1, dtype=torch.long)  # (F, L)
        self.lengths = torch.tensor([len(w) for w in words], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.words)

    def tokens(self) -> int:
        return int(self.lengths.sum())

    def batch(self, indices: Sequence[int]) -> Batch:
        pad = torch.nn.utils.rnn.pad_sequence
        lengths = self.lengths[list(indices)]
        forms = pad([self.forms[i] for i in indices], batch_first=True)  # (B, T)
        mask = torch.arange(forms.shape[1]) < lengths[:, None]
        used, inverse = torch.unique(forms[mask], return_inverse=True)
        local = torch.zeros_like(forms)
        local[mask] = inverse  # each token's row among the batch's distinct words
        char_lengths = self.char_lengths[used]
        chars = self.chars[used][:, : int(char_lengths.max())]  # (W, L)
        return Batch(pad([self.words[i] for i in indices], batch_first=True), local, chars,
                     char_lengths, lengths, pad([self.tags[i] for i in indices],
                                                batch_first=True))


class TaggingTask:
    """The task the trainer runs (see ``rnnkit.training.trainer``)."""

    def __init__(self, cfg: TagConfig, vocabs: Vocabs, splits: dict[str, Encoded],
                 device: torch.device) -> None:
        self.cfg, self.vocabs, self.splits, self.device = cfg, vocabs, splits, device

    def batches(self, start: int, columns: slice) -> Iterator[Batch]:
        """Training batches from step ``start`` on, for ever, epoch after epoch."""
        train, size = self.splits["train"], self.cfg.train.batch_size
        if len(train) == 0:
            raise ValueError("the training split holds no sentence")
        per_epoch = math.ceil(len(train) / size)
        epoch, skip = divmod(start, per_epoch)
        while True:
            for indices in self.epoch_order(epoch)[skip:]:
                yield train.batch(indices[columns] or indices).to(self.device)
            epoch, skip = epoch + 1, 0

    def epoch_order(self, epoch: int) -> list[list[int]]:
        """The batches of one epoch: shuffled by (seed, epoch), sorted by length within
        pools of POOL batches, the batches shuffled again."""
        train, size = self.splits["train"], self.cfg.train.batch_size
        g = torch.Generator().manual_seed(self.cfg.train.seed * 100_003 + epoch)
        order = torch.randperm(len(train), generator=g).tolist()
        batches = []
        for p in range(0, len(order), size * POOL):
            pool = sorted(order[p : p + size * POOL], key=lambda i: int(train.lengths[i]))
            batches += [pool[i : i + size] for i in range(0, len(pool), size)]
        return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]

    def loss(self, model: Tagger, batch: Batch, state):
        return model.loss(batch), None

    def predict(self, model: Tagger, split: str, max_tokens: Optional[int] = None):
        """(predicted tag ids per sentence, summed loss, tokens) over the split, or its
        first sentences holding ``max_tokens`` tokens."""
        data = self.splits[split]
        n = len(data)
        if max_tokens is not None:
            n = max(1, int((data.lengths.cumsum(0) <= max_tokens).sum()))
        by_length = sorted(range(n), key=lambda i: int(data.lengths[i]))
        size = max(64, self.cfg.train.batch_size)
        predicted: list[Optional[list[int]]] = [None] * n
        total = 0.0
        for k in range(0, n, size):
            indices = by_length[k : k + size]
            tags, loss = model.predict(data.batch(indices).to(self.device))
            total += float(loss)
            for row, i in enumerate(indices):
                predicted[i] = tags[row, : int(data.lengths[i])].tolist()
        return predicted, total, int(data.lengths[:n].sum())

    def evaluate(self, model: Tagger, split: str, max_tokens: Optional[int] = None):
        """Loss per token, token accuracy and the accuracy on words unseen in training."""
        predicted, total, count = self.predict(model, split, max_tokens)
        data = self.splits[split]
        gold = [t.tolist() for t in data.tags[: len(predicted)]]
        unknown = [(w == 0).tolist() for w in data.words[: len(predicted)]]
        return {"loss": total / count, "accuracy": tag_metrics.accuracy(gold, predicted),
                "unknown_accuracy": tag_metrics.accuracy(gold, predicted, unknown)}

    def units(self, loss: float) -> dict[str, float]:
        return {}

