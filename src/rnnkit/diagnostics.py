"""Gradient flow through time: how much the loss depends on each hidden state.

``gradient_flow`` reports ‖∂L/∂h_t‖ for every layer, direction and time step, the
quantity behind vanishing and exploding gradients (Bengio, Simard & Frasconi 1994;
Pascanu, Mikolov & Bengio 2013). A plain tanh RNN's curve falls geometrically as t
moves away from where the loss is taken; an LSTM's cell path keeps it up.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

from rnnkit._io import save_figure
from rnnkit.backends import reference
from rnnkit.layers.recurrent import _Recurrent
from rnnkit.layers.run import run_stack


def gradient_flow(
    module: _Recurrent,
    input: Tensor,
    loss_fn: Callable[[Tensor], Tensor],
    hx=None,
) -> Tensor:
    """‖∂L/∂h_t‖ (L2 norm over batch and features) for each layer and direction.

    ``loss_fn`` maps the layer's output, laid out as the module returns it, to a
    scalar. The gradient is the total one: through the output at ``t`` and through
    every later step. The module runs on the reference backend so that each hidden
    state can be probed; its parameters and mode (train/eval) are used as they are.

    Returns a (num_layers * num_directions, T) tensor indexed by time position (the
    reverse direction is flipped back into input order).
    """
    x, _, batched = module._prepare_input(input, None)
    if not batched:
        raise ValueError("gradient_flow expects a batched input (T, B, I) or (B, T, I)")
    states = module._initial_state(hx, x, batched)
    probes: dict[tuple[int, int], list[Tensor]] = {}

    def add_probe(layer: int, direction: int, t: int, state):
        # h_t + 0 with a leaf we can differentiate against: ∂L/∂probe_t = ∂L/∂h_t.
        probe = torch.zeros_like(state[0], requires_grad=True)
        probes.setdefault((layer, direction), []).append(probe)
        return (state[0] + probe,) + tuple(state[1:])

    out, _ = run_stack(module, x, states, None, reference.run_direction, add_probe)
    loss = loss_fn(out.transpose(0, 1) if module.batch_first else out)
    keys = sorted(probes)
    flat = [p for k in keys for p in probes[k]]
    grads = torch.autograd.grad(loss, flat, allow_unused=True)
    norms = torch.tensor([0.0 if g is None else float(g.norm()) for g in grads])
    norms = norms.view(len(keys), x.shape[0])
    for row, (_, direction) in enumerate(keys):
        if direction == 1:
            norms[row] = norms[row].flip(0)
    return norms


def plot_gradient_flow(curves: dict[str, Tensor], path: str, title: Optional[str] = None):
    """Save a log-scale plot of ‖∂L/∂h_t‖ against t, one line per named curve."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # the plot extra is optional
        raise ImportError("plotting needs matplotlib: pip install 'rnnkit[plot]'") from e
    fig, ax = plt.subplots(figsize=(7, 4))
    underflow = False
    for name, norms in curves.items():
        shown = norms.double().masked_fill(norms <= 0, float("nan"))  # log of 0: no point
        underflow |= bool((norms <= 0).any())
        ax.semilogy(range(len(norms)), shown.tolist(), label=name)
    ax.set_xlabel("time step t" + ("  (a line stops where the gradient underflows to 0)"
                                   if underflow else ""))
    ax.set_ylabel("‖∂L/∂h_t‖")
    ax.set_title(title or "Gradient flow through time")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
