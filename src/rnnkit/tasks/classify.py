"""Text classification (many to one): which class a text belongs to.

Word dropout (training only) → embedding → stacked, optionally bidirectional
RNN/LSTM/GRU run with each text's own ``lengths`` (every engine option from the config)
→ pooling over time (last state, mean, max, both, or attention;
``rnnkit.layers.pooling``) → dropout → linear to the classes. Trained with the
cross-entropy on mini-batches of whole texts, each batch drawn from texts of similar
length so that little of it is padding.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.config import in_unit_interval, non_negative, option, positive
from rnnkit.layers.dropout import Dropout
from rnnkit.layers.pooling import Pooling
from rnnkit.tasks.classify_report import scores
from rnnkit.tasks.lm import CELLS
from rnnkit.training.config import TrainConfig


@dataclass
class DataConfig:
    train: str = option("mr", "the examples: a .csv, .tsv or .jsonl file, a folder with one "
                              "subfolder per class, or 'mr' (movie-review sentiment), 'spam' "
                              "(SpamAssassin) or 'bbc' (BBC News topics)")
    valid: Optional[str] = option(None, "validation examples (none: valid_fraction of train)")
    test: Optional[str] = option(None, "test examples (none: test_fraction of train)")
    text_column: str = option("text", "the column (CSV/TSV header, JSON key) of the text")
    label_column: str = option("label", "the column of the label (any string)")
    valid_fraction: float = option(0.1, "held out of train for validation, class by class")
    test_fraction: float = option(0.1, "held out of train for test, class by class")
    split_seed: int = option(0, "random seed of the train/valid/test split")
    fold: int = option(0, "cross-validation: which test_fraction slice of each class tests "
                          "(0 … 1/test_fraction - 1); validation is the slice after it")

    def __post_init__(self) -> None:
        in_unit_interval(self, "valid_fraction", "test_fraction")


@dataclass
class TokenizerConfig:
    kind: Literal["word", "char", "bpe"] = option(
        "word", "word (\\w+ and punctuation), char (any script) or bpe (subwords learnt "
                "from the training texts with the tokenizers library)")
    lowercase: bool = option(True, "lower-case texts first")
    min_freq: int = option(1, "rarer training tokens become <unk> (bpe: rarer pairs never merge)")
    max_size: Optional[int] = option(None, "the largest vocabulary, <unk> included (none: no "
                                           "limit; bpe: 8000)")
    max_length: int = option(400, "tokens per text; longer texts are cut (with a warning)")

    def __post_init__(self) -> None:
        positive(self, "min_freq", "max_size", "max_length")


@dataclass
class ModelConfig:
    cell: Literal["lstm", "gru", "rnn_tanh", "rnn_relu"] = option("lstm", "recurrent cell")
    embedding_size: int = option(128, "size of the token embedding")
    embedding_std: float = option(1.0, "initial embedding weights ~ N(0, std²) (torch's "
                                       "default: 1); smaller, rare words start near zero")
    hidden_size: int = option(128, "hidden units per layer and direction")
    num_layers: int = option(1, "stacked recurrent layers")
    bidirectional: bool = option(True, "read each text both ways")
    pooling: Literal["last", "mean", "max", "meanmax", "attention"] = option(
        "max", "one vector per text: last state, mean, max, [mean; max] or attention over "
               "time")
    attention_size: int = option(64, "attention pooling: size of the scoring layer")
    dropout: float = option(0.3, "dropout on the embedding, between layers and on the pooled "
                                 "vector")
    word_dropout: float = option(0.0, "training: each token becomes <unk> with this "
                                      "probability (Iyyer et al. 2015; Dai & Le 2015)")
    label_smoothing: float = option(0.0, "training loss: cross-entropy against (1 - ε) × "
                                         "the class + ε spread evenly (Szegedy et al. 2016)")
    proj_size: int = option(0, "LSTM only: project h to this size (0: no projection)")
    layer_norm: bool = option(False, "layer norm inside the cell (Ba et al. 2016)")
    recurrent_dropout: float = option(0.0, "dropout on h in the recurrence, one mask per "
                                           "sequence (Gal & Ghahramani 2016)")
    weight_drop: float = option(0.0, "DropConnect on W_hh (Merity et al. 2018)")
    zoneout: float = option(0.0, "zoneout probability (Krueger et al. 2017)")
    forget_bias: Optional[float] = option(None, "LSTM: initial forget-gate bias")
    backend: Literal["auto", "native", "fused", "reference"] = option("auto", "engine backend")
    ngrams: int = option(0, "average the network's probabilities with a logistic regression "
                            "over Naive-Bayes-weighted n-grams of 1 … ngrams words (NBSVM, "
                            "Wang & Manning 2012), fitted on the training split; 0: off")
    ngram_weight: float = option(0.5, "the n-gram regression's share of the average")

    def __post_init__(self) -> None:
        positive(self, "embedding_size", "embedding_std", "hidden_size", "num_layers",
                 "attention_size")
        non_negative(self, "proj_size", "ngrams")
        in_unit_interval(self, "dropout", "word_dropout", "label_smoothing",
                         "recurrent_dropout", "weight_drop", "zoneout", "ngram_weight")


@dataclass
class ClassifyConfig:
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "the examples"})
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig,
                                       metadata={"help": "tokenisation"})
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "the model"})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "training"})


class TextClassifier(nn.Module):
    def __init__(self, vocab_size: int, num_classes: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.word_dropout = cfg.word_dropout
        self.embed = nn.Embedding(vocab_size, cfg.embedding_size)
        if cfg.embedding_std != 1.0:  # (1: as torch drew it, the same weights as before)
            nn.init.normal_(self.embed.weight, std=cfg.embedding_std)
        self.drop = Dropout(cfg.dropout)
        extra = {"nonlinearity": cfg.cell[4:]} if cfg.cell.startswith("rnn") else {}
        if cfg.cell == "lstm":
            extra.update(proj_size=cfg.proj_size, forget_bias=cfg.forget_bias)
        self.rnn = CELLS[cfg.cell](
            cfg.embedding_size, cfg.hidden_size, cfg.num_layers, batch_first=True,
            bidirectional=cfg.bidirectional, layer_norm=cfg.layer_norm,
            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,  # between layers only
            recurrent_dropout=cfg.recurrent_dropout, weight_drop=cfg.weight_drop,
            zoneout=cfg.zoneout, backend=cfg.backend, **extra)
        directions = 2 if cfg.bidirectional else 1
        size = (cfg.proj_size or cfg.hidden_size) * directions
        self.pool = Pooling(cfg.pooling, size, directions=directions,
                            attention_size=cfg.attention_size)
        self.head = nn.Linear(self.pool.out_size, num_classes)

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """(B, T) ids padded past each text's length → logits (B, C)."""
        if self.training and self.word_dropout > 0:
            # whole words go missing, not embedding units: the model cannot lean on any
            # one word (<unk> is id 0, as is the padding, which lengths keep out anyway)
            dropped = torch.rand(tokens.shape, device=tokens.device) < self.word_dropout
            tokens = tokens.masked_fill(dropped, 0)
        x = self.drop(self.embed(tokens))  # (B, T, E)
        y, _ = self.rnn(x, lengths=lengths)  # (B, T, D), zeros past each end
        return self.head(self.drop(self.pool(y, lengths)))  # (B, C)


