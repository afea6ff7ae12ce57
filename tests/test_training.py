"""The trainer: truncated BPTT with carried state, clipping, schedules, checkpoints that
resume exactly, and clean stops on Ctrl-C and NaN."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from rnnkit import config as configs
from rnnkit.data.streams import batchify, num_windows, windows
from rnnkit.tasks import lm_runs
from rnnkit.tasks.lm import LanguageModelTask, LMConfig, build_model
from rnnkit.training import StopTraining, load_checkpoint, save_checkpoint
from rnnkit.training.config import TrainConfig
from rnnkit.training.schedule import Schedule

TEXT = ("To be, or not to be, that is the question:\n"
        "Whether 'tis nobler in the mind to suffer\n"
        "The slings and arrows of outrageous fortune,\n") * 12


def _config(corpus, *overrides):
    base = ["model.embedding_size=8", "model.hidden_size=12", "model.num_layers=2",
            "train.batch_size=4", "train.bptt=10", "train.max_steps=24", "train.lr=0.01",
            "train.warmup_steps=3", "train.eval_every=8", "train.checkpoint_every=8",
            "train.log_every=1", "train.device=cpu", "data.valid_fraction=0.1",
            "data.test_fraction=0.1"]
    return configs.load(LMConfig, None, [f"data.corpus={corpus}", *base, *overrides])


@pytest.fixture()
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def _train_losses(out):
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["train_loss"], r["grad_norm"]) for r in lines if "train_loss" in r]


# -- truncated BPTT ---------------------------------------------------------------------


def test_batchify_lays_streams_in_columns():
    streams = batchify(torch.arange(25), 4)  # the 25th token does not fill a row
    assert streams.shape == (6, 4)
    assert streams[:, 1].tolist() == [6, 7, 8, 9, 10, 11]


def test_windows_cover_each_stream_once_per_pass_and_resume_mid_pass():
    streams = batchify(torch.arange(40), 2)  # (20, 2)
    n = num_windows(streams, 6)  # 19 targets per stream: windows of 6, 6, 6, 1
    assert n == 4
    gen = windows(streams, 6)
    first_pass = [next(gen) for _ in range(n)]
    assert [w.reset for w in first_pass] == [True, False, False, False]
    inputs = torch.cat([w.inputs for w in first_pass])
    targets = torch.cat([w.targets for w in first_pass])
    assert torch.equal(inputs, streams[:-1]) and torch.equal(targets, streams[1:])
    assert next(gen).reset  # the second pass starts from a zero state again
    later = next(windows(streams, 6, start=n + 2))
    assert torch.equal(later.inputs, first_pass[2].inputs)


def test_carried_state_continues_the_stream_exactly(corpus):
    """Windows read one after another with the state carried give the same losses as one
    pass over the whole stream: the carried state is the stream's true state."""
    cfg = _config(corpus, "model.cell=lstm")
    task, vocab = lm_runs.make_task("charlm", cfg)
    model = build_model(len(vocab), cfg.model, 0).double().eval()
    batches = task.batches(0, slice(None))
    state, losses, inputs, targets = None, [], [], []
    for _ in range(3):
        w = next(batches)
        loss, state = task.loss(model, w, None if w.reset else state)
        losses.append(loss.item())
        inputs.append(w.inputs)
        targets.append(w.targets)
    logits, _ = model(torch.cat(inputs))  # (3k, B, V): one pass, no windows
    whole = F.cross_entropy(logits.flatten(0, 1), torch.cat(targets).flatten(),
                            reduction="none").view(3, -1).mean(1)
    torch.testing.assert_close(torch.tensor(losses, dtype=torch.float64), whole,
                               rtol=1e-12, atol=0)


# -- clipping and schedules -------------------------------------------------------------


def test_logged_gradient_norm_is_the_norm_before_clipping(corpus, tmp_path):
    cfg = _config(corpus, "train.clip=0.01", "train.max_steps=1")
    lm_runs.train("charlm", cfg, tmp_path / "run", progress=False)
    (_, loss, norm), = _train_losses(tmp_path / "run")

    task, vocab = lm_runs.make_task("charlm", cfg)  # the same first step, by hand
    model = build_model(len(vocab), cfg.model, cfg.train.seed)
    expected_loss, _ = task.loss(model, next(task.batches(0, slice(None))), None)
    expected_loss.backward()
    expected = torch.linalg.vector_norm(
        torch.stack([p.grad.norm() for p in model.parameters()]))
    assert norm > 0.01  # so clipping did act
    assert loss == pytest.approx(expected_loss.item(), rel=1e-6)
    assert norm == pytest.approx(expected.item(), rel=1e-5)


