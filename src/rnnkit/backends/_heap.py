"""Keeping freed heap memory for reuse (glibc, CPU training).

A training step allocates and frees the same large buffers at every iteration. glibc
hands the free top of its heap back to the system once it exceeds a threshold (twice
the largest block it has freed from ``mmap``, so some tens of MiB), and blocks above
another (from 128 KiB up) come from ``mmap`` and go back on ``free``; either way the
next iteration faults every page in again, at ~1.3 µs per 4 KiB page on the benchmark
machine. Whether that happens depended on how earlier allocations had split the heap:
the regularised LSTM's training step took 116 ms or 150 ms (26,000 page faults) in the
same process depending on what ran before it.

:func:`keep_freed_memory`, called when the fused backend's CPU kernels first load and
when the native backend first runs on the CPU, sets both thresholds once (``mallopt``):
blocks of up to 32 MiB come from the heap, and freed memory stays with the process for
reuse, as caching allocators (jemalloc, tcmalloc, PyTorch's own on the GPU) keep it.
The process's resident memory then stays near its peak instead of shrinking between
steps. ``RNNKIT_KEEP_HEAP=0`` leaves glibc as it is; other C libraries are left alone.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
from functools import lru_cache

log = logging.getLogger(__name__)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: glibc's largest mmap threshold on 64-bit systems; larger blocks are always mapped.
MMAP_THRESHOLD = 32 << 20
#: Free memory at the heap's top kept rather than returned to the system.
TRIM_THRESHOLD = 1 << 30


@lru_cache(maxsize=None)
def keep_freed_memory() -> bool:
    """Set glibc's thresholds once; True where they were set."""
    if os.environ.get("RNNKIT_KEEP_HEAP", "1") == "0" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    log.debug("glibc keeps freed memory for reuse: %s", done)
    return done
