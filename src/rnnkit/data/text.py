"""Reading a user's text file, and cutting one text into train/validation/test."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, TypeVar

T = TypeVar("T")


def read_text(path: str | Path) -> str:
    """A UTF-8 text file's contents; ``ValueError`` naming the file if it is missing,
    empty, binary or not UTF-8."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    raw = path.read_bytes()
    if not raw.strip():
        raise ValueError(f"{path} is empty; expected a UTF-8 text file")
    if b"\x00" in raw[:65536]:
        raise ValueError(f"{path} looks binary (it contains NUL bytes); expected UTF-8 text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text (invalid byte at offset {e.start}); "
                         "re-encode it as UTF-8") from None
    return text.removeprefix("\ufeff")  # a byte-order mark is not part of the text


def split_contiguous(seq: Sequence[T], valid: float, test: float) -> dict[str, Sequence[T]]:
    """The first 1 - valid - test of ``seq`` trains, then validation, then test: whole
    blocks, so held-out text is never interleaved with training text."""
    n = len(seq)
    n_test, n_valid = int(n * test), int(n * valid)
    cut = n - n_valid - n_test
    return {"train": seq[:cut], "valid": seq[cut : cut + n_valid], "test": seq[cut + n_valid :]}
