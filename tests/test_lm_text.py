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
