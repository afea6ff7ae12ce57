"""Sequence tagging: the scores against hand-counted values, the batches and the model
against what they must hold, and train / evaluate / predict end to end on small tagged
files (word/TAG part of speech, CoNLL BIO entities with a CRF)."""

import json
import logging
import math
import shutil
from pathlib import Path

import pytest
import torch

from rnnkit import config as configs
from rnnkit.tasks import tag_metrics as M
from rnnkit.tasks import tag_runs
from rnnkit.tasks.tag import TagConfig, build_model, tokenize
from rnnkit.tasks.tag_task import Vocabs

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "tag"
TINY = ROOT / "configs" / "tag" / "tiny.toml"
POS = FIXTURES / "toy_pos.txt"
NER = FIXTURES / "toy_ner.conll"


def tiny(*overrides):
    return configs.load(TagConfig, str(TINY), list(overrides))


# -- scores -----------------------------------------------------------------------------------

GOLD = [["DET", "NOUN", "VERB"], ["NOUN", "VERB", "ADP", "NOUN"]]
PRED = [["DET", "NOUN", "NOUN"], ["NOUN", "VERB", "ADP", "VERB"]]


def test_accuracy_overall_and_on_unknown_words():
    assert M.accuracy(GOLD, PRED) == 5 / 7
    unknown = [[False, True, True], [False, False, False, True]]
    assert M.accuracy(GOLD, PRED, unknown) == 1 / 3
    assert math.isnan(M.accuracy(GOLD, PRED, [[False] * 3, [False] * 4]))


def test_per_tag_f1_by_hand():
    scores = M.per_tag_f1(GOLD, PRED)
    # NOUN: gold 3, predicted 3, right 2; VERB: gold 2, predicted 2, right 1
    assert scores["NOUN"] == {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3}
    assert scores["VERB"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert scores["DET"]["f1"] == scores["ADP"]["f1"] == 1.0
    assert M.per_tag_f1([["A"]], [["B"]])["B"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                                   "support": 0}


def test_entities_read_as_conlleval_does():
    tags = ["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-LOC", "I-ORG", "B-PER"]
    assert M.entities(tags) == {(0, 2, "PER"), (3, 5, "LOC"), (5, 6, "LOC"), (6, 7, "ORG"),
                                (7, 8, "PER")}
    assert M.entities(["O", "O"]) == set()


def test_entity_f1_by_hand():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "O", "O", "B-LOC"], ["B-ORG", "B-LOC"]]
    # gold: PER 0-2, LOC 3, ORG 0; predicted: PER 0-1 (wrong span), LOC 3, ORG 0, LOC 1
    assert M.entity_f1(gold, pred) == {"precision": 2 / 4, "recall": 2 / 3,
                                       "f1": 2 * (1 / 2) * (2 / 3) / (1 / 2 + 2 / 3)}
    assert M.is_bio(gold) and not M.is_bio(GOLD) and not M.is_bio([["O", "I-X"], ["B-"]])
    record = M.score(gold, pred, [[False] * 4, [False] * 2])
    assert record["entity_f1"] == pytest.approx(4 / 7)
    assert "entity_f1" not in M.score(GOLD, PRED, [[False] * 3, [False] * 4])


def test_scores_refuse_mismatched_lengths():
    with pytest.raises(ValueError, match="sentence 1: 4 gold tags but 3 predicted"):
        M.accuracy(GOLD, [PRED[0], PRED[1][:3]])
    with pytest.raises(ValueError, match="as many predicted sentences"):
        M.entity_f1(GOLD, PRED[:1])


def test_tokenize():
    assert tokenize("The U.S. jury didn't say -- \"no\"... 1,000.5 times!") == [
        "The", "U.S", ".", "jury", "didn't", "say", "--", '"', "no", '"', "...", "1,000.5",
        "times", "!"]
    assert tokenize("Olá, São Paulo 🙂") == ["Olá", ",", "São", "Paulo", "🙂"]


# -- batches and the model --------------------------------------------------------------------

def vocabs_and_data():
    train = [[("The", "DET"), ("cat", "NOUN")], [("a", "DET"), ("cat", "NOUN"), ("sat", "VERB")]]
    vocabs = Vocabs.build(train, tiny(), extra_tags=["X"])
    data = vocabs.encode([["cat", "sat", "zebra"], ["The", "cat"]],
                         [["NOUN", "VERB", "X"], ["DET", "NOUN"]], max_word_length=4)
    return vocabs, data


