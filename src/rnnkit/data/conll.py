"""Tagged sentences from files: CoNLL columns, CoNLL-U and ``word/TAG`` text.

Every reader returns a list of sentences, each a list of ``(word, tag)`` pairs, and
refuses a malformed line with a one-line ``ValueError`` that names the file and the line
number (``train.conll:12: expected 4 columns like the lines before, got 3``).

- **CoNLL** (CoNLL-2000 chunking, CoNLL-2003 NER and the like): one token a line, columns
  separated by white space, a blank line between sentences, ``-DOCSTART-`` lines skipped.
  The word is column ``word_column`` (default the first), the tag ``tag_column`` (default
  the last); every token line of a file has the same number of columns.
- **CoNLL-U** (Universal Dependencies, https://universaldependencies.org/format.html):
  ten tab-separated fields a line, ``#`` comments, a blank line between sentences.
  Multiword-token lines (``1-2``) and empty nodes (``8.1``) are skipped: the tags belong
  to the syntactic words. The tag is ``UPOS`` (default) or ``XPOS``.
- **word/TAG**: one sentence a line, tokens separated by white space, each split on its
  last ``/`` (so ``1/2/CD`` is the word ``1/2``), as in the Brown corpus.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

__all__ = ["FORMATS", "detect_format", "parse_conll", "parse_conllu", "parse_word_tag",
           "read_tagged", "split_sentences"]

Sentence = list[tuple[str, str]]
FORMATS = ("conll", "conllu", "wordtag")
CONLLU_FIELDS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps",
                 "misc")
SUFFIXES = {".conllu": "conllu", ".conll": "conll", ".iob": "conll", ".bio": "conll",
            ".iob2": "conll", ".tsv": "conll"}


def parse_conll(lines: Iterable[str], source: str, *, word_column: int = 0,
                tag_column: int = -1) -> list[Sentence]:
    """Sentences of CoNLL column lines; ``source`` names them in errors."""
    sentences: list[Sentence] = []
    current: Sentence = []
    width = None  # the number of columns, set by the first token line
    for lineno, line in enumerate(lines, 1):
        columns = line.split()
        if not columns:
            if current:
                sentences.append(current)
                current = []
            continue
        if columns[0] == "-DOCSTART-":
            continue
        if width is None:
            width = len(columns)
            if width < 2:
                raise ValueError(f"{source}:{lineno}: expected a word and a tag separated by "
                                 f"white space, got {line.strip()!r}")
            for name, index in (("word_column", word_column), ("tag_column", tag_column)):
                if not -width <= index < width:
                    raise ValueError(f"{source}:{lineno}: {name} {index} is out of range for "
                                     f"{width} columns")
        elif len(columns) != width:
            raise ValueError(f"{source}:{lineno}: expected {width} columns like the lines "
                             f"before, got {len(columns)}: {line.strip()!r}")
        current.append((columns[word_column], columns[tag_column]))
    if current:
        sentences.append(current)
    return sentences


def parse_conllu(lines: Iterable[str], source: str, *,
                 tag: Literal["upos", "xpos"] = "upos") -> list[Sentence]:
    """Sentences of CoNLL-U lines, tagged with their UPOS (or XPOS) field."""
    if tag not in ("upos", "xpos"):
        raise ValueError(f"tag must be 'upos' or 'xpos', got {tag!r}")
    column = CONLLU_FIELDS.index(tag)
    sentences: list[Sentence] = []
    current: Sentence = []
    for lineno, line in enumerate(lines, 1):
        line = line.rstrip("\r\n")
        if not line.strip():
            if current:
                sentences.append(current)
                current = []
            continue
        if line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != len(CONLLU_FIELDS):
            raise ValueError(f"{source}:{lineno}: expected 10 tab-separated fields, got "
                             f"{len(fields)}: {_clip(line)!r}")
        token_id = fields[0]
        if "-" in token_id or "." in token_id:  # a multiword token or an empty node
            continue
        if not token_id.isdigit() or int(token_id) != len(current) + 1:
            raise ValueError(f"{source}:{lineno}: expected word id {len(current) + 1}, got "
                             f"{token_id!r}")
        if fields[column] in ("", "_"):
            raise ValueError(f"{source}:{lineno}: the word {fields[1]!r} has no "
                             f"{tag.upper()} tag")
        current.append((fields[1], fields[column]))
    if current:
        sentences.append(current)
    return sentences


def parse_word_tag(lines: Iterable[str], source: str) -> list[Sentence]:
    """Sentences of ``word/TAG`` lines, one sentence a line."""
    sentences = []
    for lineno, line in enumerate(lines, 1):
        tokens = line.split()
        if not tokens:
            continue
        sentence = []
        for token in tokens:
            word, slash, tag = token.rpartition("/")
            if not (word and slash and tag):
                raise ValueError(f"{source}:{lineno}: {token!r} is not word/TAG")
            sentence.append((word, tag))
        sentences.append(sentence)
    return sentences


def detect_format(path: str | Path, lines: list[str] | None = None) -> str:
    """``conllu``, ``conll`` or ``wordtag``: by the suffix, else by the first lines."""
    path = Path(path)
    if path.suffix.lower() in SUFFIXES:
        return SUFFIXES[path.suffix.lower()]
    lines = _read_lines(path) if lines is None else lines
    first = next((line for line in lines if line.strip()), "")
    fields = first.rstrip("\r\n").split("\t")
    if first.startswith("#") or (len(fields) == 10 and fields[0].split("-")[0].isdigit()):
        return "conllu"
    tokens = first.split()
    if len(tokens) >= 2 and all("/" in t[1:] for t in tokens):
        return "wordtag"
    if len(tokens) >= 2:
        return "conll"
    raise ValueError(f"{path}: cannot tell its format from its first line {_clip(first)!r}; "
                     f"set data.format to one of {', '.join(FORMATS)}")


def read_tagged(path: str | Path, format: str = "auto", **options) -> list[Sentence]:
    """The tagged sentences of a file in ``format`` (``auto``: :func:`detect_format`);
    ``options`` go to the parser (``word_column``, ``tag_column`` or ``tag``)."""
    path = Path(path)
    lines = _read_lines(path)
    if format == "auto":
        format = detect_format(path, lines)
    parsers = {"conll": parse_conll, "conllu": parse_conllu, "wordtag": parse_word_tag}
    if format not in parsers:
        raise ValueError(f"format must be 'auto' or one of {', '.join(FORMATS)}, got {format!r}")
    sentences = parsers[format](lines, str(path), **options)
    if not sentences:
        raise ValueError(f"{path} holds no tagged sentence")
    return sentences


def split_sentences(sentences: Sequence[Sentence], *, seed: int, valid_fraction: float,
                    test_fraction: float) -> dict[str, list[Sentence]]:
    """``{"train", "valid", "test"}``: the sentences shuffled with ``seed`` (the same
    split for the same seed on every machine: Python's own generator, not torch's) and
    cut by the fractions; validation and test get at least one sentence each when the
    fraction is above zero."""
    if not (0 <= valid_fraction < 1 and 0 <= test_fraction < 1
            and valid_fraction + test_fraction < 1):
        raise ValueError(f"valid_fraction and test_fraction must be in [0, 1) and leave some "
                         f"sentences to train on, got {valid_fraction} and {test_fraction}")
    order = list(range(len(sentences)))
    random.Random(seed).shuffle(order)
    n_valid = max(1, round(valid_fraction * len(order))) if valid_fraction else 0
    n_test = max(1, round(test_fraction * len(order))) if test_fraction else 0
    if n_valid + n_test >= len(order):
        raise ValueError(f"{len(order)} sentences are too few to hold out {n_valid} for "
                         f"validation and {n_test} for test and still train")
    picked = [sentences[i] for i in order]
    return {"test": picked[:n_test], "valid": picked[n_test : n_test + n_valid],
            "train": picked[n_test + n_valid :]}


def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        raise ValueError(f"no such file: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a directory; give a tagged text file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: not UTF-8 text ({e.reason})") from None
    # split on line feeds only: str.splitlines would also break at \x1c, \u2028 and
    # other separators, and the line numbers in errors would no longer be the editor's
    return [line.rstrip("\r") for line in text.split("\n")]


def _clip(text: str, n: int = 60) -> str:
    text = text.strip()
    return text if len(text) <= n else text[: n - 1] + "…"
