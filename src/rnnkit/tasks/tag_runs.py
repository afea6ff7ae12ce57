"""Tagging runs: train, evaluate and predict, as the command line calls them.

A run lives in one directory, as a language model's does (``rnnkit.tasks.lm_runs``):
``config.toml``, ``checkpoint.pt`` (the latest step), ``best.pt`` (the best validation
loss), ``metrics.jsonl`` and ``loss.png``. The checkpoint holds the vocabularies of
words, characters and tags, so a run tags new text on its own.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from rnnkit import config as configs
from rnnkit._io import write_text
from rnnkit.data.conll import Sentence, detect_format, read_tagged, split_sentences
from rnnkit.tasks import tag_metrics
from rnnkit.tasks._runs import load_weights, open_run, read_run, run_checkpoint
from rnnkit.tasks.tag import TagConfig, Tagger, build_model, tokenize
from rnnkit.tasks.tag_task import TaggingTask, Vocabs
from rnnkit.training import Trainer
from rnnkit.training.trainer import pick_device

log = logging.getLogger(__name__)
TASKS = ("tag",)
TREEBANKS = ("porttinari", "petrogold")


def read_file(path: str, cfg: TagConfig) -> list[Sentence]:
    """A tagged file of the user's, in the configured format and columns."""
    fmt = detect_format(path) if cfg.data.format == "auto" else cfg.data.format
    options = ({"word_column": cfg.data.word_column, "tag_column": cfg.data.tag_column}
               if fmt == "conll" else {})
    return read_tagged(path, fmt, **options)


def load_splits(cfg: TagConfig) -> dict[str, list[Sentence]]:
    """The corpus's train/valid/test sentences, each cut to ``data.max_length`` words."""
    d = cfg.data
    if d.corpus == "brown":
        from rnnkit.data.brown_pos import brown_pos_splits

        splits = brown_pos_splits(seed=d.split_seed, valid_fraction=d.valid_fraction,
                                  test_fraction=d.test_fraction)
    elif d.corpus in TREEBANKS:
        from rnnkit.data.portuguese_ud import portuguese_ud_splits

        splits = portuguese_ud_splits(d.corpus, seed=d.split_seed,
                                      valid_fraction=d.valid_fraction,
                                      test_fraction=d.test_fraction)
    else:
        splits = split_sentences(read_file(d.corpus, cfg), seed=d.split_seed,
                                 valid_fraction=0.0 if d.valid else d.valid_fraction,
                                 test_fraction=0.0 if d.test else d.test_fraction)
        for name, path in (("valid", d.valid), ("test", d.test)):
            if path:
                splits[name] = read_file(path, cfg)
    for name in ("valid", "test"):
        if not splits[name]:
            raise ValueError(f"{d.corpus}: the {name} split is empty; give data.{name} or a "
                             f"{name}_fraction above 0")
    return {name: truncate(s, d.max_length, f"{d.corpus} ({name})")
            for name, s in splits.items()}


def truncate(sentences: list, max_length: int, where: str) -> list:
    """Each sentence cut to ``max_length`` tokens; one warning says how many were cut."""
    long = sum(len(s) > max_length for s in sentences)
    if long:
        log.warning("%s: %d sentence(s) longer than data.max_length=%d words were truncated",
                    where, long, max_length)
        sentences = [s[:max_length] for s in sentences]
    return sentences


def make_task(cfg: TagConfig, vocabs: Optional[Vocabs] = None):
    """(task, vocabularies): the vocabularies are built from the training split unless given."""
    splits = load_splits(cfg)
    if vocabs is None:
        held_out = [t for name in ("valid", "test") for s in splits[name] for _, t in s]
        vocabs = Vocabs.build(splits["train"], cfg, extra_tags=held_out)
    encoded = {name: _encode(vocabs, s, cfg) for name, s in splits.items()}
    return TaggingTask(cfg, vocabs, encoded, pick_device(cfg.train.device)), vocabs


def _encode(vocabs: Vocabs, sentences: list[Sentence], cfg: TagConfig):
    return vocabs.encode([[w for w, _ in s] for s in sentences],
                         [[t for _, t in s] for s in sentences],
                         max_word_length=cfg.data.max_word_length)


def read_run_checkpoint(path: Path) -> dict[str, Any]:
    """A tagging checkpoint; ``ValueError`` (one line) when it is missing, corrupt, or
    not a whole tagging run."""
    return read_run(path, TASKS, "a tagger", ("config", "vocabs", "model"))