def test_a_batch_spells_each_distinct_word_once():
    vocabs, data = vocabs_and_data()
    assert vocabs.tags == ["DET", "NOUN", "VERB", "X"]
    b = data.batch([0, 1])
    assert b.lengths.tolist() == [3, 2]
    assert b.words.tolist() == [[vocabs.words.index["cat"], vocabs.words.index["sat"], 0],
                                [vocabs.words.index["The"], vocabs.words.index["cat"], 0]]
    assert b.tags.tolist() == [[1, 2, 3], [0, 1, 0]]
    spelled = ["".join(vocabs.chars.tokens[c] for c in row[:n])
               for row, n in zip(b.chars.tolist(), b.char_lengths.tolist())]
    assert len(spelled) == 4  # cat, sat, zebra, The: "cat" once
    assert [[spelled[f] for f in row[:n]] for row, n in
            zip(b.forms.tolist(), b.lengths.tolist())] == [["cat", "sat", "<unk>e<unk><unk>"],
                                                           ["The", "cat"]]
    # z, b, r are no training character; the first max_word_length=4 characters are read
    assert b.targets.tolist() == [1, 2, 3, 0, 1]


@pytest.mark.parametrize("crf", [False, True])
def test_scores_of_a_sentence_do_not_depend_on_its_batch(crf):
    vocabs, data = vocabs_and_data()
    model = build_model(len(vocabs.words), len(vocabs.chars), len(vocabs.tags),
                        tiny(f"model.crf={crf}").model, seed=0).eval()
    both = model(data.batch([0, 1]))
    torch.testing.assert_close(both[1, :2], model(data.batch([1]))[0])
    torch.testing.assert_close(both[0], model(data.batch([0]))[0])
    tags, loss = model.predict(data.batch([0, 1]))
    assert tags[1, 2] == 0
    if crf:
        expected = model.crf(both, data.batch([0, 1]).tags, torch.tensor([3, 2]),
                             reduction="sum")
    else:
        expected = sum(-both[b, t].log_softmax(-1)[k] for b, t, k in
                       ((0, 0, 1), (0, 1, 2), (0, 2, 3), (1, 0, 0), (1, 1, 1)))
    torch.testing.assert_close(loss, expected)


def test_characters_give_unseen_words_their_own_features():
    vocabs, data = vocabs_and_data()
    model = build_model(len(vocabs.words), len(vocabs.chars), len(vocabs.tags), tiny().model,
                        seed=0).eval()
    other = vocabs.encode([["cat", "sat", "tree"]], max_word_length=4)
    a, b = model(data.batch([0]))[0, 2], model(other.batch([0]))[0, 2]
    assert not torch.allclose(a, b)  # both <unk> to the embedding, told apart by spelling
    no_chars = build_model(len(vocabs.words), len(vocabs.chars), len(vocabs.tags),
                           tiny("model.char_embedding=0").model, seed=0).eval()
    torch.testing.assert_close(no_chars(data.batch([0]))[0, 2], no_chars(other.batch([0]))[0, 2])


# -- runs end to end --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pos_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pos") / "run"
    cfg = tiny(f"data.corpus={POS}", "train.max_steps=60", "train.eval_every=30",
               "train.checkpoint_every=30")
    return out, tag_runs.train("tag", cfg, out, progress=False)


def test_train_learns_the_toy_grammar(pos_run):
    out, summary = pos_run
    assert summary["step"] == 60 and summary["tags"] == 6
    assert summary["val_accuracy"] >= 0.95
    for name in ("checkpoint.pt", "best.pt", "metrics.jsonl", "config.toml"):
        assert (out / name).is_file()


def test_evaluate_reports_accuracy_and_per_tag_f1(pos_run):
    out, _ = pos_run
    m = tag_runs.evaluate(out)
    test = tag_runs.load_splits(tag_runs.load_run(out)[0])["test"]  # 24 of 240 sentences
    assert len(test) == 24
    assert m["split"] == "test" and m["tokens"] == sum(map(len, test))
    assert m["test_accuracy"] >= 0.95 and m["test_loss"] < 0.5
    assert set(m["per_tag"]) == {"DET", "ADJ", "NOUN", "VERB", "ADP", "."}
    assert m["per_tag"]["."]["f1"] == 1.0
    assert "test_entity_f1" not in m
    on_file = tag_runs.evaluate(out, str(POS))
    assert on_file["tokens"] == sum(len(line.split()) for line in POS.read_text().splitlines())


def test_predict_tags_raw_text(pos_run, caplog):
    out, _ = pos_run
    tagged = tag_runs.predict(out, ["The big dog sat under a tree.", "a cat slept"])
    assert tagged == [[("The", "DET"), ("big", "ADJ"), ("dog", "NOUN"), ("sat", "VERB"),
                       ("under", "ADP"), ("a", "DET"), ("tree", "NOUN"), (".", ".")],
                      [("a", "DET"), ("cat", "NOUN"), ("slept", "VERB")]]
    limit = tag_runs.load_run(out)[0].data.max_length
    with caplog.at_level(logging.WARNING):
        long = tag_runs.predict(out, "the cat sat " * limit)
    assert len(long[0]) == limit
    assert "longer than data.max_length=250 words were truncated" in caplog.text


def test_predict_refuses_empty_text(pos_run):
    with pytest.raises(ValueError, match=r"text 1 holds no word to tag: ' '"):
        tag_runs.predict(pos_run[0], ["a cat", " "])
    with pytest.raises(TypeError, match="text 0 is a int"):
        tag_runs.predict(pos_run[0], [3])


