"""qorus-layers-llm: language-model layers for Qorus: embeddings, norms, rotary attention with
a KV cache, feed-forward and transformer blocks, a GPT, generation."""

from .attention import CausalSelfAttention
from .block import TransformerBlock
from .embedding import Embedding
from .feedforward import FeedForward
from .gpt import GPT
from .head import LMHead
from .positional import PositionalEmbedding
from .rmsnorm import RMSNorm
from .rope import RotaryEmbedding
from .swiglu import SwiGLUFeedForward

__all__ = ["CausalSelfAttention", "Embedding", "FeedForward", "GPT", "LMHead",
           "PositionalEmbedding", "RMSNorm", "RotaryEmbedding", "SwiGLUFeedForward",
           "TransformerBlock"]
__version__ = "0.1.0"