def train(task: str, cfg: TagConfig, out: Path, *, resume: bool = False,
          progress: bool = True) -> dict[str, Any]:
    """Train (or resume) the tagger in ``out``; return the trainer's summary. Everything
    the user gave is checked before ``out`` is created or written."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    out = Path(out)
    ck = open_run(out, cfg, resume, read_run_checkpoint)
    vocabs = None if ck is None else Vocabs.from_dict(ck["vocabs"])
    tag_task, vocabs = make_task(cfg, vocabs)
    next(tag_task.batches(0, slice(None)))  # the data's own checks, before out is made
    model = _build(vocabs, cfg)
    meta = {"task": task, "config": configs.to_dict(cfg), "vocabs": vocabs.to_dict()}
    trainer = Trainer(model, tag_task, cfg.train, out, meta=meta, resume=resume,
                      progress=progress)
    if trainer.procs.main:
        write_text(out / "config.toml", configs.dumps_toml(cfg))
    summary = trainer.fit()
    summary.update(vocab_size=len(vocabs.words), tags=len(vocabs.tags))
    return summary


def _build(vocabs: Vocabs, cfg: TagConfig) -> Tagger:
    return build_model(len(vocabs.words), len(vocabs.chars), len(vocabs.tags), cfg.model,
                       cfg.train.seed)


def load_run(out: Path):
    """(config, vocabularies, model in eval mode) of a trained run."""
    path = run_checkpoint(out)
    ck = read_run_checkpoint(path)
    cfg = configs.from_dict(TagConfig, ck["config"])
    vocabs = Vocabs.from_dict(ck["vocabs"])
    return cfg, vocabs, load_weights(_build(vocabs, cfg), ck["model"], path)


def evaluate(out: Path, data: Optional[str] = None) -> dict[str, Any]:
    """Test-split scores of the run's best model (or of every sentence of the file
    ``data``): loss, token accuracy, accuracy on words outside the training vocabulary,
    macro and per-tag F1, and entity-level F1 when the tags are BIO."""
    cfg, vocabs, model = load_run(out)
    if data is None:
        tag_task, _ = make_task(cfg, vocabs)
        split = "test"
    else:
        sentences = truncate(read_file(data, cfg), cfg.data.max_length, data)
        encoded = _encode(vocabs, sentences, cfg)
        tag_task = TaggingTask(cfg, vocabs, {"test": encoded}, torch.device("cpu"))
        split = data
    test = tag_task.splits["test"]
    with torch.no_grad():
        predicted, total, count = tag_task.predict(model.to(tag_task.device), "test")
    names = vocabs.tags
    gold = [[names[i] for i in t.tolist()] for t in test.tags]
    pred = [[names[i] for i in p] for p in predicted]
    scores = tag_metrics.score(gold, pred, [(w == 0).tolist() for w in test.words])
    per_tag = scores.pop("per_tag")
    return {"split": split, "test_loss": total / count,
            **{f"test_{k}": v for k, v in scores.items() if k not in ("tokens",
                                                                      "unknown_tokens")},
            "tokens": scores["tokens"], "unknown_tokens": scores["unknown_tokens"],
            "per_tag": per_tag, "out": str(out)}


def predict(out: Path, texts: str | Sequence[str]) -> list[list[tuple[str, str]]]:
    """Each text tokenised (``rnnkit.tasks.tag.tokenize``) and tagged: a list of
    ``(token, tag)`` per text. A text longer than ``data.max_length`` words is
    truncated, with a warning."""
    cfg, vocabs, model = load_run(out)
    texts = [texts] if isinstance(texts, str) else list(texts)
    sentences = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"text {i} is a {type(text).__name__}, not a str")
        words = tokenize(text)
        if not words:
            raise ValueError(f"text {i} holds no word to tag: {text!r}")
        sentences.append(words)
    sentences = truncate(sentences, cfg.data.max_length, "the text")
    encoded = vocabs.encode(sentences, max_word_length=cfg.data.max_word_length)
    tag_task = TaggingTask(cfg, vocabs, {"input": encoded}, torch.device("cpu"))
    predicted, _, _ = tag_task.predict(model, "input")
    return [[(w, vocabs.tags[t]) for w, t in zip(words, tags)]
            for words, tags in zip(sentences, predicted)]
