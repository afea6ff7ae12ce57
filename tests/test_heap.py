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


@glibc
def test_the_kernels_set_it_when_they_load():
    code = ("import torch\n"
            "from rnnkit.backends import _cpu_kernels, _heap\n"
            "before = _heap.keep_freed_memory.cache_info().currsize\n"
            "built = _cpu_kernels.library(torch.float32) is not None\n"
            "print(before, built, _heap.keep_freed_memory.cache_info().currsize)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    before, built, after = r.stdout.split()
    if built != "True":
        pytest.skip("no C compiler: the kernels cannot be built here")
    assert (before, after) == ("0", "1")


@glibc
def test_the_native_backend_sets_it_on_the_cpu():
    code = ("import torch, rnnkit\n"
            "from rnnkit.backends import _heap\n"
            "layer = rnnkit.LSTM(3, 4, backend='native')\n"
            "before = _heap.keep_freed_memory.cache_info().currsize\n"
            "layer(torch.randn(2, 1, 3))\n"
            "print(before, _heap.keep_freed_memory.cache_info().currsize)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", "1"]
