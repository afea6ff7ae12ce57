"""Classification parts: tokenisers, pooling over time, metrics, and the model learning
the fixture."""

from pathlib import Path

import numpy as np
import pytest
import torch

from rnnkit import config as configs
from rnnkit.data.tables import read_examples
from rnnkit.data.tokenizer import fit_tokenizer, tokenizer_from_dict
from rnnkit.layers.pooling import Pooling
from rnnkit.tasks.classify import ModelConfig, TextClassifier, length_batches, pad
from rnnkit.tasks.classify_report import confusion, scores, write_report

FIXTURE = Path(__file__).parent / "fixtures" / "classify" / "reviews.csv"
TEXTS = ["The cat sat.", "the dog RAN, the cat sat", "고양이가 앉았다 🙂"]


# -- tokenisers ------------------------------------------------------------------------


def test_word_vocabulary_counts_min_freq_and_max_size():
    tok = fit_tokenizer("word", TEXTS)
    # 'the' ×3, 'cat' 'sat' ×2; then first-seen order; punctuation marks are tokens
    assert tok.vocab.tokens[:4] == ["<unk>", "the", "cat", "sat"]
    assert tok.encode("the cat flew.") == [1, 2, 0, tok.vocab.index["."]]
    assert fit_tokenizer("word", TEXTS, min_freq=2).vocab.tokens == ["<unk>", "the", "cat", "sat"]
    assert len(fit_tokenizer("word", TEXTS, max_size=3)) == 3
    cased = fit_tokenizer("word", TEXTS, lowercase=False)
    assert "RAN" in cased.vocab.index and "ran" not in cased.vocab.index
    assert fit_tokenizer("word", TEXTS).split("고양이가 앉았다") == ["고양이가", "앉았다"]


def test_char_tokens_are_code_points_of_any_script():
    tok = fit_tokenizer("char", TEXTS)
    ids = tok.encode("고양이  🙂Ж")
    assert len(ids) == 6  # white space runs count once; Ж is unseen
    assert [tok.vocab.tokens[i] for i in ids] == ["고", "양", "이", " ", "🙂", "<unk>"]


def test_bpe_learns_subwords_and_maps_unseen_characters_to_unk():
    pytest.importorskip("tokenizers")
    texts = ["lower lowest newer newest"] * 20 + ["안녕 안녕하세요"] * 5
    tok = fit_tokenizer("bpe", texts, max_size=60)
    assert tok.tokenizer.token_to_id("<unk>") == 0
    assert len(tok) <= 60
    assert tok.tokens("lowest") == ["lowest"]  # frequent enough to be one merged token
    assert tok.tokens("Ж")[0] == "<unk>" and tok.encode("Ж") == [0]
    assert "".join(tok.tokens("안녕하세요")) == "안녕하세요"


@pytest.mark.parametrize("kind", ["word", "char", "bpe"])
def test_saved_tokenizer_encodes_the_same(kind):
    if kind == "bpe":
        pytest.importorskip("tokenizers")
    tok = fit_tokenizer(kind, TEXTS * 3, max_size=40)
    again = tokenizer_from_dict(torch.load(_roundtrip(tok.to_dict()), weights_only=True))
    for text in [*TEXTS, "an unseen 텍스트 Ж"]:
        assert again.encode(text) == tok.encode(text)
    assert len(again) == len(tok)


def _roundtrip(data):
    import io

    buffer = io.BytesIO()
    torch.save(data, buffer)  # checkpoints hold plain data only: this must load safely
    buffer.seek(0)
    return buffer


def test_bad_tokenizer_settings():
    with pytest.raises(ValueError, match="kind must be one of word, char, bpe"):
        fit_tokenizer("sentencepiece", TEXTS)
    with pytest.raises(ValueError, match="not a saved tokenizer"):
        tokenizer_from_dict({"kind": "word"})


# -- pooling -----------------------------------------------------------------------------


def _outputs():
    torch.manual_seed(0)
    y = torch.randn(3, 5, 4, dtype=torch.float64)  # (B, T, D)
    lengths = torch.tensor([5, 2, 3])
    y[1, 2:] = 0
    y[2, 3:] = 0
    return y, lengths


