r"""A long token sequence as B parallel streams, read in windows for truncated BPTT.

``batchify`` cuts the sequence into B equal streams, one per batch column (the tail
that does not fill a row is dropped)::

    a b c d e f g h i j k l m n o p q r s t u v w x    (N = 24, B = 4)

    ┌ a g m s ┐
    │ b h n t │   column j is stream j; row t is step t of every stream
    │ c i o u │   (L, B) = (6, 4)
    │ d j p v │
    │ e k q w │
    └ f l r x ┘

``windows`` then reads k rows at a time. The state a window ends in is the state the
next window starts from (truncated BPTT: gradients stop at the window edge, the state
does not), so the model sees each stream as one unbroken text. Targets are the inputs
shifted by one step.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple

from torch import Tensor


class Window(NamedTuple):
    inputs: Tensor  # (k, B) token ids
    targets: Tensor  # (k, B) the next token of each input
    reset: bool  # the first window of a pass: start from a zero state


def batchify(ids: Tensor, batch_size: int) -> Tensor:
    """(N,) → (N // B, B): B contiguous streams side by side."""
    L = ids.numel() // batch_size
    if L < 2:
        raise ValueError(f"{ids.numel()} tokens cannot make {batch_size} streams of at "
                         "least 2 tokens; use a longer text or a smaller batch")
    return ids[: L * batch_size].view(batch_size, L).t().contiguous()


def num_windows(streams: Tensor, bptt: int) -> int:
    """Windows in one pass over ``streams`` (L, B): the last may be shorter than ``bptt``."""
    return -(-(streams.shape[0] - 1) // bptt)


def window(streams: Tensor, bptt: int, i: int) -> Window:
    """The ``i``-th window of a pass (0-based)."""
    start = i * bptt
    k = min(bptt, streams.shape[0] - 1 - start)
    return Window(streams[start : start + k], streams[start + 1 : start + 1 + k], i == 0)


def windows(streams: Tensor, bptt: int, start: int = 0) -> Iterator[Window]:
    """Windows ``start``, ``start + 1``, … forever, pass after pass over ``streams``.

    ``start`` counts windows from the very first pass, so a run resumed at step s reads
    exactly the windows it would have read had it never stopped."""
    n = num_windows(streams, bptt)
    step = start
    while True:
        yield window(streams, bptt, step % n)
        step += 1
