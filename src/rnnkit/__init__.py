"""rnnkit: recurrent neural networks on PyTorch, from the equations to a trained model."""

from rnnkit.cells import GRUCell, LSTMCell, RNNCell
from rnnkit.layers import GRU, LSTM, RNN

__version__ = "0.1.0"

__all__ = ["GRU", "GRUCell", "LSTM", "LSTMCell", "RNN", "RNNCell", "__version__"]
