"""Entry point of the ``mlp`` plugin: registers its layers as ``mlp.<Name>``."""

from __future__ import annotations

from qorus_core.hookspecs import hookimpl

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

LAYERS = (Linear, ReLU, GELU, SiLU, Tanh, Sigmoid, Softmax, LeakyReLU, ELU, Softplus, Mish,
          Hardswish, GLU, LayerNorm, Dropout, Flatten, Identity)


@hookimpl
def qorus_register_layers(register) -> None:
    """The ``mlp.*`` layers: Linear, the activations, GLU, LayerNorm, Dropout, Flatten, Identity."""
    for cls in LAYERS:
        register(cls)
