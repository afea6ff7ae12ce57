"""Tokens of a language model: characters, or words with a line-end token, and back."""

from rnnkit.tasks.lm import EOS, detokenize, tokenize


def test_characters_are_code_points_multi_byte_included():
    assert tokenize("안녕 🙂\n", "char") == ["안", "녕", " ", "🙂", "\n"]
    assert detokenize(["안", "녕", " ", "🙂", "\n"], "char") == "안녕 🙂\n"


def test_words_end_each_non_blank_line_with_eos():
    assert tokenize("the cat\n\n  sat  down\n", "word") == ["the", "cat", EOS, "sat", "down", EOS]


def test_word_detokenize_inverts_up_to_spacing():
    assert detokenize(["the", "cat", EOS, "sat", "down", EOS], "word") == "the cat\nsat down\n"
    assert detokenize(["a", EOS, EOS, "b"], "word") == "a\n\nb"  # no stray space
    assert detokenize([EOS, "a"], "word") == "\na"


def test_a_tied_model_starts_near_the_uniform_loss():
    """The shared matrix starts small, so the first predictions are nearly uniform: the
    loss starts near ln V (an N(0, 1) embedding as output layer starts far above it)."""
    import math

    import torch

    from rnnkit.tasks.lm import LanguageModel, ModelConfig, cross_entropy

    torch.manual_seed(0)
    V = 5000
    model = LanguageModel(V, ModelConfig(embedding_size=64, hidden_size=64, tie_weights=True))
    tokens = torch.randint(0, V, (20, 8))
    logits, _ = model(tokens)
    loss = cross_entropy(logits[:-1], tokens[1:]).item()
    assert abs(loss - math.log(V)) < 0.05
    assert model.head.weight is model.embed.weight and model.head.bias.abs().max() == 0


def test_embedding_dropout_drops_whole_words_in_training_only():
    """Each word's embedding is either zeroed or scaled by 1/(1-p) wherever it occurs
    in the batch; about p of the words are dropped; evaluation sees the plain embedding."""
    import torch

    from rnnkit.tasks.lm import LanguageModel, ModelConfig

    torch.manual_seed(0)
    p, V = 0.3, 400
    model = LanguageModel(V, ModelConfig(embedding_size=16, hidden_size=16, num_layers=1,
                                         embedding_dropout=p))
    seen = []
    model.rnn.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    tokens = torch.randint(0, V, (50, 8))  # 400 draws of 400 words: many occur twice or more
    plain = model.embed(tokens).detach()

    model.train()
    model(tokens)
    scale = (seen[-1] / plain)[..., 0]  # (T, B): the factor each position got
    assert torch.all(torch.isclose(scale, torch.tensor(0.0))
                     | torch.isclose(scale, torch.tensor(1 / (1 - p))))
    assert torch.allclose(seen[-1], plain * scale.unsqueeze(-1))  # one factor per vector
    for word in tokens.unique():
        assert scale[tokens == word].unique().numel() == 1  # the same at every occurrence
    dropped = [bool(scale[tokens == w][0] == 0) for w in tokens.unique()]
    assert abs(sum(dropped) / len(dropped) - p) < 0.1

    model.eval()
    model(tokens)
    assert torch.equal(seen[-1], plain)
