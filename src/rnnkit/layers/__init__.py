"""Running cells over time: lengths, reverse, bidirectional, stacked; torch.nn interop."""

from rnnkit.layers.recurrent import GRU, LSTM, RNN

__all__ = ["GRU", "LSTM", "RNN"]
