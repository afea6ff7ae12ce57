"""Scores of a tagger: token accuracy (all tokens, and the tokens unseen in training),
per-tag precision, recall and F1, and for BIO tags the entity-level F1 of CoNLL-2000's
``conlleval`` (E. F. Tjong Kim Sang and S. Buchholz, CoNLL 2000).

Every function takes the gold and predicted tags as lists of sentences, each a list of
tag strings of the same length.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

Tags = Sequence[Sequence[str]]


def _pairs(gold: Tags, pred: Tags):
    if len(gold) != len(pred):
        raise ValueError(f"expected as many predicted sentences as gold ones ({len(gold)}), "
                         f"got {len(pred)}")
    for i, (g, p) in enumerate(zip(gold, pred)):
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: {len(g)} gold tags but {len(p)} predicted")
        yield from zip(g, p)


def accuracy(gold: Tags, pred: Tags, only: Sequence[Sequence[bool]] | None = None) -> float:
    """The share of tokens tagged right (among those where ``only`` is True); NaN when
    there are none."""
    pairs = list(_pairs(gold, pred))
    if only is not None:
        keep = [k for sentence in only for k in sentence]
        pairs = [pair for pair, k in zip(pairs, keep) if k]
    return sum(g == p for g, p in pairs) / len(pairs) if pairs else math.nan


def f1(tp: int, n_pred: int, n_gold: int) -> dict[str, float]:
    """Precision, recall and their harmonic mean; 0 where a count is 0."""
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    both = precision + recall
    return {"precision": precision, "recall": recall,
            "f1": 2 * precision * recall / both if both else 0.0}


def per_tag_f1(gold: Tags, pred: Tags) -> dict[str, dict[str, float]]:
    """For each tag in the gold or predicted tags: precision, recall, F1 and support
    (its gold count), tokens taken one by one."""
    tp, n_pred, n_gold = Counter(), Counter(), Counter()
    for g, p in _pairs(gold, pred):
        n_gold[g] += 1
        n_pred[p] += 1
        tp[g] += g == p
    return {tag: {**f1(tp[tag], n_pred[tag], n_gold[tag]), "support": n_gold[tag]}
            for tag in sorted(n_gold | n_pred)}


def is_bio(tags: Tags) -> bool:
    """True when every tag is ``O``, ``B-TYPE`` or ``I-TYPE`` and some tag begins with B-."""
    flat = {t for sentence in tags for t in sentence}
    return (any(t.startswith("B-") for t in flat)
            and all(t == "O" or (t[:2] in ("B-", "I-") and len(t) > 2) for t in flat))


def entities(tags: Sequence[str]) -> set[tuple[int, int, str]]:
    """The entities ``(start, end, type)`` (end exclusive) of one BIO-tagged sentence, as
    conlleval reads them: ``B-X`` begins one, and so does an ``I-X`` that does not continue
    an entity of type X (after ``O`` or another type)."""
    spans, start, kind = set(), None, None
    for i, tag in enumerate([*tags, "O"]):
        inside = tag.startswith("I-") and kind == tag[2:]
        if start is not None and not inside:
            spans.add((start, i, kind))
            start, kind = None, None
        if tag.startswith("B-") or (tag.startswith("I-") and not inside):
            start, kind = i, tag[2:]
    return spans


def entity_f1(gold: Tags, pred: Tags) -> dict[str, float]:
    """Entity-level precision, recall and F1: an entity counts when its span and its
    type both match."""
    list(_pairs(gold, pred))  # the same shapes, checked
    tp = n_pred = n_gold = 0
    for g, p in zip(gold, pred):
        g_spans, p_spans = entities(g), entities(p)
        tp += len(g_spans & p_spans)
        n_pred += len(p_spans)
        n_gold += len(g_spans)
    return f1(tp, n_pred, n_gold)


def score(gold: Tags, pred: Tags, unknown: Sequence[Sequence[bool]]) -> dict[str, Any]:
    """Everything above in one record; entity scores only for BIO tags."""
    tags = per_tag_f1(gold, pred)
    n_unknown = sum(map(sum, unknown))
    record: dict[str, Any] = {
        "accuracy": accuracy(gold, pred),
        "unknown_accuracy": accuracy(gold, pred, unknown),
        "tokens": sum(map(len, gold)), "unknown_tokens": n_unknown,
        "macro_f1": sum(t["f1"] for t in tags.values()) / len(tags) if tags else math.nan,
        "per_tag": tags,
    }
    if is_bio(gold):
        record.update({f"entity_{k}": v for k, v in entity_f1(gold, pred).items()})
    return record
