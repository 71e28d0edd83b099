"""Entry point of the ``llm`` plugin: registers its layers as ``llm.<Name>``, its commands,
and reads Hugging Face decoder directories for ``qorus convert``."""

from __future__ import annotations

from qorus_core.hookspecs import hookimpl

from .attention import CausalSelfAttention
from .block import TransformerBlock
from .embedding import Embedding
from .feedforward import FeedForward
from .geglu import GeGLUFeedForward
from .gemma_attention import GemmaAttention
from .gemma_block import GemmaBlock
from .gemma_model import Gemma3
from .gpt import GPT
from .head import LMHead
from .mha import MultiHeadAttention, ProjectedAttention
from .pooling import MeanPool
from .positional import PositionalEmbedding
from .rmsnorm import RMSNorm
from .rope import RotaryEmbedding
from .scaled_embedding import ScaledEmbedding
from .swiglu import SwiGLUFeedForward
from .tokens import LearnedTokens
from .transformer import Transformer, TransformerDecoder, TransformerEncoder
from .transformer_layers import TransformerDecoderLayer, TransformerEncoderLayer

LAYERS = (Embedding, RMSNorm, RotaryEmbedding, CausalSelfAttention, SwiGLUFeedForward,
          PositionalEmbedding, FeedForward, LMHead, TransformerBlock, GPT, ProjectedAttention,
          MultiHeadAttention, TransformerEncoderLayer, TransformerDecoderLayer,
          TransformerEncoder, TransformerDecoder, Transformer, MeanPool,
          LearnedTokens, ScaledEmbedding, GemmaAttention, GeGLUFeedForward, GemmaBlock, Gemma3)


@hookimpl
def qorus_register_layers(register) -> None:
    """The ``llm.*`` layers: embeddings, norms, attention, feed-forward and transformer blocks, GPT,
    Gemma3, pooling."""
    for cls in LAYERS:
        register(cls)


@hookimpl
def qorus_train_finished(model, config, out_dir, echo) -> None:
    """After ``qorus train``: print sampled text when the config has a [sample] table."""
    from .sample import print_sample

    print_sample(model, config, echo)


@hookimpl
def qorus_convert(src):
    """``qorus convert HF_DIR OUT.gguf``: a Hugging Face decoder directory (llama, mistral,
    qwen2, gpt2) read as llama.cpp's converter lays it out; None for a directory without a
    config.json (another plugin's, or none)."""
    from .hf_convert import read_hf_decoder

    return read_hf_decoder(src)


@hookimpl
def qorus_register_commands(add_command) -> None:
    """``qorus generate``, ``qorus chat`` (GGUF files, Hugging Face decoders), ``qorus embed``
    and ``qorus serve`` (an OpenAI-compatible server)."""
    from .cli import register

    register(add_command)
