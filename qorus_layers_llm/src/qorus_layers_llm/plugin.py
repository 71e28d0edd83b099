"""Entry point of the ``llm`` plugin: registers its layers as ``llm.<Name>``."""

from __future__ import annotations

from qorus_core.hookspecs import hookimpl

from .attention import CausalSelfAttention
from .block import TransformerBlock
from .embedding import Embedding
from .feedforward import FeedForward
from .gpt import GPT
from .head import LMHead
from .mha import MultiHeadAttention, ProjectedAttention
from .pooling import MeanPool
from .positional import PositionalEmbedding
from .rmsnorm import RMSNorm
from .rope import RotaryEmbedding
from .swiglu import SwiGLUFeedForward
from .tokens import LearnedTokens
from .transformer import Transformer, TransformerDecoder, TransformerEncoder
from .transformer_layers import TransformerDecoderLayer, TransformerEncoderLayer

LAYERS = (Embedding, RMSNorm, RotaryEmbedding, CausalSelfAttention, SwiGLUFeedForward,
          PositionalEmbedding, FeedForward, LMHead, TransformerBlock, GPT, ProjectedAttention,
          MultiHeadAttention, TransformerEncoderLayer, TransformerDecoderLayer,
          TransformerEncoder, TransformerDecoder, Transformer, MeanPool,
          LearnedTokens)


@hookimpl
def qorus_register_layers(register) -> None:
    for cls in LAYERS:
        register(cls)


@hookimpl
def qorus_train_finished(model, config, out_dir, echo) -> None:
    """After ``qorus train``: print sampled text when the config has a [sample] table."""
    from .sample import print_sample

    print_sample(model, config, echo)


@hookimpl
def qorus_register_commands(add_command) -> None:
    """``qorus generate`` and ``qorus chat`` (GGUF language models)."""
    from .cli import register

    register(add_command)
