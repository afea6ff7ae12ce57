"""Labelled texts from CSV, TSV, JSON lines and class folders, and the stratified split."""

import json
from collections import Counter
from pathlib import Path

import pytest

from rnnkit.data.tables import (
    Example,
    check_classes,
    read_examples,
    split_examples,
    texts_of,
)

FIXTURE = Path(__file__).parent / "fixtures" / "classify" / "reviews.csv"
ROWS = [("très bien, merci", "pos"), ("안녕하세요 🙂", "neg"), ("line one\nline two", "pos")]


def write_table(path: Path, rows=ROWS, text="text", label="label"):
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps({text: t, label: lab}, ensure_ascii=False) + "\n"
                                for t, lab in rows), encoding="utf-8")
    else:
        sep = "," if path.suffix == ".csv" else "\t"
        quote = lambda s: '"' + s.replace('"', '""') + '"'
        path.write_text(f"{text}{sep}{label}\n" + "".join(f"{quote(t)}{sep}{quote(lab)}\n"
                                                          for t, lab in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_each_format_reads_the_same_examples(tmp_path, suffix):
    path = write_table(tmp_path / f"data{suffix}", text="body", label="class")
    assert read_examples(path, "body", "class") == [Example(t, lab) for t, lab in ROWS]


def test_fixture_columns_quotes_and_multibyte():
    examples = read_examples(FIXTURE, "review", "sentiment")
    assert len(examples) == 180
    assert Counter(e.label for e in examples) == {"good": 60, "bad": 60, "so-so, 그저 그래": 60}
    assert examples[0].text.endswith('really, "quoted", and\na second line')


def test_jsonl_labels_that_are_numbers_or_booleans_become_text(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": 1}\n\n{"text": "b", "label": true}\n')
    assert read_examples(path) == [Example("a", "1"), Example("b", "true")]


def test_folder_per_class(tmp_path):
    for label, texts in {"spam": ["buy now", "cheap"], "ham": ["lunch?"]}.items():
        (tmp_path / label).mkdir()
        for i, t in enumerate(texts):
            (tmp_path / label / f"{i}.txt").write_text(t)
    (tmp_path / "spam" / ".hidden").write_text("skipped")
    assert read_examples(tmp_path) == [Example("lunch?", "ham"), Example("buy now", "spam"),
                                       Example("cheap", "spam")]


def test_texts_of_a_plain_file_and_a_table(tmp_path):
    plain = tmp_path / "in.txt"
    plain.write_text("first text\n\n  \nsecond\n")
    assert texts_of(plain) == ["first text", "second"]
    assert texts_of(FIXTURE, "review")[1] == "최악 film 🙂 🙂 film"


ERRORS = {
    "missing column": ("d.csv", "text,sentiment\nhello,pos\n", "no label column 'label'"),
    "empty label": ("d.csv", "text,label\nhello,pos\nbye, \n", "line 3: empty label"),
    "empty text": ("d.tsv", "text\tlabel\n\tpos\n", "line 2: empty text"),
    "extra field": ("d.csv", "text,label\na,b,c\n", "line 2: 3 fields, the header names 2"),
    "not json": ("d.jsonl", '{"text": "a", "label": "b"}\n{oops\n', "line 2: not JSON"),
    "json list": ("d.jsonl", '["a", "b"]\n', "line 1: expected a JSON object"),
    "json null label": ("d.jsonl", '{"text": "a", "label": null}\n', "is null, expected a string"),
    "unknown format": ("d.xlsx", "x", "unknown format '.xlsx'"),
    "empty file": ("d.csv", "", "is empty"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_bad_file_is_one_line_naming_it(tmp_path, case):
    name, content, fragment = ERRORS[case]
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError) as e:
        read_examples(path)
    assert fragment in str(e.value) and str(path) in str(e.value)
    assert "\n" not in str(e.value)


def test_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="has no subfolders"):
        read_examples(tmp_path)
    (tmp_path / "a").mkdir()
    with pytest.raises(ValueError, match="holds no files"):
        read_examples(tmp_path)
    (tmp_path / "loose.txt").write_text("x")
    with pytest.raises(ValueError, match="outside any class subfolder"):
        read_examples(tmp_path)


def test_one_class_only_is_refused():
    with pytest.raises(ValueError, match="every example has the label 'pos'; .* at least two"):
        check_classes([Example("a", "pos"), Example("b", "pos")], "d.csv")
    assert check_classes([Example("a", "b"), Example("c", "a")], "x") == ["a", "b"]


def test_split_is_stratified_disjoint_and_repeatable():
    examples = read_examples(FIXTURE, "review", "sentiment")
    splits = split_examples(examples, 0.1, 0.2, seed=3)
    assert {s: len(v) for s, v in splits.items()} == {"train": 126, "valid": 18, "test": 36}
    for split, per_class in (("valid", 6), ("test", 12)):
        assert set(Counter(e.label for e in splits[split]).values()) == {per_class}
    # every example lands in exactly one split (the fixture's examples are all distinct)
    assert sorted(sum(splits.values(), [])) == sorted(examples)
    assert split_examples(examples, 0.1, 0.2, seed=3) == splits
    assert split_examples(examples, 0.1, 0.2, seed=4)["test"] != splits["test"]
    # each split keeps the file's order
    position = {e: i for i, e in enumerate(examples)}
    assert [position[e] for e in splits["train"]] == sorted(position[e] for e in splits["train"])


def test_folds_test_every_example_once_and_fold_0_is_the_plain_split():
    examples = read_examples(FIXTURE, "review", "sentiment")
    assert split_examples(examples, 0.1, 0.2, seed=3, fold=0) == \
        split_examples(examples, 0.1, 0.2, seed=3)
    tested = []
    for fold in range(5):
        splits = split_examples(examples, 0.1, 0.2, seed=3, fold=fold)
        assert {s: len(v) for s, v in splits.items()} == {"train": 126, "valid": 18,
                                                          "test": 36}
        assert sorted(sum(splits.values(), [])) == sorted(examples)
        # the validation slice is the one after the test slice: the next fold's test
        following = split_examples(examples, 0.1, 0.2, seed=3, fold=(fold + 1) % 5)
        assert set(splits["valid"]) < set(following["test"])
        tested += splits["test"]
    assert sorted(tested) == sorted(examples)
    for fold in (-1, 5):
        with pytest.raises(ValueError, match=f"fold must be in 0 … 4 .* got {fold}"):
            split_examples(examples, 0.1, 0.2, seed=3, fold=fold)


def test_split_fractions_must_leave_training_examples():
    with pytest.raises(ValueError, match="must be < 1"):
        split_examples([Example("a", "b")], 0.5, 0.5, seed=0)
