"""One time step each, the equations on screen."""

from rnnkit.cells._common import Weights
from rnnkit.cells.gru import GRUCell, gru_step
from rnnkit.cells.lstm import LSTMCell, lstm_step
from rnnkit.cells.rnn import RNNCell, rnn_step

__all__ = ["GRUCell", "LSTMCell", "RNNCell", "Weights", "gru_step", "lstm_step", "rnn_step"]