def test_bio_entities_with_a_crf(tmp_path):
    cfg = tiny(f"data.corpus={NER}", "model.crf=true", "train.max_steps=80",
               "train.eval_every=40", "train.checkpoint_every=40", "train.lr=2e-2")
    summary = tag_runs.train("tag", cfg, tmp_path / "ner", progress=False)
    assert summary["val_accuracy"] >= 0.9
    m = tag_runs.evaluate(tmp_path / "ner")
    assert m["test_entity_f1"] >= 0.8 and 0 < m["test_entity_precision"] <= 1
    tagged = tag_runs.predict(tmp_path / "ner", "Anna visited Paris .")
    assert [t for _, t in tagged[0]] == ["B-PER", "O", "B-LOC", "O"]


def test_resume_continues_exactly(tmp_path):
    # a constant rate: with cosine the schedule of a 10-step run is not a 20-step run's
    cfg = tiny(f"data.corpus={POS}", "train.max_steps=20", "train.schedule=constant")
    tag_runs.train("tag", cfg, tmp_path / "straight", progress=False)
    half = tiny(f"data.corpus={POS}", "train.max_steps=10", "train.schedule=constant")
    tag_runs.train("tag", half, tmp_path / "resumed", progress=False)
    tag_runs.train("tag", cfg, tmp_path / "resumed", resume=True, progress=False)
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


# -- errors -----------------------------------------------------------------------------------

def test_malformed_file_names_its_line_and_leaves_nothing(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("the/DET cat/NOUN\na/DET dog\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: 'dog' is not word/TAG"):
        tag_runs.train("tag", tiny(f"data.corpus={bad}"), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_run_errors(pos_run, tmp_path):
    out, _ = pos_run
    with pytest.raises(ValueError, match="already holds a run; pass --resume"):
        tag_runs.train("tag", tiny(f"data.corpus={POS}"), out, progress=False)
    with pytest.raises(ValueError, match=r"cannot resume .* \(model.hidden_size=16 in the run, 8 asked\)"):
        tag_runs.train("tag", tiny(f"data.corpus={POS}", "model.hidden_size=8"), out,
                       resume=True, progress=False)
    with pytest.raises(ValueError, match="no such run directory"):
        tag_runs.evaluate(tmp_path / "nothing")
    with pytest.raises(ValueError, match="holds no checkpoint"):
        tag_runs.predict(tmp_path, "a cat")
    with pytest.raises(ValueError, match="tags the model was not trained with: B-LOC, B-ORG, B-PER, I-LOC, I-ORG, I-PER, O$"):
        tag_runs.evaluate(out, str(NER))
    with pytest.raises(ValueError, match="task must be one of tag"):
        tag_runs.train("classify", tiny(), tmp_path / "x", progress=False)
    small = tmp_path / "small.txt"
    small.write_text("a/DET cat/NOUN\n")
    with pytest.raises(ValueError, match="1 sentences are too few"):
        tag_runs.train("tag", tiny(f"data.corpus={small}"), tmp_path / "y", progress=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_separate_validation_and_test_files(tmp_path):
    lines = POS.read_text().splitlines()
    for name, part in (("train.txt", lines[:200]), ("valid.txt", lines[200:220]),
                       ("test.txt", lines[220:])):
        (tmp_path / name).write_text("\n".join(part) + "\n")
    cfg = tiny(f"data.corpus={tmp_path / 'train.txt'}", f"data.valid={tmp_path / 'valid.txt'}",
               f"data.test={tmp_path / 'test.txt'}", "data.valid_fraction=0.5")
    splits = tag_runs.load_splits(cfg)
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [200, 20, 20]
    shutil.copy(NER, tmp_path / "ner.txt")  # a CoNLL file without its suffix
    cfg = tiny(f"data.corpus={tmp_path / 'ner.txt'}", "data.max_length=3")
    splits = tag_runs.load_splits(cfg)
    assert max(len(s) for split in splits.values() for s in split) == 3


def test_benchmark_script_runs_and_writes_its_section(tmp_path, monkeypatch):
    import importlib.util

    script = ROOT / "benchmarks" / "bench_tag.py"
    monkeypatch.syspath_prepend(str(script.parent))
    spec = importlib.util.spec_from_file_location("bench_tag", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    threads = torch.get_num_threads()
    try:
        result = bench.run(bench.parse_args(["--quick", "--out", str(tmp_path / "run")]))
    finally:
        torch.set_num_threads(threads)
    kept = bench.record(result, "python benchmarks/bench_tag.py --quick")
    text = bench.section([json.loads(json.dumps(kept, allow_nan=False))])
    row = next(line for line in text.splitlines() if line.startswith("| 20 |"))
    assert row.endswith("| — (0 of 150 tokens) | " + f"{result['metrics']['test_macro_f1']:.4f} |  |  |")
    assert text.startswith(f"### {POS}")
    assert f"{result['metrics']['test_accuracy']:.4f}" in row
    assert "Per-tag F1 on the test split, most frequent first: DET " in text
