"""qorus-layers-mlp: dense layers, activations, normalization and dropout for Qorus."""

from .activations import (
    ELU,
    GELU,
    Hardswish,
    LeakyReLU,
    Mish,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Tanh,
)
from .dropout import Dropout
from .flatten import Flatten
from .glu import GLU
from .identity import Identity
from .layernorm import LayerNorm
from .linear import Linear

__all__ = ["Linear", "ReLU", "GELU", "SiLU", "Tanh", "Sigmoid", "Softmax", "LeakyReLU", "ELU",
           "Softplus", "Mish", "Hardswish", "GLU", "LayerNorm", "Dropout", "Flatten", "Identity"]
__version__ = "0.1.0"
