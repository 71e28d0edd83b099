"""qorus-layers-llm: language-model layers for Qorus (embeddings and norms so far; attention,
transformer blocks, GGUF loading and generation arrive with their own issue)."""

from .embedding import Embedding
from .rmsnorm import RMSNorm

__all__ = ["Embedding", "RMSNorm"]
__version__ = "0.1.0"
