"""Entry point of the ``llm`` plugin: registers its layers as ``llm.<Name>``."""

from __future__ import annotations

from qorus_core.hookspecs import hookimpl

from .attention import CausalSelfAttention
from .embedding import Embedding
from .rmsnorm import RMSNorm
from .rope import RotaryEmbedding
from .swiglu import SwiGLUFeedForward

LAYERS = (Embedding, RMSNorm, RotaryEmbedding, CausalSelfAttention, SwiGLUFeedForward)


@hookimpl
def qorus_register_layers(register) -> None:
    for cls in LAYERS:
        register(cls)