def test_mean_and_max_ignore_padding():
    y, lengths = _outputs()
    mean, top = Pooling("mean", 4)(y, lengths), Pooling("max", 4)(y, lengths)
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(mean[b], y[b, :n].mean(0))
        torch.testing.assert_close(top[b], y[b, :n].max(0).values)
    y[1, 2:] = 100.0  # garbage in the padding changes nothing
    torch.testing.assert_close(Pooling("max", 4)(y, lengths)[1], top[1])


def test_meanmax_is_mean_then_max():
    y, lengths = _outputs()
    pool = Pooling("meanmax", 4)
    assert pool.out_size == 8 and Pooling("max", 4).out_size == 4
    both = pool(y, lengths)  # (B, 8)
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(both[b], torch.cat([y[b, :n].mean(0), y[b, :n].max(0).values]))


def test_last_pooling_is_the_layers_final_state():
    import rnnkit

    torch.manual_seed(1)
    lstm = rnnkit.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True).double()
    x = torch.randn(3, 6, 3, dtype=torch.float64)
    lengths = torch.tensor([6, 2, 4])
    y, (h, _) = lstm(x, lengths=lengths)
    pooled = Pooling("last", 8, directions=2)(y, lengths)
    torch.testing.assert_close(pooled, torch.cat([h[-2], h[-1]], dim=-1))


def test_attention_weights_by_hand():
    y, lengths = _outputs()
    pool = Pooling("attention", 4, attention_size=3).double()
    alpha = pool.weights(y, lengths)
    for b, n in enumerate(lengths.tolist()):
        scores_ = torch.tanh(y[b, :n] @ pool.project.weight.T + pool.project.bias) \
            @ pool.score.weight[0]
        expected = torch.softmax(scores_, 0)
        torch.testing.assert_close(alpha[b, :n], expected)
        assert torch.all(alpha[b, n:] == 0)
        torch.testing.assert_close(pool(y, lengths)[b], expected @ y[b, :n])


def test_pooling_refuses_bad_arguments():
    with pytest.raises(ValueError, match="pooling must be one of"):
        Pooling("sum", 4)
    with pytest.raises(ValueError, match=r"expected outputs of shape \(B, T, 4\), got \(2, 3, 5\)"):
        Pooling("mean", 4)(torch.zeros(2, 3, 5), torch.tensor([1, 2]))


# -- metrics and the report ----------------------------------------------------------------


def test_scores_by_hand():
    truth, predicted = [0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2]
    s = scores(truth, predicted, 3)
    assert s["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["precision"] == pytest.approx([1, 1 / 2, 1 / 2])
    assert s["recall"] == pytest.approx([2 / 3, 1 / 2, 1])
    f1 = [0.8, 0.5, 2 / 3]
    assert s["f1"] == pytest.approx(f1) and s["macro_f1"] == pytest.approx(np.mean(f1))
    # a class never predicted and never true scores 0, not NaN
    assert scores([0, 1], [0, 1], 3)["f1"] == [1.0, 1.0, 0.0]


def test_scores_match_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    truth, predicted = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    s = scores(truth, predicted, 4)
    assert s["macro_f1"] == pytest.approx(metrics.f1_score(truth, predicted, average="macro"))
    assert s["confusion"] == metrics.confusion_matrix(truth, predicted).tolist()
    assert confusion(truth, predicted, 4).sum() == 200


def test_report_files(tmp_path):
    probs = torch.tensor([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8]])
    m = write_report(tmp_path, ["no", "yes"], ["a", "b", "c", "d"], [0, 1, 1, 0], probs, "t")
    assert m["accuracy"] == 0.5 and m["per_class"]["yes"] == {
        "precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    lines = (tmp_path / "misclassified.jsonl").read_text().splitlines()
    # the most confident mistake first
    assert [line.split('"text": "')[1][0] for line in lines] == ["d", "c"]
    assert (tmp_path / "confusion.png").read_bytes()[:4] == b"\x89PNG"


# -- the model -----------------------------------------------------------------------------


def test_length_batches_cover_every_example_once():
    import random

    lengths = [random.Random(i).randint(1, 50) for i in range(103)]
    batches = length_batches(lengths, 10, random.Random(0))
    assert sorted(sum(batches, [])) == list(range(103))
    spread = np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches])
    assert spread < 10  # sorted within windows: little padding


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "meanmax", "attention"])
def test_padding_does_not_change_a_texts_logits(pooling):
    cfg = configs.from_dict(ModelConfig, {"embedding_size": 8, "hidden_size": 6,
                                          "num_layers": 2, "pooling": pooling, "dropout": 0.0})
    model = TextClassifier(20, 3, cfg).eval()
    tokens, lengths = pad([[3, 4, 5], [6, 7, 8, 9, 10, 11, 12]])
    with torch.no_grad():
        alone = model(*pad([[3, 4, 5]]))
        batched = model(tokens, lengths)
    torch.testing.assert_close(batched[0], alone[0], rtol=1e-5, atol=1e-6)


