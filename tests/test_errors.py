"""Bad input: a ValueError/TypeError whose message names what was expected and given."""

import pytest
import torch
from torch.nn.utils.rnn import pack_sequence

import rnnkit

BAD_CONSTRUCTION = [
    (rnnkit.LSTM, dict(input_size=3, hidden_size=0), ValueError, r"hidden_size must be >= 1, got 0"),
    (rnnkit.GRU, dict(input_size=-1, hidden_size=4), ValueError, r"input_size must be >= 1, got -1"),
    (rnnkit.RNN, dict(input_size=3, hidden_size=4, num_layers=0), ValueError, r"num_layers must be >= 1"),
    (rnnkit.LSTM, dict(input_size=3, hidden_size=4.0), TypeError, r"hidden_size must be an int, got float"),
    (rnnkit.LSTM, dict(input_size=3, hidden_size=4, dropout=1.5), ValueError, r"dropout must be a probability in \[0, 1\], got 1.5"),
    (rnnkit.LSTM, dict(input_size=3, hidden_size=4, recurrent_dropout=1.0), ValueError, r"recurrent_dropout .* \[0, 1\), got 1.0"),
    (rnnkit.LSTM, dict(input_size=3, hidden_size=4, weight_drop=-0.1), ValueError, r"weight_drop .* got -0.1"),
    (rnnkit.GRU, dict(input_size=3, hidden_size=4, zoneout=-0.1), ValueError, r"zoneout \(h\) .* got -0.1"),
    (rnnkit.LSTM, dict(input_size=3, hidden_size=4, zoneout=(0.1, 0.2, 0.3)), ValueError, r"zoneout must be a float or a pair"),
    (rnnkit.LSTM, dict(input_size=3, hidden_size=4, proj_size=4), ValueError, r"proj_size must be smaller than hidden_size \(4\), got 4"),
    (rnnkit.RNN, dict(input_size=3, hidden_size=4, nonlinearity="sigmoid"), ValueError, r"'tanh' or 'relu', got 'sigmoid'"),
    (rnnkit.GRU, dict(input_size=3, hidden_size=4, forget_bias=1.0), ValueError, r"forget_bias is only for LSTM"),
    (rnnkit.LSTM, dict(input_size=3, hidden_size=4, backend="bogus"), ValueError, r"backend must be one of .* got 'bogus'"),
    (rnnkit.LSTM, dict(input_size=3, hidden_size=4, backend="native", layer_norm=True), ValueError, r"backend='native' runs only torch.nn's options"),
    (rnnkit.GRU, dict(input_size=3, hidden_size=4, backend="native", zoneout=0.1), ValueError, r"backend='native'"),
    (rnnkit.LSTMCell, dict(input_size=3, hidden_size=0), ValueError, r"hidden_size must be >= 1, got 0"),
]


@pytest.mark.parametrize("cls,kwargs,error,message", BAD_CONSTRUCTION)
def test_bad_construction(cls, kwargs, error, message):
    with pytest.raises(error, match=message):
        cls(**kwargs)


def test_proj_size_only_for_lstm():
    with pytest.raises(TypeError):  # torch.nn.GRU has no proj_size argument either
        rnnkit.GRU(3, 4, proj_size=2)


@pytest.fixture
def lstm():
    return rnnkit.LSTM(3, 4, num_layers=2)


def test_wrong_rank(lstm):
    with pytest.raises(ValueError, match=r"expected input of shape \(T, B, I\) or unbatched \(T, I\), got 4-D"):
        lstm(torch.randn(2, 2, 2, 3))


def test_wrong_feature_size(lstm):
    with pytest.raises(ValueError, match=r"expected input with 3 features .* got shape \(5, 2, 7\)"):
        lstm(torch.randn(5, 2, 7))


def test_not_a_tensor(lstm):
    with pytest.raises(TypeError, match=r"input must be a torch.Tensor, got list"):
        lstm([[1.0, 2.0, 3.0]])


def test_dtype_mismatch(lstm):
    with pytest.raises(TypeError, match=r"input must have dtype torch.float32 like the weights, got torch.float64"):
        lstm(torch.randn(5, 2, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"floating-point"):
        lstm(torch.ones(5, 2, 3, dtype=torch.long))


def test_bad_hx(lstm):
    x = torch.randn(5, 2, 3)
    with pytest.raises(ValueError, match=r"expected h0 of shape \(L\*D, B, H\) = \(2, 2, 4\), got \(1, 2, 4\)"):
        lstm(x, (torch.zeros(1, 2, 4), torch.zeros(2, 2, 4)))
    with pytest.raises(TypeError, match=r"LSTM hx must be a tuple \(h0, c0\), got Tensor"):
        lstm(x, torch.zeros(2, 2, 4))
    with pytest.raises(TypeError, match=r"c0 must have dtype torch.float32"):
        lstm(x, (torch.zeros(2, 2, 4), torch.zeros(2, 2, 4, dtype=torch.float64)))
    gru = rnnkit.GRU(3, 4)
    with pytest.raises(ValueError, match=r"expected hx of shape .* = \(1, 2, 4\), got \(1, 3, 4\)"):
        gru(x, torch.zeros(1, 3, 4))
    with pytest.raises(ValueError, match=r"for unbatched input expected hx of shape \(L\*D, H\)"):
        gru(x[:, 0], torch.zeros(1, 1, 4))


@pytest.mark.parametrize("lengths,error,message", [
    (torch.tensor([5, 2, 1]), ValueError, r"expected lengths of shape \(2,\), one per sequence, got \(3,\)"),
    (torch.tensor([[5, 2]]), ValueError, r"expected lengths of shape \(2,\)"),
    (torch.tensor([5, 0]), ValueError, r"lengths must lie in \[1, 5\] \(the sequence length\), got min 0, max 5"),
    (torch.tensor([6, 2]), ValueError, r"lengths must lie in \[1, 5\] .* max 6"),
    (torch.tensor([5.0, 2.0]), TypeError, r"lengths must be an integer tensor, got torch.float32"),
    (torch.tensor([5, 2], device="meta"), ValueError, r"lengths must be on the input's device \(cpu\) or the CPU, got meta"),
])
def test_bad_lengths(lstm, lengths, error, message):
    with pytest.raises(error, match=message):
        lstm(torch.randn(5, 2, 3), lengths=lengths)


def test_lengths_with_packed_input(lstm):
    packed = pack_sequence([torch.randn(3, 3), torch.randn(2, 3)])
    with pytest.raises(ValueError, match=r"lengths= cannot be combined with a PackedSequence"):
        lstm(packed, lengths=torch.tensor([3, 2]))


def test_empty_sequence(lstm):
    with pytest.raises(ValueError, match=r"no time steps"):
        lstm(torch.randn(0, 2, 3))


def test_cell_errors():
    cell = rnnkit.GRUCell(3, 4)
    with pytest.raises(ValueError, match=r"expected input with 3 features, got \(2, 5\)"):
        cell(torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"expected hx of shape \(B, H\) = \(2, 4\), got \(3, 4\)"):
        cell(torch.randn(2, 3), torch.zeros(3, 4))
