"""Language-model runs: train, sample and evaluate, as the command line calls them.

A run lives in one directory: ``config.toml`` (what was asked), ``checkpoint.pt`` (the
latest step), ``best.pt`` (the best validation loss), ``metrics.jsonl``, ``loss.png``
and ``gradient_flow.png``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional

import torch

from rnnkit import config as configs
from rnnkit.data.text import read_text, split_contiguous
from rnnkit.data.vocab import Vocab
from rnnkit.decoding import generate
from rnnkit.tasks.lm import LanguageModelTask, LMConfig, build_model, detokenize, tokenize
from rnnkit.training import Trainer, load_checkpoint
from rnnkit.training.trainer import BEST, LAST, pick_device

log = logging.getLogger(__name__)
TASKS = ("charlm", "wordlm")


def load_splits(task: str, cfg: LMConfig) -> dict[str, list[str]]:
    """The corpus's train/valid/test splits as token lists."""
    level = "char" if task == "charlm" else "word"
    corpus = cfg.data.corpus
    if corpus == "shakespeare":
        from rnnkit.data.shakespeare import shakespeare_splits

        texts = shakespeare_splits()
    elif corpus == "brown":
        if level == "char":
            raise ValueError("the Brown corpus is prepared for word level; use wordlm")
        from rnnkit.data.brown import prepare_brown_lm
        from rnnkit.data.cache import cache_dir

        folder = cache_dir() / "brown-lm"
        if not (folder / "test.txt").exists():
            folder.mkdir(parents=True, exist_ok=True)
            prepare_brown_lm(folder)
        texts = {s: (folder / f"{s}.txt").read_text(encoding="utf-8")
                 for s in ("train", "valid", "test")}
    else:
        text = read_text(corpus)
        texts = split_contiguous(text, cfg.data.valid_fraction, cfg.data.test_fraction)
    splits = {s: tokenize(t, level) for s, t in texts.items()}
    for split in ("valid", "test"):
        if len(splits[split]) < 2:
            raise ValueError(f"{corpus}: the {split} split has {len(splits[split])} tokens; "
                             "use a longer text or larger valid_fraction/test_fraction")
    return splits


def make_task(task: str, cfg: LMConfig, vocab: Optional[Vocab] = None):
    """(task, vocabulary): the vocabulary is built from the training split unless given."""
    splits = load_splits(task, cfg)
    if vocab is None:
        vocab = Vocab.build(splits["train"], min_count=cfg.data.min_count)
    ids = {s: vocab.encode(tokens) for s, tokens in splits.items()}
    device = pick_device(cfg.train.device)
    return LanguageModelTask(task, cfg, vocab, ids, device), vocab


def train(task: str, cfg: LMConfig, out: Path, *, resume: bool = False,
          progress: bool = True) -> dict[str, Any]:
    """Train (or resume) the run in ``out``; return the trainer's summary."""
    out = Path(out)
    vocab = None
    if resume:
        ck = load_checkpoint(out / LAST)
        vocab = Vocab(ck["vocab"])
    elif (out / LAST).exists():
        raise ValueError(f"{out} already holds a run; pass --resume to continue it, or "
                         "choose another --out")
    if cfg.train.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    lm_task, vocab = make_task(task, cfg, vocab)
    model = build_model(len(vocab), cfg.model, cfg.train.seed)
    meta = {"task": task, "config": configs.to_dict(cfg), "vocab": vocab.tokens}
    trainer = Trainer(model, lm_task, cfg.train, out, meta=meta, resume=resume,
                      progress=progress)
    if trainer.procs.main:
        _write(out / "config.toml", configs.dumps_toml(cfg))
    summary = trainer.fit()
    summary["vocab_size"] = len(vocab)
    return summary


def load_run(out: Path):
    """(task name, config, vocabulary, model in eval mode) of a finished run."""
    out = Path(out)
    if not out.is_dir():
        raise ValueError(f"no such run directory: {out}")
    path = out / BEST if (out / BEST).exists() else out / LAST
    if not path.exists():
        raise ValueError(f"{out} holds no checkpoint ({BEST} or {LAST}); train a model there "
                         "first")
    ck = load_checkpoint(path)
    if ck.get("task") not in TASKS:
        raise ValueError(f"{path} is a {ck.get('task')!r} checkpoint, not a language model")
    cfg = configs.from_dict(LMConfig, ck["config"])
    vocab = Vocab(ck["vocab"])
    model = build_model(len(vocab), cfg.model, cfg.train.seed)
    try:
        model.load_state_dict(ck["model"])
    except RuntimeError as e:
        raise ValueError(f"{path} does not fit the model its config describes "
                         f"({str(e).splitlines()[0]})") from None
    return ck["task"], cfg, vocab, model.eval()


def sample(out: Path, *, prompt: Optional[str] = None, length: Optional[int] = None,
           temperature: Optional[float] = None, top_k: Optional[int] = None,
           top_p: Optional[float] = None, seed: int = 0) -> str:
    """Text generated by the run's best model, continuing ``prompt``."""
    task, cfg, vocab, model = load_run(out)
    s = cfg.sample
    prompt = s.prompt if prompt is None else prompt
    level = "char" if task == "charlm" else "word"
    tokens = tokenize(prompt, level) if prompt else ["\n" if level == "char" else "<eos>"]
    ids = vocab.encode(tokens)
    state = None
    with torch.no_grad():
        if ids.numel() > 1:
            _, state = model(ids[:-1].unsqueeze(1), None)

    def step(token, state):
        logits, state = model(token.unsqueeze(0), state)  # (1, B) → (1, B, V)
        return logits[0], state

    gen = torch.Generator().manual_seed(seed)
    out_ids = generate(step, state, ids[-1:], length if length is not None else s.length,
                       temperature=s.temperature if temperature is None else temperature,
                       top_k=top_k if top_k is not None else s.top_k,
                       top_p=top_p if top_p is not None else s.top_p, generator=gen)
    text = detokenize([vocab.tokens[int(i)] for i in out_ids[0]], level)
    return prompt + text if level == "char" or not prompt else f"{prompt} {text}"


def evaluate(out: Path, data: Optional[str] = None) -> dict[str, Any]:
    """Test-split metrics of the run's best model (or of the whole file ``data``)."""
    task, cfg, vocab, model = load_run(out)
    if data is not None:
        cfg.data.corpus, cfg.data.valid_fraction, cfg.data.test_fraction = data, 0.0, 0.0
        level = "char" if task == "charlm" else "word"
        tokens = tokenize(read_text(data), level)
        if len(tokens) < 2:
            raise ValueError(f"{data} has {len(tokens)} tokens; need at least 2")
        ids = dict.fromkeys(("train", "valid", "test"), vocab.encode(tokens))
        lm_task = LanguageModelTask(task, cfg, vocab, ids, torch.device("cpu"))
    else:
        lm_task, _ = make_task(task, cfg, vocab)
    with torch.no_grad():
        metrics = lm_task.evaluate(model.to(lm_task.device), "test")
    unknown = float((lm_task.ids["test"] == 0).float().mean())
    split = data if data is not None else "test"
    return {"split": split, **{f"test_{k}": v for k, v in metrics.items()},
            "unknown_rate": unknown, "tokens": lm_task.ids["test"].numel(), "out": str(out)}


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
