"""qorus-layers-llm: language-model layers for Qorus: embeddings, norms, rotary attention with
a KV cache, feed-forward and transformer blocks, a GPT, generation."""

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
from .hf_decoder import load_decoder
from .hf_encoder import Encoder, load_encoder
from .hf_export import save_decoder, save_encoder
from .hf_tokenizer import HFTokenizer, load_tokenizer
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
from .wordpiece import WordPieceTokenizer

__all__ = ["CausalSelfAttention", "Embedding", "Encoder", "FeedForward", "GPT", "GeGLUFeedForward",
           "Gemma3", "GemmaAttention", "GemmaBlock", "HFTokenizer", "LMHead", "LearnedTokens",
           "MeanPool", "MultiHeadAttention", "PositionalEmbedding", "ProjectedAttention",
           "RMSNorm", "RotaryEmbedding", "ScaledEmbedding", "SwiGLUFeedForward", "Transformer",
           "TransformerBlock", "TransformerDecoder", "TransformerDecoderLayer",
           "TransformerEncoder", "TransformerEncoderLayer", "WordPieceTokenizer", "load_decoder",
           "load_encoder", "load_tokenizer", "save_decoder", "save_encoder"]
__version__ = "0.1.0"
