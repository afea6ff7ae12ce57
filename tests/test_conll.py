"""Readers of tagged files (CoNLL, CoNLL-U, word/TAG) on hand-written fixtures, and their
one-line errors naming the file and the line."""

from pathlib import Path

import pytest

from rnnkit.data.conll import (
    detect_format,
    parse_conll,
    parse_conllu,
    parse_word_tag,
    read_tagged,
)

FIXTURES = Path(__file__).parent / "fixtures" / "tag"


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
