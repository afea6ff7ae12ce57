"""Freed heap memory is kept for reuse once the CPU kernels load or the native backend
runs on the CPU (glibc only)."""

import os
import platform
import subprocess
import sys

import pytest

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")

# A process that allocates three 20 MiB blocks and frees them, as a training step does
# with its buffers, five times over, and prints the page faults of the last time.
_PROBE = """
import resource, torch
from rnnkit.backends import _heap
print(_heap.keep_freed_memory())
for step in range(5):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [torch.ones(5 << 20) for _ in range(3)]
    del blocks
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _probe(env: dict) -> tuple[str, int]:
    r = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                       env={**os.environ, **env}, timeout=120)
    assert r.returncode == 0, r.stderr
    kept, faults = r.stdout.split()
    return kept, int(faults)


@glibc
def test_memory_freed_by_one_step_is_reused_by_the_next_without_faulting_it_in():
    kept, faults = _probe({})
    assert kept == "True" and faults < 1000  # 60 MiB is 15,360 pages
    # glibc as it is gave the freed top of its heap back, here two blocks of three at
    # most steps (not all: it depends on where the blocks fell)
    assert _probe({"RNNKIT_KEEP_HEAP": "0"})[0] == "False"


def _set_by(action: str) -> list[str]:
    """In a fresh process: what ``action`` printed, then whether the setting had been
    made before it ran and whether after (the calls cached: 0 or 1)."""
    code = ("import torch, rnnkit\n"
            "from rnnkit.backends import _cpu_kernels, _heap\n"
            "made = lambda: _heap.keep_freed_memory.cache_info().currsize\n"
            f"before = made()\n{action}\nprint(before, made())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


@glibc
def test_the_kernels_set_it_when_they_load():
    built, before, after = _set_by("print(_cpu_kernels.library(torch.float32) is not None)")
    if built != "True":
        pytest.skip("no C compiler: the kernels cannot be built here")
    assert (before, after) == ("0", "1")


@glibc
def test_the_native_backend_sets_it_on_the_cpu():
    assert _set_by("rnnkit.LSTM(3, 4, backend='native')(torch.randn(2, 1, 3))") == ["0", "1"]
