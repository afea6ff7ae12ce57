r"""Pieces of the Triton kernels (``_triton_{lstm,gru,rnn}.py``): one time step's
pointwise work for each cell, forward and backward.

Each program takes a block of BLOCK_B batch rows and, per gate, a (BLOCK_B, BLOCK_H)
tile of them (BLOCK_H the next power of two above H, masked past it), so a row's layer
norm over all G·H gate units is a sum over its G tiles. Values are loaded in the
tensors' dtype and computed in float32. Every pointer is one time step's (B, ·) slice,
row-major; per-row statistics are (B,). Flags in capitals are compile-time: an option
that is off costs nothing. Settle weights (zoneout and lengths, see ``_fused_common``):
``SETTLE`` 0 off, 1 a scalar, 2 a (B, H) tile or, with ``COLS`` 0, one weight per row.

Backward takes ``q``, the last backward product (the gradient of h_t before the dropout
mask m), and ``carry``, the direct share of h_t's gradient from step t+1 (zoneout, the
length mask, the GRU's z h), and computes

.. math::
    g = q \odot m + carry + \delta y_t, \qquad
    g_{prev} = g \odot w_t, \quad \delta h' = g - g_{prev}

then the cell's gate gradients from δh', writing the next ``carry`` in place.
"""

import triton
import triton.language as tl


@triton.jit
def sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def tanh(x):
    e = tl.exp(-2.0 * tl.abs(x))  # no overflow for large |x|; NaN stays NaN
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -t, t)


@triton.jit
def load(ptr, offs, mask):
    return tl.load(ptr + offs, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def store(ptr, offs, x, mask):
    tl.store(ptr + offs, x.to(ptr.dtype.element_ty), mask=mask)


@triton.jit
def accumulate(ptr, offs, x, mask):
    """``ptr[offs] += x``, float32: a sum over the steps, each program its own rows."""
    tl.store(ptr + offs, tl.load(ptr + offs, mask=mask, other=0.0) + x, mask=mask)


@triton.jit
def gain(ptr, k, H, cols):
    """Gate k's slice of a (G·H) layer-norm gain or bias, as a (1, BLOCK_H) row."""
    return tl.load(ptr + k * H + cols, mask=cols < H, other=0.0).to(tl.float32)[None, :]


@triton.jit
def centred_sq(x, mean, mask):
    d = tl.where(mask, x - mean[:, None], 0.0)
    return tl.sum(d * d, 1)


@triton.jit
def normed(x, mean, rstd):
    return (x - mean[:, None]) * rstd[:, None]


@triton.jit
def ln_sums(d, x, g, mean, rstd):
    """One tile of a layer norm's backward: (d·gain, x̂, Σ d·gain, Σ d·gain·x̂) per row."""
    gd = d * g
    xhat = normed(x, mean, rstd)
    return gd, xhat, tl.sum(gd, 1), tl.sum(gd * xhat, 1)


@triton.jit
def ln_dx(gd, xhat, a, b, rstd, n):
    """∂L/∂x of one tile from :func:`ln_sums` summed over the row's tiles."""
    return rstd[:, None] * (gd - (a / n)[:, None] - xhat * (b / n)[:, None])


@triton.jit
def settle_weight(w_ptr, w_s, rows, cols, mask, H, SETTLE: tl.constexpr, COLS: tl.constexpr):
    if SETTLE == 2:
        if COLS:
            w = load(w_ptr, rows[:, None] * H + cols[None, :], mask)
        else:  # one weight per row
            w = load(w_ptr, rows[:, None] + cols[None, :] * 0, mask)
    else:
        w = w_s
    return w


@triton.jit
def gradient_in(q, carry, dy, dy_sb, dy_sh, drop, wh, wh_s, offs, rows, cols, mask, H,
                DROP: tl.constexpr, DY: tl.constexpr, SETTLE: tl.constexpr, COLS: tl.constexpr):
    """(δh', g_prev): ∂L/∂h_t split between the new state and, through the settle
    weight, the previous one (zero when nothing settles). ``dy`` is read through its
    strides (``dy_sb`` between rows, ``dy_sh`` between columns), so the gradient of a
    sum (all strides 0) or of a batch-first output needs no contiguous copy."""
    g = load(q, offs, mask)
    if DROP:
        g *= load(drop, offs, mask)
    g += load(carry, offs, mask)
    if DY:
        g += load(dy, rows[:, None] * dy_sb + cols[None, :] * dy_sh, mask)
    if SETTLE:
        gp = g * settle_weight(wh, wh_s, rows, cols, mask, H, SETTLE, COLS)
    else:
        gp = g * 0.0
    return g - gp, gp
