"""rnnkit: recurrent neural networks on PyTorch, from the equations to a trained model."""

from rnnkit.cells import GRUCell, LSTMCell, RNNCell
from rnnkit.cells.minimal import MinGRUCell, MinLSTMCell
from rnnkit.graphs import graphed
from rnnkit.layers import GRU, LSTM, RNN
from rnnkit.layers.clustered_softmax import ClusteredSoftmax
from rnnkit.layers.crf import CRF
from rnnkit.layers.dropout import Dropout
from rnnkit.layers.minimal import MinGRU, MinLSTM

__version__ = "0.1.0"

__all__ = ["CRF", "ClusteredSoftmax", "Dropout", "GRU", "GRUCell", "LSTM", "LSTMCell",
           "MinGRU", "MinGRUCell", "MinLSTM", "MinLSTMCell", "RNN", "RNNCell", "__version__",
           "graphed"]
