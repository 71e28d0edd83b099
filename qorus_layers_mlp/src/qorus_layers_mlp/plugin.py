"""Entry point of the ``mlp`` plugin: registers its layers as ``mlp.<Name>``."""

from __future__ import annotations

from qorus_core.hookspecs import hookimpl

from .activations import GELU, ReLU, Sigmoid, SiLU, Softmax, Tanh
from .dropout import Dropout
from .flatten import Flatten
from .layernorm import LayerNorm
from .linear import Linear

LAYERS = (Linear, ReLU, GELU, SiLU, Tanh, Sigmoid, Softmax, LayerNorm, Dropout, Flatten)


@hookimpl
def qorus_register_layers(register) -> None:
    for cls in LAYERS:
        register(cls)
