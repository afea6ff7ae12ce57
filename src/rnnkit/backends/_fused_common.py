r"""Pieces of the fused backend shared by every cell: settling a state, layer norm, buffers,
the recurrent product (the products over all steps are in ``_rows``).

"Settling" is what happens to a freshly computed state s' before it is stored: zoneout
mixes it with the previous state, and past a sequence's end the previous state is kept.
Both are one linear interpolation with a weight w:

.. math::
    s_t = s' + w_t \odot (s_{t-1} - s'), \qquad
    w_t = \begin{cases} k_t & \text{step valid} \\ 1 & \text{past the end} \end{cases}

with k the zoneout keep mask (training) or probability (evaluation). Backward splits a
gradient g of s_t into g (1 - w) for s' and g w for s_{t-1}.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from rnnkit.backends._matmul import Fixed
from rnnkit.cells._common import LN_EPS

_LN_BACKWARD = torch.ops.aten.native_layer_norm_backward.default


class Settle:
    """Zoneout and the length mask of one state, as the interpolation weight ``w``.

    ``w`` is None (neither is on), a float (evaluation zoneout, every step valid), or a
    tensor (T, B, n) or (T, B, 1). Built once per forward; :meth:`prepare` and
    :meth:`split` serve the backward loop.
    """

    def __init__(self, w, dtype: Optional[torch.dtype] = None, binary: bool = False) -> None:
        self.raw, self.binary, self._dtype = w, binary, dtype
        self._w = self._ws = None

    @property
    def w(self):
        """The weight as given, or in ``dtype`` when it was given as bytes (see :meth:`kept`)."""
        if self._w is None and self.raw is not None:
            raw = self.raw
            self._w = raw.to(self._dtype) if getattr(raw, "dtype", None) == torch.uint8 else raw
        return self._w

    @property
    def ws(self):
        """The per-step views of a tensor weight, or None."""
        if self._ws is None and isinstance(self.w, Tensor):
            self._ws = self.w.unbind(0)
        return self._ws

    def kept(self, compact: bool):
        """The weight to keep for backward: a tensor of {0, 1} as bytes when ``compact``
        (a quarter of the memory; the Triton kernels read bytes as they are)."""
        w = self.w
        return w.to(torch.uint8) if compact and self.binary and isinstance(w, Tensor) else w

    @classmethod
    def of(cls, keep, valid: Optional[Tensor], like: Tensor) -> "Settle":
        """From a zoneout keep (tensor or float) and ``valid`` (T, B, 1) bool or None."""
        binary = isinstance(keep, Tensor) or keep == 0.0  # zoneout masks are {0, 1}
        if valid is not None:
            keep = keep if isinstance(keep, Tensor) else like.new_full((), keep)
            return cls(torch.where(valid, keep, 1.0), binary=binary)
        if not isinstance(keep, Tensor) and keep == 0.0:
            return cls(None)
        return cls(keep, binary=binary)

    def step_(self, new: Tensor, prev: Tensor, t: int) -> None:
        """``new <- new + w_t (prev - new)`` in place (a no-op when ``w`` is None)."""
        if self.ws is not None:
            new.lerp_(prev, self.ws[t])
        elif self.w is not None:
            new.lerp_(prev, self.w)

    def step_into(self, out: Tensor, new: Tensor, prev: Tensor, t: int) -> None:
        """``out <- new + w_t (prev - new)``, keeping ``new`` (``w`` must not be None)."""
        torch.lerp(new, prev, self.ws[t] if self.ws is not None else self.w, out=out)

    def prepare(self, dy: Optional[Tensor]) -> None:
        """Before the backward loop: ``dy (1 - w)`` and ``dy w`` for all steps at once.

        ``dy`` (T, B, n) is the gradient reaching the state from outside the recurrence
        (the outputs), or None (the LSTM cell)."""
        w = self.w
        self.dy = self.dyn = self.dyk = self.nws = None
        if w is None:
            self.dy = None if dy is None else dy.unbind(0)
        elif isinstance(w, Tensor):
            nw = 1 - w
            self.nws = nw.unbind(0)
            if dy is not None:
                self.dyn, self.dyk = (dy * nw).unbind(0), (dy * w).unbind(0)
        elif dy is not None:
            self.dyn, self.dyk = (dy * (1 - w)).unbind(0), (dy * w).unbind(0)

    def split(self, g: Tensor, t: int) -> tuple[Tensor, Optional[Tensor]]:
        """(∂L/∂s', ∂L/∂s_{t-1} through the mix) from ``g``, the carried ∂L/∂s_t."""
        if self.w is None:
            return (g if self.dy is None else torch.add(g, self.dy[t])), None
        if self.nws is not None:
            if self.dyn is None:
                return g * self.nws[t], g * self.ws[t]
            return (torch.addcmul(self.dyn[t], g, self.nws[t]),
                    torch.addcmul(self.dyk[t], g, self.ws[t]))
        w = self.w
        if self.dyn is None:
            return g * (1 - w), g * w
        return torch.add(self.dyn[t], g, alpha=1 - w), torch.add(self.dyk[t], g, alpha=w)

    def carry(self, d_new: Tensor, factor: Tensor, g: Tensor, t: int) -> Tensor:
        """``d_new * factor + g w_t``, in place into ``d_new`` (the LSTM cell's carry)."""
        d_new.mul_(factor)
        if self.ws is not None:
            d_new.addcmul_(g, self.ws[t])
        elif self.w is not None:
            d_new.add_(g, alpha=self.w)
        return d_new

    def keep_new_(self, d: Tensor, g: Tensor, t: int) -> Tensor:
        """``d + g (1 - w_t)`` in place into ``d``: the carried share reaching s'."""
        if self.w is None:
            return d.add_(g)
        if self.nws is not None:
            return d.addcmul_(g, self.nws[t])
        return d.add_(g, alpha=1 - self.w)


def input_bias(w, mode: str) -> Optional[Tensor]:
    """The bias added to the input share of the gates: b_ih + b_hh (either may be
    absent), b_ih alone for the GRU, whose b_hh stays inside its reset gate's product."""
    biases = [b for b in (w.b_ih, None if mode == "GRU" else w.b_hh) if b is not None]
    return sum(biases[1:], biases[0]) if biases else None


def ln(x: Tensor, gain: Tensor, bias: Optional[Tensor] = None):
    """Layer norm over the last dim: (output, mean, rstd), with torch's fused kernel."""
    return torch.native_layer_norm(x, x.shape[-1:], gain, bias, LN_EPS)


def ln_backward(grad: Tensor, x: Tensor, mean: Tensor, rstd: Tensor, gain: Tensor,
                bias: Optional[Tensor] = None, mask: Sequence[bool] = (True, False, False)):
    """(∂x, ∂gain, ∂bias) of :func:`ln`, each computed only where ``mask`` says."""
    return _LN_BACKWARD(grad, x, x.shape[-1:], mean, rstd, gain, bias, list(mask))


def step_sum(d: Tensor) -> Tensor:
    """``d`` (T, B, G) summed over steps and rows (a bias's gradient), (G,). On a GPU as
    a matrix-vector product: torch's sum over the two leading dims took a temporary of
    twice ``d``'s size there, the peak of the whole backward."""
    if d.device.type == "cpu":
        return d.sum((0, 1))
    d2 = d.reshape(-1, d.shape[-1])
    return torch.mv(d2.t(), d2.new_ones(d2.shape[0]))


def steps(like: Tensor, T: int, shape: tuple[int, ...], keep: bool):
    """A (T, *shape) buffer and its per-step views, or, when nothing is kept for
    backward, one scratch tensor standing for every step: (buffer or None, views)."""
    if keep:
        buf = like.new_empty((T, *shape))
        return buf, buf.unbind(0)
    return None, [like.new_empty(shape)] * T


#: Backward passes that rebuild a (T, B, G) quantity do it in this many pieces over
#: time, so that at most 1/PIECES of such a buffer exists at once.
PIECES = 8


def multiplied_states(r, t0: int, t1: int) -> Tensor:
    """(t1 - t0, B, P): what W_hh multiplied at steps t0 … t1-1, h_{t-1} ⊙ m (h_{-1} = h_0),
    from the kept states (the GRU's ``r.hprev``, else ``r.h0`` and ``r.hbuf``)."""
    if r.mode == "GRU":
        hm = r.hprev[t0:t1]
    elif t0 == 0:
        hm = torch.cat((r.h0.unsqueeze(0), r.hbuf[: t1 - 1]))
    else:
        hm = r.hbuf[t0 - 1 : t1 - 1]
    return hm if r.drop is None else hm * r.drop


def stack_stats(means: list, rstds: list):
    """Per-step layer-norm statistics, stacked to (T, B, 1) each."""
    return torch.stack(means), torch.stack(rstds)


class Recurrent:
    r"""The recurrent share of the gates, :math:`\mathrm{LN}((h \odot m) W_{hh}^T)`, one
    step at a time, and its gradient.

    Forward keeps the layer norm's input ``pre`` (T, B, G) and statistics when layer
    norm is on (or the statistics only, ``keep_pre=False``, for a backward that
    recomputes the products); backward keeps ∂L/∂pre in ``dpre`` for the weight gradient
    after the loop (or, with :meth:`scratch_dpres`, only one step's at a time).

    The per-step views ``pres``, ``means``, ``rstds`` and ``dpres`` of those buffers are
    made on first use (the compiled CPU loops never use them: T views each, a step).
    """

    _VIEWS = {"pres": "pre", "means": "mean", "rstds": "rstd", "dpres": "dpre"}

    def __getattr__(self, name: str):  # only for what is not set: a view not made yet
        source = Recurrent._VIEWS.get(name)
        if source is None:
            raise AttributeError(name)
        buffer = getattr(self, source)
        views = None if buffer is None else buffer.unbind(0)
        setattr(self, name, views)
        return views

    def _drop_views(self, *names: str) -> None:
        for name in names:
            self.__dict__.pop(name, None)

    def __init__(self, w_hh: Tensor, gain: Optional[Tensor], drop: Optional[Tensor],
                 pre=None, mean=None, rstd=None) -> None:
        self.w_hh, self.gain, self.drop = w_hh, gain, drop
        self.pre, self.mean, self.rstd = pre, mean, rstd
        self.back: Optional[Fixed] = None

    def start_forward(self, like: Tensor, keep: bool, bias: Optional[Tensor] = None,
                      keep_pre: Optional[bool] = None) -> None:
        T, B = like.shape[:2]
        G, P = self.w_hh.shape
        self.prod = Fixed(self.w_hh, B, T)  # (h ⊙ m) ↦ (h ⊙ m) W_hh^T, (B, P) -> (B, G)
        self.bias = bias
        self.hm = None if self.drop is None else like.new_empty(B, P)
        self.out = like.new_empty(B, G)
        self.means, self.rstds = [], []
        if self.gain is not None:
            if keep if keep_pre is None else keep_pre:
                self.pre = like.new_empty(T, B, G)
                self._drop_views("pres")
            else:
                self.pre, self.pres = None, [like.new_empty(B, G)] * T

    def _masked(self, h: Tensor) -> Tensor:
        return h if self.drop is None else torch.mul(h, self.drop, out=self.hm)

    def add_(self, a: Tensor, h: Tensor, t: int) -> None:
        """``a += LN((h ⊙ m) W_hh^T)`` in place (LSTM and RNN: ``b_hh`` is already in ``a``)."""
        if self.gain is None:
            self.prod.add_to(a, self._masked(h))
            return
        pre = self.prod.into(self._masked(h), self.pres[t])
        out, mean, rstd = ln(pre, self.gain)
        self.means.append(mean)
        self.rstds.append(rstd)
        a.add_(out)

    def gates(self, h: Tensor, t: int) -> Tensor:
        """``LN((h ⊙ m) W_hh^T) + b_hh`` (B, G) (GRU), valid until the next step's call."""
        if self.gain is None:
            out = self.prod.into(self._masked(h), self.out)
            return out if self.bias is None else out.add_(self.bias)
        pre = self.prod.into(self._masked(h), self.pres[t])
        out, mean, rstd = ln(pre, self.gain, self.bias)
        self.means.append(mean)
        self.rstds.append(rstd)
        return out

    def finish_forward(self) -> None:
        if self.means:
            self.mean, self.rstd = torch.stack(self.means), torch.stack(self.rstds)
        self.means = self.rstds = self.out = self.hm = None

    def backward_product(self, rows: int) -> Fixed:
        """δ ↦ δ W_hh, (rows, G) -> (rows, P): the product of each backward step."""
        if self.back is None:
            self.back = Fixed(self.w_hh.t(), rows, self.steps)
        return self.back

    def start_backward(self, steps: int) -> None:
        self.back, self.steps = None, steps
        self.dpre = self.dpres = None
        self._drop_views("pres", "means", "rstds")

    def keep_dpre(self) -> Tensor:
        """The (T, B, G) buffer for ∂L/∂pre of every step (the torch and CPU loops)."""
        if self.dpre is None:
            self.dpre = torch.empty_like(self.pre)
            self._drop_views("dpres")
        return self.dpre

    def scratch_dpres(self, rows: int) -> list:
        """One (rows, G) buffer standing for every step's ∂L/∂pre, for loops that use it
        only for the step's own product (the Triton kernels): ``dpre`` stays None and
        the weight gradients recompute it a few steps at a time (``fused.py``), so the
        backward's peak holds one (T, B, G) buffer less."""
        return [self.pre.new_empty(rows, self.pre.shape[-1])] * self.pre.shape[0]

    def grad(self, d: Tensor, t: int, direct: Optional[Tensor]) -> Tensor:
        """∂L/∂h_{t-1}: ``direct`` plus the share through the product, given ``d`` =
        ∂L/∂(the LN output). ``direct`` (a fresh tensor, or None) is updated in place."""
        if self.gain is not None:
            d = ln_backward(d, self.pres[t], self.means[t], self.rstds[t], self.gain)[0]
            self.keep_dpre()
            self.dpres[t].copy_(d)
        back = self.backward_product(d.shape[0])
        if self.drop is None:
            return back(d) if direct is None else back.add_to(direct, d)
        dh = back(d)
        return dh.mul_(self.drop) if direct is None else direct.addcmul_(dh, self.drop)