def build_model(vocab_size: int, num_classes: int, cfg: ModelConfig, seed: int) -> TextClassifier:
    torch.manual_seed(seed)  # the same initial weights in every process and every run
    return TextClassifier(vocab_size, num_classes, cfg)


class Batch(NamedTuple):
    inputs: Tensor  # (B, T) token ids, 0 past each length
    lengths: Tensor  # (B,)
    targets: Tensor  # (B,) class ids
    reset: bool = True  # no state carries from one batch of texts to the next


def pad(ids: list[list[int]]) -> tuple[Tensor, Tensor]:
    """Token-id lists → (B, T) padded with 0, and lengths (B,) (an empty text: one <unk>)."""
    lengths = torch.tensor([max(1, len(x)) for x in ids], dtype=torch.long)
    tokens = torch.zeros(len(ids), int(lengths.max()), dtype=torch.long)
    for row, x in enumerate(ids):
        tokens[row, : len(x)] = torch.tensor(x, dtype=torch.long)
    return tokens, lengths


def length_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """One epoch's batches of indices: shuffled, then sorted by length within windows of
    50 batches and cut, then the batches shuffled: random, yet little padding."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 50
    batches = []
    for i in range(0, len(order), window):
        chunk = sorted(order[i : i + window], key=lengths.__getitem__)
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


class ClassifyTask:
    """The task the trainer runs: batches of encoded texts and their class ids."""

    def __init__(self, cfg: ClassifyConfig, ids: dict[str, list[list[int]]],
                 labels: dict[str, list[int]], num_classes: int, device: torch.device) -> None:
        self.cfg, self.ids, self.labels, self.device = cfg, ids, labels, device
        self.num_classes = num_classes

    def batches(self, start: int, columns: slice):
        """Training batches from step ``start`` on; epoch e is shuffled by seed + e, so a
        resumed run draws exactly the batches it would have drawn."""
        size = self.cfg.train.batch_size
        lengths = [len(x) for x in self.ids["train"]]
        per_epoch = math.ceil(len(lengths) / size)
        epoch, skip = divmod(start, per_epoch)
        while True:
            rng = random.Random(self.cfg.train.seed * 1_000_003 + epoch)
            for index in length_batches(lengths, size, rng)[skip:]:
                yield self._batch("train", index[columns])
            epoch, skip = epoch + 1, 0

    def _batch(self, split: str, index: list[int]) -> Batch:
        tokens, lengths = pad([self.ids[split][i] for i in index])
        targets = torch.tensor([self.labels[split][i] for i in index], dtype=torch.long)
        return Batch(tokens.to(self.device), lengths, targets.to(self.device))

    def loss(self, model: nn.Module, batch: Batch, state):
        logits = model(batch.inputs, batch.lengths)
        smoothing = self.cfg.model.label_smoothing  # training only: evaluate keeps plain nats
        return F.cross_entropy(logits.float(), batch.targets, label_smoothing=smoothing), None

    def predict(self, model: nn.Module, split: str, limit: Optional[int] = None):
        """(probabilities (N, C), mean loss) over the first ``limit`` texts of ``split``."""
        n = len(self.ids[split]) if limit is None else min(limit, len(self.ids[split]))
        order = sorted(range(n), key=lambda i: len(self.ids[split][i]))
        probs = torch.zeros(n, self.num_classes)
        total = 0.0
        for i in range(0, n, self.cfg.train.batch_size):
            index = order[i : i + self.cfg.train.batch_size]
            batch = self._batch(split, index)
            logits = model(batch.inputs, batch.lengths).float()
            total += float(F.cross_entropy(logits, batch.targets, reduction="sum"))
            probs[index] = torch.softmax(logits, dim=-1).cpu()
        return probs, total / max(1, n)

    def evaluate(self, model: nn.Module, split: str, max_examples: Optional[int] = None):
        """Loss (nats per text), accuracy and macro-F1 of ``split``."""
        probs, loss = self.predict(model, split, max_examples)
        truth = self.labels[split][: probs.shape[0]]
        s = scores(truth, probs.argmax(-1).tolist(), self.num_classes)
        return {"loss": loss, "accuracy": s["accuracy"], "macro_f1": s["macro_f1"]}

    def units(self, loss: float) -> dict[str, float]:
        return {}
