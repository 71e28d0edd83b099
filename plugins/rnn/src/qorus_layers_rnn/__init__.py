"""qorus-layers-rnn: recurrent layers rnn.RNN (tanh), rnn.LSTM and rnn.GRU with PyTorch's
parameter names and gate layouts, batch-first, optionally bidirectional, with dropout between
layers, initial states as inputs, final states as outputs and variable-length batches;
backpropagation through time on fused cell kernels (``qorus_core.kernels``: ``rnn_cell``,
``lstm_cell``, ``gru_cell`` and their ``_bwd``).
"""

from .cells import GRU, LSTM, RNN
from .recurrent import Recurrent

__all__ = ["GRU", "LSTM", "RNN", "Recurrent"]
__version__ = "0.1.0"
