"""qorus-layers-mlp: dense layers, activations, normalization and dropout for Qorus."""

from .activations import GELU, ReLU, Sigmoid, SiLU, Softmax, Tanh
from .dropout import Dropout
from .flatten import Flatten
from .layernorm import LayerNorm
from .linear import Linear

__all__ = ["Linear", "ReLU", "GELU", "SiLU", "Tanh", "Sigmoid", "Softmax", "LayerNorm",
           "Dropout", "Flatten"]
__version__ = "0.1.0"
