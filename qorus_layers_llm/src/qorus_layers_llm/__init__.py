"""qorus-layers-llm: language-model layers for Qorus (embeddings and norms so far; attention,
transformer blocks, GGUF loading and generation arrive with their own issue)."""

from .attention import CausalSelfAttention
from .embedding import Embedding
from .rmsnorm import RMSNorm
from .rope import RotaryEmbedding
from .swiglu import SwiGLUFeedForward

__all__ = ["CausalSelfAttention", "Embedding", "RMSNorm", "RotaryEmbedding",
           "SwiGLUFeedForward"]
__version__ = "0.1.0"
