"""The n-gram regression a classifier averages with (``model.ngrams``): its features and
log-count ratios by hand, the fit at the optimum of its objective, and a run that
trains, saves, evaluates and predicts with the average."""

import json
import math
from pathlib import Path

import pytest
import torch

from rnnkit import config as configs
from rnnkit.tasks import classify_runs
from rnnkit.tasks.classify import ClassifyConfig
from rnnkit.tasks.ngram import NgramModel, _log_count_ratios, _presence, _targets, grams

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "classify" / "reviews.csv"


def test_grams_are_the_distinct_lowercased_word_ngrams():
    assert grams("Not good, not GOOD", 2) == {"not", "good", ",", "not good", "good ,",
                                             ", not"}
    assert grams("최고 영화", 3) == {"최고", "영화", "최고 영화"}
    assert grams("", 3) == set()


def test_log_count_ratios_by_hand():
    index = {"a": 0, "b": 1, "c": 2}
    x = _presence([{"a", "b"}, {"a"}, {"c"}], index)  # texts 0, 1 of class 1; 2 of class 0
    assert x.to_dense().tolist() == [[1, 1, 0], [1, 0, 0], [0, 0, 1]]
    xt = x.t().to_sparse_csr()
    r = _log_count_ratios(xt, _targets([1, 1, 0], 2))  # one column: class 1 against 0
    p, q = torch.tensor([3.0, 2, 1]), torch.tensor([1.0, 1, 2])  # 1 + counts in / out
    expected = torch.log(p / p.sum()) - torch.log(q / q.sum())
    torch.testing.assert_close(r[:, 0], expected.double())
    # three classes: one column per class against the rest
    three = _log_count_ratios(xt, _targets([0, 1, 2], 3))
    assert three.shape == (3, 3)
    assert three[1, 0] > 0 and three[2, 2] > 0 and three[2, 0] < 0  # b: class 0 only
    assert three[0, 0] == 0  # a: once in class 0, once in the rest


TEXTS = ["great film", "great fun", "loved it", "boring film", "awful plot", "boring plot",
         "great plot", "awful film", "loved the film", "boring and awful"]
LABELS = [1, 1, 1, 0, 0, 0, 1, 0, 1, 0]


@pytest.mark.parametrize("num_classes", [2, 3])
def test_fit_is_at_the_optimum_of_its_objective(num_classes):
    labels = LABELS if num_classes == 2 else [i % 3 for i in range(len(TEXTS))]
    model = NgramModel.fit(TEXTS, labels, num_classes, TEXTS[:4], labels[:4], n=2,
                           costs=(1.0,))
    x = _presence([grams(t, 2) for t in TEXTS], model.index)
    y = _targets(labels, num_classes)
    # ∇ (C Σ log-loss + ½‖w‖²) = 0: w = -C rᵀ∘Xᵀ(σ(z) - y), Σ (σ(z) - y) = 0
    z = x @ (model.ratios * model.weight) + model.bias
    dz = model.cost * (torch.sigmoid(z) - y)
    torch.testing.assert_close(model.weight, -model.ratios * (x.t() @ dz), atol=1e-6, rtol=0)
    torch.testing.assert_close(dz.sum(0), torch.zeros_like(model.bias), atol=1e-6, rtol=0)
    p = model.probabilities(TEXTS)
    assert p.shape == (len(TEXTS), num_classes)
    torch.testing.assert_close(p.sum(1), torch.ones(len(TEXTS)))


def test_cost_is_picked_on_validation_and_saved_model_predicts_the_same():
    model = NgramModel.fit(TEXTS, LABELS, 2, ["great awful", "loved boring"], [1, 0], n=2)
    assert model.cost in (0.1, 0.3, 1.0, 3.0)
    assert model.probabilities(["great plot", "awful film"]).argmax(1).tolist() == [1, 0]
    again = NgramModel.from_dict(model.to_dict())
    texts = ["great", "an unseen text", ""]
    torch.testing.assert_close(again.probabilities(texts), model.probabilities(texts))
    # unseen n-grams weigh nothing: a text of none of them scores the bias alone
    p = float(torch.sigmoid(model.bias.float())[0])
    torch.testing.assert_close(model.probabilities(["unseen words only"])[0, 1],
                               torch.tensor(p), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="n >= 1"):
        NgramModel.fit(TEXTS, LABELS, 2, TEXTS, LABELS, n=0)


def test_a_run_averages_the_network_with_the_ngrams(tmp_path):
    cfg = configs.load(ClassifyConfig, ROOT / "configs" / "classify" / "tiny.toml", [
        f"data.train={FIXTURE}", "data.text_column=review", "data.label_column=sentiment",
        "model.ngrams=2", "model.ngram_weight=0.3", "train.max_steps=10"])
    summary = classify_runs.train("classify", cfg, tmp_path / "run", progress=False)
    assert math.isfinite(summary["val_loss"])
    for part in ("network_", "ngram_", ""):
        for split in ("val", "test"):
            assert 0 <= summary[f"{part}{split}_accuracy"] <= 1
    metrics = json.loads((tmp_path / "run" / "report" / "metrics.json").read_text())
    assert metrics["parts"]["ngram"]["accuracy"] == summary["ngram_test_accuracy"]
    assert metrics["accuracy"] == summary["test_accuracy"]

    run = classify_runs.load_run(tmp_path / "run")
    assert run.ngram is not None and run.ngram.n == 2
    texts = ["loved it, wonderful", "awful film 최악"]
    network = classify_runs._probabilities(run.model, run.tokenizer, texts, 64, "t")
    expected = 0.7 * network + 0.3 * run.ngram.probabilities(texts)
    rows = classify_runs.predict(tmp_path / "run", texts)
    got = torch.tensor([[r["probabilities"][label] for label in run.labels] for r in rows])
    torch.testing.assert_close(got, expected)
    # the summary's validation figure is the average's, not the network's alone
    valid = classify_runs.load_splits(cfg.data)[0]["valid"]
    probs = classify_runs.probabilities(run, [e.text for e in valid], "valid")
    truth = torch.tensor([run.labels.index(e.label) for e in valid])
    accuracy = (probs.argmax(-1) == truth).double().mean().item()
    assert summary["val_accuracy"] == pytest.approx(accuracy, abs=1e-12)
    evaluated = classify_runs.evaluate(tmp_path / "run")
    assert evaluated["test_accuracy"] == summary["test_accuracy"]
    assert evaluated["network_test_accuracy"] == summary["network_test_accuracy"]

    # a checkpoint whose config asks for n-grams but holds none is not a whole run
    ck = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    del ck["ngram"]
    torch.save(ck, tmp_path / "run" / "best.pt")
    with pytest.raises(ValueError, match="lacks ngram"):
        classify_runs.load_run(tmp_path / "run")
