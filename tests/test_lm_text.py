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
