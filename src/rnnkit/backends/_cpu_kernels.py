"""The fused backend's compiled CPU kernels: built on first use, loaded with ctypes.

The per-step pointwise work of the fused loops (``csrc/*.c``: activations, cell update,
layer norms, zoneout and length settling, and their backward), the time loops
themselves (``csrc/loop.c``) with the recurrent product of each step
(``csrc/product.c``), the softmax cross-entropy of :mod:`rnnkit.losses`
(``csrc/xent.c``) and the random masks of :mod:`rnnkit.layers.dropout` (``csrc/mask.c``)
are plain C compiled by the system's C compiler into
``$RNNKIT_CACHE/kernels/<key>/`` (default ``~/.cache/rnnkit``), once per source,
compiler and CPU, for float32 and float64. Where no compiler is found or the build
fails, the fused backend keeps its torch-only loops (the same function, slower) and says
so once in the log. ``RNNKIT_CPU_KERNELS=0`` turns the kernels off.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Optional

import torch

from rnnkit.backends._heap import keep_freed_memory
from rnnkit.data.cache import cache_dir

log = logging.getLogger(__name__)
SOURCES = Path(__file__).with_name("csrc")
FLAGS = ("-O3", "-std=c11", "-fPIC", "-shared", "-fno-math-errno", "-fno-trapping-math")
#: OpenMP threads where the compiler has them (the runtime is the libgomp torch loaded:
#: same soname), else vectorisation pragmas only.
OPENMP = (("-fopenmp",), ("-fopenmp-simd",))
_REALS = {torch.float32: ("float", ctypes.c_float), torch.float64: ("double", ctypes.c_double)}


def enabled() -> bool:
    return os.environ.get("RNNKIT_CPU_KERNELS", "1") != "0"


def usable(*tensors: Optional[torch.Tensor]) -> bool:
    """True when the kernels can take these tensors: CPU, float32 or float64, one dtype,
    and the library builds."""
    present = [t for t in tensors if t is not None]
    if not enabled() or not present:
        return False
    dtype = present[0].dtype
    return (dtype in _REALS and all(t.device.type == "cpu" and t.dtype == dtype for t in present)
            and library(present[0].dtype) is not None)


def _compiler() -> Optional[str]:
    return next((c for c in (os.environ.get("CC"), "cc", "gcc", "clang") if c and shutil.which(c)),
                None)


def _cpu_tag() -> str:
    """What the code is built for: -march=native makes it specific to this CPU."""
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()} {flags}"


def _native_flag(cc: str) -> list[str]:
    """-march=native where the compiler accepts it (gcc and clang on x86 and ARM)."""
    probe = subprocess.run([cc, "-march=native", "-E", "-x", "c", os.devnull],
                           capture_output=True)
    return ["-march=native"] if probe.returncode == 0 else []


@lru_cache(maxsize=None)
def library(dtype: torch.dtype) -> Optional[ctypes.CDLL]:
    """The kernels for ``dtype``, compiled if needed; None if they cannot be built."""
    if not enabled() or dtype not in _REALS or sys.platform == "win32":
        return None
    cc = _compiler()
    if cc is None:
        log.warning("no C compiler found: the fused backend runs without its CPU kernels "
                    "(slower, same results); install gcc or clang to build them")
        return None
    real = _REALS[dtype][0]
    sources = sorted(SOURCES.glob("*.c"))
    headers = sorted(SOURCES.glob("*.h"))
    error = b""
    for openmp in OPENMP:
        flags = [*FLAGS, *openmp, *_native_flag(cc)] + (["-DRNNKIT_DOUBLE"] if real == "double"
                                                         else [])
        key = hashlib.sha256()
        for part in (cc, *flags, _cpu_tag(), *(s.read_bytes() for s in sources + headers)):
            key.update(part if isinstance(part, bytes) else part.encode())
        target = cache_dir() / "kernels" / key.hexdigest()[:16] / f"rnnkit_{real}.so"
        try:
            if not target.exists():
                _build(cc, flags, sources, target)
            lib = ctypes.CDLL(str(target))
            break
        except (OSError, subprocess.CalledProcessError) as e:
            error = getattr(e, "stderr", b"") or str(e).encode()
    else:
        log.warning("building the fused backend's CPU kernels failed, running without "
                    "them (slower, same results): %s",
                    " ".join(error.decode(errors="replace").strip().splitlines()[-1:]))
        return None
    run, p, i64 = ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64
    for cell in ("lstm", "gru", "rnn"):
        _declare(lib, f"{cell}_forward", (run, p, i64, p, p))
        _declare(lib, f"{cell}_backward", (run, p, p, p, p))
    _declare(lib, "rnnkit_pack", (p, i64, i64, i64, p, i64))
    for name in ("rnnkit_product", "rnnkit_product_rows"):
        _declare(lib, name, (p, i64, i64, i64, p, i64, p, i64, i64))
    _declare(lib, "rnnkit_activation", (p, i64, i64))
    _declare(lib, "rnnkit_keep_mask", (ctypes.c_uint64, i64, i64, p, i64))
    _declare(lib, "xent_forward", (p, p, i64, i64, i64, p, p, i64))
    _declare(lib, "xent_backward", (p, p, p, p, i64, i64, i64, i64, p, i64))
    if real == "float":
        _declare(lib, "xent_forward_bf16", (p, p, i64, i64, i64, p, p, p, i64))
        _declare(lib, "xent_backward_bf16", (p, p, p, p, i64, i64, i64, i64, p, p, i64))
    for name in ("rnnkit_run_size", "rnnkit_panel_width"):
        getattr(lib, name).restype, getattr(lib, name).argtypes = i64, ()
    keep_freed_memory()  # the loops' buffers are reused, not faulted in at every step
    return lib


def _declare(lib: ctypes.CDLL, name: str, args: tuple) -> None:
    getattr(lib, name).restype = None
    getattr(lib, name).argtypes = args


def _build(cc: str, flags: list[str], sources: list[Path], target: Path) -> None:
    """Compile into a temporary file beside ``target``, then move it in (atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run([cc, *flags, "-o", tmp, *map(str, sources), "-lm"], check=True,
                       capture_output=True)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@lru_cache(maxsize=None)
def struct_for(fields: tuple[str, ...], ints: tuple[str, ...], floats: tuple[str, ...],
               dtype: torch.dtype):
    """A ctypes Structure: pointers named ``fields`` (untyped: the C side gives them
    ``dtype``'s type), then int64 ``ints``, then doubles."""
    layout = ([(f, ctypes.c_void_p) for f in fields] + [(i, ctypes.c_int64) for i in ints]
              + [(d, ctypes.c_double) for d in floats])
    return type(f"run_{_REALS[dtype][0]}", (ctypes.Structure,), {"_fields_": layout})


def address(t: Optional[torch.Tensor]) -> Optional[int]:
    """A contiguous tensor's data address (None, NULL to C, for None)."""
    if t is None:
        return None
    if not t.is_contiguous():  # the kernels index raw memory row by row
        raise RuntimeError(f"a CPU kernel argument of shape {tuple(t.shape)} is not contiguous")
    return t.data_ptr()
