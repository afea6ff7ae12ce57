"""Language-model runs: train, sample and evaluate, as the command line calls them.

A run lives in one directory: ``config.toml`` (what was asked), ``checkpoint.pt`` (the
latest step), ``best.pt`` (the best validation loss), ``metrics.jsonl``, ``loss.png``
and ``gradient_flow.png``.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Optional

import torch

from rnnkit import config as configs
from rnnkit._io import write_text
from rnnkit.data.text import read_text, split_contiguous
from rnnkit.data.vocab import Vocab
from rnnkit.decoding import generate
from rnnkit.tasks._runs import load_weights, read_run, run_checkpoint
from rnnkit.tasks.lm import EOS, LanguageModelTask, LMConfig, build_model, detokenize, tokenize
from rnnkit.training import Trainer
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
        from rnnkit.data.brown import brown_lm_splits

        texts = brown_lm_splits()
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


def read_run_checkpoint(path: Path) -> dict[str, Any]:
    """A language-model checkpoint; ``ValueError`` (one line) when it is missing, corrupt,
    holds anything but plain data (it is never unpickled: it cannot run code), or is not
    a whole language-model run."""
    return read_run(path, TASKS, "a language model", ("config", "vocab", "model"))


def _check_resumable(ck: dict[str, Any], task: str, cfg: LMConfig, out: Path) -> None:
    """Refuse to resume another task, or other weights' shapes and meaning, before
    anything is built or written."""
    if ck["task"] != task:
        raise ValueError(f"{out} holds a {ck['task']} run, not {task}; resume it with "
                         f"rnnkit train {ck['task']} --resume")
    old, new = ck["config"].get("model", {}), configs.to_dict(cfg.model)
    changed = [f"model.{k}={old.get(k)!r} in the run, {v!r} asked" for k, v in new.items()
               if old.get(k) != v]
    if changed:
        raise ValueError(f"cannot resume {out} with another model ({'; '.join(changed)}); "
                         "resume with the run's own model settings, or train into a new --out")


def train(task: str, cfg: LMConfig, out: Path, *, resume: bool = False,
          progress: bool = True) -> dict[str, Any]:
    """Train (or resume) the run in ``out``; return the trainer's summary.

    Everything the user gave is checked before ``out`` is created or written: a mistake
    leaves no half-made run behind."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a directory")
    vocab = None
    if resume:
        ck = read_run_checkpoint(out / LAST)
        _check_resumable(ck, task, cfg, out)
        vocab = Vocab(ck["vocab"])
        if ck.get("step", 0) >= cfg.train.max_steps:
            log.warning("the run in %s is already at step %s; pass --max-steps above it to "
                        "train further", out, ck.get("step"))
    elif (out / LAST).exists() or (out / BEST).exists():
        raise ValueError(f"{out} already holds a run; pass --resume to continue it, or "
                         "choose another --out")
    if cfg.train.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    lm_task, vocab = make_task(task, cfg, vocab)
    # The task's own checks on the training text (one BPTT window, two tokens a stream)
    # run at the first batch, inside fit, after the run directory exists: run them now.
    next(lm_task.batches(0, slice(None)))
    model = build_model(len(vocab), cfg.model, cfg.train.seed)
    # whether <unk> was ever a training target: if not, sampling never emits it
    meta = {"task": task, "config": configs.to_dict(cfg), "vocab": vocab.tokens,
            "unk_trained": bool((lm_task.ids["train"] == 0).any())}
    trainer = Trainer(model, lm_task, cfg.train, out, meta=meta, resume=resume,
                      progress=progress)
    if trainer.procs.main:
        write_text(out / "config.toml", configs.dumps_toml(cfg))
    summary = trainer.fit()
    summary["vocab_size"] = len(vocab)
    return summary


def load_run(out: Path):
    """(task name, config, vocabulary, model in eval mode) of a finished run."""
    return _load_run(out)[:4]


def _load_run(out: Path):
    """load_run's four, and the checkpoint itself."""
    path = run_checkpoint(out)
    ck = read_run_checkpoint(path)
    cfg = configs.from_dict(LMConfig, ck["config"])
    vocab = Vocab(ck["vocab"])
    model = load_weights(build_model(len(vocab), cfg.model, cfg.train.seed), ck["model"], path)
    return ck["task"], cfg, vocab, model, ck


def sample(out: Path, *, prompt: Optional[str] = None, length: Optional[int] = None,
           temperature: Optional[float] = None, top_k: Optional[int] = None,
           top_p: Optional[float] = None, seed: int = 0) -> str:
    """Text generated by the run's best model, continuing ``prompt``."""
    task, cfg, vocab, model, ck = _load_run(out)
    s = cfg.sample
    prompt = s.prompt if prompt is None else prompt
    level = "char" if task == "charlm" else "word"
    tokens = tokenize(prompt, level)
    if level == "word" and tokens and not prompt.endswith("\n"):
        tokens = tokens[:-1]  # tokenize ends each line with <eos>: continue the line instead
    tokens = tokens or ["\n" if level == "char" else EOS]  # no prompt: start as after a line
    ids = vocab.encode(tokens)  # unseen characters or words become <unk>, id 0
    state = None
    with torch.no_grad():
        if ids.numel() > 1:
            _, state = model(ids[:-1].unsqueeze(1), None)
    # <unk> (id 0) has no text of its own: a character model never emits it, nor a word
    # model that never had it as a training target (its logit is then only noise)
    mask_unk = level == "char" or not ck.get("unk_trained", True)

    def step(token, state):
        logits, state = model(token.unsqueeze(0), state)  # (1, B) → (1, B, V)
        logits = logits[0]  # (B, V)
        if mask_unk:
            logits = logits.clone()
            logits[:, 0] = -math.inf
        return logits, state

    gen = torch.Generator().manual_seed(seed)
    out_ids = generate(step, state, ids[-1:], length if length is not None else s.length,
                       temperature=s.temperature if temperature is None else temperature,
                       top_k=top_k if top_k is not None else s.top_k,
                       top_p=top_p if top_p is not None else s.top_p, generator=gen)
    text = detokenize([vocab.tokens[int(i)] for i in out_ids[0]], level)
    if level == "char" or not prompt.strip() or prompt.endswith("\n"):
        return prompt + text
    return f"{prompt} {text}"


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