def test_clipping_bounds_the_update(corpus, tmp_path):
    cfg = _config(corpus, "train.clip=1e-4", "train.max_steps=1", "train.optimizer=sgd",
                  "train.lr=1.0", "train.warmup_steps=0")
    task, vocab = lm_runs.make_task("charlm", cfg)
    before = build_model(len(vocab), cfg.model, cfg.train.seed).state_dict()
    lm_runs.train("charlm", cfg, tmp_path / "run", progress=False)
    after = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"]
    delta = torch.linalg.vector_norm(torch.stack(
        [(after[k] - before[k]).norm() for k in before]))
    assert delta.item() == pytest.approx(1e-4, rel=1e-3)  # SGD, lr 1: the step is the clip


def test_schedule_warmup_cosine_and_plateau():
    cos = Schedule(TrainConfig(lr=1.0, warmup_steps=4, max_steps=14, min_lr_ratio=0.1))
    assert [cos.lr(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert cos.lr(9) == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the decay
    assert cos.lr(14) == pytest.approx(0.1)
    plateau = Schedule(TrainConfig(lr=1.0, warmup_steps=0, schedule="plateau",
                                   plateau_factor=4.0))
    assert plateau.validated(2.0) and plateau.lr(5) == 1.0
    assert not plateau.validated(2.5) and plateau.lr(6) == 0.25
    assert plateau.validated(1.0) and plateau.lr(7) == 0.25


# -- checkpoints and resuming -----------------------------------------------------------


class _Interrupt:
    """Replaces the task's loss: raise ``error`` on call number ``at`` (1-based)."""

    def __init__(self, monkeypatch, at, error):
        self.calls, self.at, self.error = 0, at, error
        self.loss = LanguageModelTask.loss
        monkeypatch.setattr(LanguageModelTask, "loss", self)

    def __get__(self, task, owner):
        return lambda *a: self(task, *a)

    def __call__(self, task, model, batch, state):
        self.calls += 1
        if self.calls == self.at:
            if isinstance(self.error, BaseException):
                raise self.error
            loss, state = self.loss(task, model, batch, state)
            return loss * self.error, state
        return self.loss(task, model, batch, state)


@pytest.mark.parametrize("cell, average", [("lstm", "off"), ("gru", "off"),
                                           ("lstm", "ema"), ("gru", "uniform")])
def test_stopped_and_resumed_run_equals_one_that_never_stopped(corpus, tmp_path,
                                                               monkeypatch, cell, average):
    # dropout and recurrent dropout draw from the RNG, so the RNG state must resume too;
    # with weight averaging the average and the live weights must both resume
    extra = [f"model.cell={cell}", "model.dropout=0.2", "model.recurrent_dropout=0.2",
             "train.schedule=plateau", "train.eval_tokens=200", f"train.average={average}",
             "train.average_start=4", "train.ema_decay=0.8"]
    straight = tmp_path / "straight"
    lm_runs.train("charlm", _config(corpus, *extra), straight, progress=False)

    stopped = tmp_path / "stopped"
    _Interrupt(monkeypatch, at=13, error=KeyboardInterrupt())
    with pytest.raises(StopTraining, match="interrupted at step 12.*step 8"):
        lm_runs.train("charlm", _config(corpus, *extra), stopped, progress=False)
    assert load_checkpoint(stopped / "checkpoint.pt")["step"] == 8
    monkeypatch.undo()
    lm_runs.train("charlm", _config(corpus, *extra), stopped, resume=True, progress=False)

    assert _train_losses(stopped) == _train_losses(straight)  # exactly, step for step
    a = load_checkpoint(straight / "checkpoint.pt")
    b = load_checkpoint(stopped / "checkpoint.pt")
    for weights in ("model", "live_model") if average != "off" else ("model",):
        for key in a[weights]:
            assert torch.equal(a[weights][key], b[weights][key]), (weights, key)
    assert a["best"] == b["best"]


def test_weight_average_uniform_and_ema_by_hand():
    from rnnkit.training.averaging import WeightAverage

    layer = torch.nn.Linear(2, 1, bias=False, dtype=torch.float64)
    cfgs = {kind: TrainConfig(average=kind, average_start=2, ema_decay=0.5)
            for kind in ("uniform", "ema")}
    averages = {kind: WeightAverage(layer, cfg) for kind, cfg in cfgs.items()}
    for step in range(1, 6):  # after step k the weights are all k
        torch.nn.init.constant_(layer.weight, float(step))
        for avg in averages.values():
            assert avg.active == (step > 3)
            avg.update(layer, step)
    uniform = averages["uniform"].model(layer).weight
    ema = averages["ema"].model(layer).weight
    assert torch.equal(uniform, torch.full_like(uniform, (3 + 4 + 5) / 3))
    assert torch.equal(ema, torch.full_like(ema, 0.5 * (0.5 * 3 + 0.5 * 4) + 0.5 * 5))
    assert torch.equal(layer.weight, torch.full_like(layer.weight, 5.0))  # live untouched


def test_validation_and_kept_weights_are_the_average(corpus, tmp_path):
    out = tmp_path / "run"
    cfg = _config(corpus, "train.average=uniform", "train.average_start=10",
                  "train.schedule=constant", "train.lr=0.05")
    lm_runs.train("charlm", cfg, out, progress=False)
    ck = load_checkpoint(out / "checkpoint.pt")
    assert ck["average"] == {"n": 14}
    assert any(not torch.equal(ck["model"][k], ck["live_model"][k]) for k in ck["model"])
    task, _ = lm_runs.make_task("charlm", cfg)
    model = build_model(len(task.vocab), cfg.model, cfg.train.seed)
    model.load_state_dict(ck["model"])
    model.eval()
    with torch.no_grad():
        loss = task.evaluate(model, "valid", None)["loss"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    last_val = [r for r in records if "val_loss" in r][-1]
    assert last_val["step"] == 24 and last_val["val_loss"] == pytest.approx(loss, rel=1e-6)


def test_resume_continues_to_a_new_max_steps(corpus, tmp_path):
    out = tmp_path / "run"
    first = lm_runs.train("charlm", _config(corpus, "train.max_steps=8"), out, progress=False)
    cfg = configs.load(LMConfig, None, ["train.max_steps=16"],
                       base=configs.from_dict(LMConfig, load_checkpoint(
                           out / "checkpoint.pt")["config"]))
    second = lm_runs.train("charlm", cfg, out, resume=True, progress=False)
    assert (first["step"], second["step"]) == (8, 16)
    assert [s for s, *_ in _train_losses(out)] == list(range(1, 17))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(corpus, tmp_path, monkeypatch):
    _Interrupt(monkeypatch, at=11, error=math.nan)
    out = tmp_path / "run"
    with pytest.raises(StopTraining, match=r"loss nan .* at step 11.*step 8"):
        lm_runs.train("charlm", _config(corpus), out, progress=False)
    ck = load_checkpoint(out / "checkpoint.pt")
    assert ck["step"] == 8
    assert all(torch.isfinite(v).all() for v in ck["model"].values())


def test_early_stopping_after_patience(corpus, tmp_path):
    # a learning rate of 0 after warm-up: validation never improves after the first
    cfg = _config(corpus, "train.lr=1e-9", "train.patience=2", "train.eval_every=2",
                  "train.max_steps=40", "train.schedule=constant")
    summary = lm_runs.train("charlm", cfg, tmp_path / "run", progress=False)
    assert summary["step"] < 40


def test_time_budget_stops_with_a_checkpoint(corpus, tmp_path):
    cfg = _config(corpus, "train.time_budget=1.0", "train.max_steps=1000000")
    summary = lm_runs.train("charlm", cfg, tmp_path / "run", progress=False)
    assert 0 < summary["step"] < 1000000 and summary["elapsed_s"] >= 1.0
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == summary["step"]


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1})

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_checkpoint(path, {"step": 2})
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_deterministic_mode_is_on_and_repeats_a_run(corpus, tmp_path):
    try:
        for name in ("a", "b"):
            lm_runs.train("charlm", _config(corpus, "train.deterministic=true",
                                            "model.dropout=0.1"), tmp_path / name,
                          progress=False)
            assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
    assert _train_losses(tmp_path / "a") == _train_losses(tmp_path / "b")
