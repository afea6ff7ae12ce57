"""Reading a user's text file, and cutting one text into train/validation/test."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, TypeVar

T = TypeVar("T")


def read_text(path: str | Path) -> str:
    """A UTF-8 text file's contents; ``ValueError`` naming the file if it is missing,
    empty, binary or not UTF-8."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a directory; expected a UTF-8 text file")
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    try:
        raw = path.read_bytes()
    except OSError as e:  # unreadable: permissions, a vanished mount
        raise ValueError(f"cannot read {path}: {e.strerror or e}") from None
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
    if valid + test >= 1:  # else the cut below goes negative and slices from the end
        raise ValueError(f"valid_fraction + test_fraction must be < 1 (some text must be left "
                         f"to train on), got {valid} + {test}")
    n = len(seq)
    n_test, n_valid = int(n * test), int(n * valid)
    cut = n - n_valid - n_test
    return {"train": seq[:cut], "valid": seq[cut : cut + n_valid], "test": seq[cut + n_valid :]}