def test_word_dropout_replaces_words_by_unk_in_training_only():
    cfg = configs.from_dict(ModelConfig, {"embedding_size": 8, "hidden_size": 6,
                                          "dropout": 0.0, "word_dropout": 0.5})
    model = TextClassifier(20, 3, cfg)
    model.word_dropout = 1.0  # (the config stops short of 1) every word: an exact check
    tokens, lengths = pad([[3, 4, 5], [6, 7, 8, 9]])
    unknown = torch.zeros_like(tokens)
    with torch.no_grad():
        trained_on = model.train()(tokens, lengths)  # p = 1: every word is <unk>
        model.eval()
        torch.testing.assert_close(trained_on, model(unknown, lengths))
        assert not torch.allclose(model(tokens, lengths), trained_on)  # eval: words kept
    with pytest.raises(ValueError, match="word_dropout"):
        configs.from_dict(ModelConfig, {"word_dropout": 1.5})


def test_embedding_std_scales_the_initial_embedding():
    small = TextClassifier(500, 2, configs.from_dict(ModelConfig, {"embedding_std": 0.1}))
    default = TextClassifier(500, 2, ModelConfig())
    assert abs(float(small.embed.weight.detach().std()) - 0.1) < 0.005
    assert abs(float(default.embed.weight.detach().std()) - 1.0) < 0.05
    with pytest.raises(ValueError, match="embedding_std"):
        configs.from_dict(ModelConfig, {"embedding_std": 0.0})


def test_a_run_saved_before_an_option_existed_resumes(tmp_path):
    from rnnkit.tasks._runs import _check_same_settings
    from rnnkit.tasks.classify import ClassifyConfig

    def _check_resumable(ck, cfg, out):
        _check_same_settings(ck, cfg, out, ("model", "tokenizer"))

    cfg = ClassifyConfig()
    saved = configs.to_dict(cfg)
    for key in ("word_dropout", "embedding_std"):  # options added later: their defaults
        del saved["model"][key]
    _check_resumable({"config": saved}, cfg, tmp_path)
    cfg.model.word_dropout = 0.2
    with pytest.raises(ValueError, match=r"model.word_dropout=0.0 in the run, 0.2 asked"):
        _check_resumable({"config": saved}, cfg, tmp_path)


def test_label_smoothing_by_hand():
    from rnnkit.tasks.classify import Batch, ClassifyConfig, ClassifyTask

    cfg = ClassifyConfig()
    cfg.model.label_smoothing = 0.2
    task = ClassifyTask(cfg, {}, {}, 3, torch.device("cpu"))
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    batch = Batch(torch.zeros(2, 1, dtype=torch.long), torch.tensor([1, 1]), torch.tensor([0, 1]))
    loss, _ = task.loss(lambda tokens, lengths: logits, batch, None)
    logp = torch.log_softmax(logits, -1)
    nll, uniform = -logp[[0, 1], [0, 1]], -logp.mean(-1)  # the class; every class evenly
    torch.testing.assert_close(loss, (0.8 * nll + 0.2 * uniform).mean())


def test_model_learns_the_fixture():
    examples = read_examples(FIXTURE, "review", "sentiment")
    labels = sorted({e.label for e in examples})
    tok = fit_tokenizer("word", [e.text for e in examples])
    tokens, lengths = pad([tok.encode(e.text) for e in examples])
    y = torch.tensor([labels.index(e.label) for e in examples])
    cfg = configs.from_dict(ModelConfig, {"embedding_size": 16, "hidden_size": 16,
                                          "dropout": 0.0, "cell": "gru"})
    torch.manual_seed(0)
    model = TextClassifier(len(tok), 3, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(tokens, lengths), y)
        loss.backward()
        opt.step()
    accuracy = (model.eval()(tokens, lengths).argmax(-1) == y).float().mean()
    assert accuracy > 0.95  # keywords decide the class: the training set is learnt
