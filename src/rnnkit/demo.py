"""The engine demo: vanishing gradients, a plain RNN against an LSTM on one task.

Task ("remember the first symbol"): one of ``symbols`` symbols, then T - 1 distractors
drawn from a separate alphabet of the same size; the label is the first symbol. The
loss is taken at the last step only, so learning needs the gradient to reach t = 0
through T - 1 recurrent steps.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

import rnnkit
from rnnkit.diagnostics import gradient_flow, plot_gradient_flow


@dataclass
class DemoConfig:
    steps: int = 100  # sequence length T: the distance the gradient must travel
    symbols: int = 4  # alphabet size; chance accuracy is 1/symbols
    hidden_size: int = 128  # units of each recurrent layer
    batch_size: int = 64  # sequences per optimisation step
    train_steps: int = 600  # optimisation steps per model
    lr: float = 1e-2  # Adam learning rate
    clip: float = 1.0  # gradient clipping by global L2 norm
    forget_bias: float = 3.0  # LSTM forget-gate bias: sigmoid(3) = 0.95 keeps memory
    seed: int = 0  # torch.manual_seed, for a reproducible demo


class FirstSymbol(nn.Module):
    """Embedding -> recurrent layer -> linear classifier on the last output."""

    def __init__(self, kind: str, cfg: DemoConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(2 * cfg.symbols, 16)
        extra = {"forget_bias": cfg.forget_bias} if kind == "LSTM" else {}
        self.rnn = getattr(rnnkit, kind)(16, cfg.hidden_size, **extra)
        self.head = nn.Linear(cfg.hidden_size, cfg.symbols)

    def forward(self, tokens: Tensor) -> Tensor:  # (T, B) -> (B, symbols)
        out, _ = self.rnn(self.embed(tokens))  # (T, B, H)
        return self.head(out[-1])


def make_batch(cfg: DemoConfig, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    tokens = torch.randint(cfg.symbols, (cfg.steps, cfg.batch_size), generator=generator)
    tokens[1:] += cfg.symbols  # distractors: symbols .. 2*symbols - 1
    return tokens, tokens[0]


def train_one(kind: str, cfg: DemoConfig) -> dict:
    """Train one model; return its accuracy and gradient flow before and after."""
    torch.manual_seed(cfg.seed)
    data = torch.Generator().manual_seed(cfg.seed)
    model = FirstSymbol(kind, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    probe_tokens, probe_labels = make_batch(cfg, torch.Generator().manual_seed(cfg.seed + 1))

    def flow() -> Tensor:
        emb = model.embed(probe_tokens).detach()
        loss = lambda out: nn.functional.cross_entropy(model.head(out[-1]), probe_labels)
        return gradient_flow(model.rnn, emb, loss)[0]

    before = flow()
    for _ in range(cfg.train_steps):
        tokens, labels = make_batch(cfg, data)
        loss = nn.functional.cross_entropy(model(tokens), labels)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        opt.step()
    with torch.no_grad():
        accuracy = (model(probe_tokens).argmax(-1) == probe_labels).float().mean().item()
    return {"kind": kind, "accuracy": accuracy, "flow_before": before, "flow_after": flow()}


def run_demo(out_dir: str, cfg: Optional[DemoConfig] = None) -> list[dict]:
    """Train RNN and LSTM on the same task, write the gradient-flow plot into ``out_dir``."""
    cfg = cfg or DemoConfig()
    results = [train_one(kind, cfg) for kind in ("RNN", "LSTM")]
    curves = {}
    for r in results:
        curves[f"{r['kind']} at init"] = r["flow_before"]
        curves[f"{r['kind']} trained (acc {r['accuracy']:.0%})"] = r["flow_after"]
    path = os.path.join(out_dir, "gradient_flow.png")
    plot_gradient_flow(curves, path, title=f"‖∂L/∂h_t‖, loss at t = {cfg.steps - 1}")
    for r in results:
        r["plot"] = path
    return results
