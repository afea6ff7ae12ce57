"""Labelled texts from a user's files: CSV, TSV, JSON lines, or a folder per class.

Every reader returns a list of :class:`Example` (a text and its label, both strings)
and refuses, with one line naming the file and the line, what a classifier cannot use:
a missing column, an empty text or label, a file that is not UTF-8. Labels are any
strings (a JSON number or boolean is read as its text: ``1`` → ``"1"``).

:func:`split_examples` cuts one list into train/validation/test by seed and ratio,
class by class (stratified), so that each split holds each class in about the same
share as the whole file.
"""

from __future__ import annotations

import csv
import json
import math
import random
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from rnnkit.data.text import read_text

FORMATS = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".jsonl": None, ".ndjson": None}


class Example(NamedTuple):
    text: str
    label: str


def read_examples(path: str | Path, text_column: str = "text",
                  label_column: str = "label") -> list[Example]:
    """The examples of ``path``: a ``.csv``/``.tsv``/``.jsonl`` file with the two named
    columns (fields), or a folder whose subfolders are the classes and hold one text
    per file."""
    path = Path(path)
    if path.is_dir():
        return read_folder(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: unknown format {suffix or '(no extension)'!r}; expected "
                         f"{', '.join(FORMATS)} or a folder with one subfolder per class")
    text = read_text(path)  # missing, empty, binary, not UTF-8: one line each
    if FORMATS[suffix] is None:
        rows = _jsonl_rows(path, text)
    else:
        rows = _delimited_rows(path, text, FORMATS[suffix])
    return [_example(path, line, row, text_column, label_column) for line, row in rows]


def texts_of(path: str | Path, text_column: str = "text") -> list[str]:
    """Texts without labels, for prediction: a ``.txt`` file gives one text a line
    (blank lines skipped); a table gives its ``text_column``."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        return [line for line in read_text(path).splitlines() if line.strip()]
    text = read_text(path)
    sep = FORMATS[path.suffix.lower()]
    rows = _jsonl_rows(path, text) if sep is None else _delimited_rows(path, text, sep)
    return [_field(path, line, row, text_column, "text") for line, row in rows]


def _delimited_rows(path: Path, text: str, sep: str):
    """(line number, row dict) of a CSV/TSV file whose first row names the columns."""
    csv.field_size_limit(max(csv.field_size_limit(), sys.maxsize >> 1))  # long emails
    reader = csv.DictReader(text.splitlines(keepends=True), delimiter=sep)
    if not reader.fieldnames:
        raise ValueError(f"{path} has no header row naming its columns")
    rows = []
    for row in reader:
        if None in row:  # more fields than the header names
            fields = len(reader.fieldnames) + len(row[None])
            raise ValueError(f"{path} line {reader.line_num}: {fields} fields, the header "
                             f"names {len(reader.fieldnames)}")
        if any(v for v in row.values()):
            rows.append((reader.line_num, row))
    return rows


def _jsonl_rows(path: Path, text: str):
    rows = []
    for line_num, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} line {line_num}: not JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path} line {line_num}: expected a JSON object, got "
                             f"{type(row).__name__}")
        rows.append((line_num, row))
    return rows


def _field(path: Path, line: int, row: dict, column: str, what: str) -> str:
    if column not in row:
        raise ValueError(f"{path} has no {what} column {column!r} (line {line}); its columns "
                         f"are: {', '.join(map(str, row))}; set --{what}-column")
    value = row[column]
    if value is None or isinstance(value, (dict, list)):
        raise ValueError(f"{path} line {line}: the {what} in column {column!r} is "
                         f"{json.dumps(value)}, expected a string")
    value = str(value).lower() if isinstance(value, bool) else str(value)
    if not value.strip():
        raise ValueError(f"{path} line {line}: empty {what} in column {column!r}")
    return value


def _example(path: Path, line: int, row: dict, text_column: str, label_column: str) -> Example:
    return Example(_field(path, line, row, text_column, "text"),
                   _field(path, line, row, label_column, "label").strip())


def read_folder(root: Path) -> list[Example]:
    """``root/<class>/<file>``: every visible regular file is one text of its folder's
    class; files directly in ``root`` are refused (they have no class)."""
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"{root} has no subfolders; a folder of examples holds one "
                         "subfolder per class, each with one text file per example")
    loose = [p.name for p in root.iterdir() if p.is_file() and not p.name.startswith(".")]
    if loose:
        raise ValueError(f"{root} holds files outside any class subfolder: {loose[0]!r}")
    examples = []
    for folder in classes:
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise ValueError(f"class folder {folder} holds no files")
        examples += [Example(read_text(f), folder.name) for f in files]
    return examples


def check_classes(examples: Sequence[Example], where: str) -> list[str]:
    """The sorted labels of ``examples``; ``ValueError`` unless there are at least two."""
    labels = sorted({e.label for e in examples})
    if len(labels) < 2:
        shown = f"the label {labels[0]!r}" if labels else "no label"
        raise ValueError(f"{where}: every example has {shown}; a classifier needs examples "
                         "of at least two classes")
    return labels


def split_examples(examples: Sequence[Example], valid: float, test: float,
                   seed: int, fold: int = 0) -> dict[str, list[Example]]:
    """Train/valid/test by ``seed``: each class's examples are shuffled and
    ``round(n · valid)`` of them validate, ``round(n · test)`` test, the rest train. Each
    split keeps the file's order.

    ``fold`` picks which slice of each shuffled class tests, for cross-validation: fold
    k tests positions ``round(n · test · k)`` up to ``round(n · test · (k + 1))`` and
    validates on the slice after it (wrapping round), so folds 0 … ⌈1/test⌉ − 1 test
    every example once (fold 0 is the split without folds)."""
    if valid + test >= 1:
        raise ValueError(f"valid_fraction + test_fraction must be < 1 (some examples must "
                         f"be left to train on), got {valid} + {test}")
    if fold < 0 or (fold > 0 and fold * test >= 1):
        folds = math.ceil(1 / test) if test > 0 else 1
        raise ValueError(f"fold must be in 0 … {folds - 1} with test_fraction {test}, "
                         f"got {fold}")
    by_class: dict[str, list[int]] = defaultdict(list)
    for i, e in enumerate(examples):
        by_class[e.label].append(i)
    rng = random.Random(seed)
    where: dict[int, str] = {}
    for label in sorted(by_class):
        index = by_class[label]
        rng.shuffle(index)
        n = len(index)
        start, end = round(n * test * fold), min(n, round(n * test * (fold + 1)))
        n_valid = round(n * valid)
        for k, i in enumerate(index):
            after = (k - end) % n  # the position counted from the end of the test slice
            where[i] = "test" if start <= k < end else "valid" if after < n_valid else "train"
    splits: dict[str, list[Example]] = {"train": [], "valid": [], "test": []}
    for i, e in enumerate(examples):
        splits[where[i]].append(e)
    return splits
