"""Gemma3: Gemma 3's decoder-only language model on int32 token ids [B, T] -> logits
[B, T, vocab_size]."""

from __future__ import annotations

import math

from qorus_core import Composite
from qorus_core.errors import ShapeError
from qorus_core.validate import boolean, maybe, positive_int, real

from .gemma_block import GemmaBlock
from .head import LMHead
from .rmsnorm import RMSNorm
from .scaled_embedding import ScaledEmbedding


class Gemma3(Composite):
    """Token embedding times sqrt(d_model), ``n_layers`` ``llm.GemmaBlock``s, final RMSNorm,
    LM head (``tie_embeddings``: the embedding table, as every Gemma 3 has).

    Layer i is global (all positions, RoPE base ``rope_theta``) when (i + 1) is a multiple of
    ``window_pattern``, else local (the last ``window`` positions, base ``rope_theta_local``):
    Hugging Face's default ``layer_types`` and llama.cpp's ``set_swa_pattern(6)``. ``window``
    None: every layer global. ``attn_scale`` None: 1/sqrt(head_dim). Params:
    ``embed.weight`` (V, d), ``blocks.<i>.<...>``, ``norm.weight``, ``head.weight`` (untied).
    """

    def __init__(self, vocab_size: int, d_model: int, n_layers: int, n_heads: int, max_len: int,
                 n_kv_heads: int | None = None, head_dim: int | None = None,
                 d_ff: int | None = None, window: int | None = None, window_pattern: int = 6,
                 rope_theta: float = 1_000_000.0, rope_theta_local: float = 10_000.0,
                 eps: float = 1e-6, attn_scale: float | None = None, tie_embeddings: bool = True,
                 init_std: float = 0.02) -> None:
        name = "llm.Gemma3"
        self.vocab_size = positive_int(vocab_size, "vocab_size", name)
        self.d_model = positive_int(d_model, "d_model", name)
        self.n_layers = positive_int(n_layers, "n_layers", name)
        self.n_heads = positive_int(n_heads, "n_heads", name)
        self.max_len = positive_int(max_len, "max_len", name)
        self.n_kv_heads = maybe(positive_int, n_kv_heads, "n_kv_heads", name)
        self.head_dim = maybe(positive_int, head_dim, "head_dim", name)
        self.d_ff = maybe(positive_int, d_ff, "d_ff", name)
        self.window = maybe(positive_int, window, "window", name)
        self.window_pattern = positive_int(window_pattern, "window_pattern", name)
        self.rope_theta = real(rope_theta, "rope_theta", name, lo=0.0, lo_open=True)
        self.rope_theta_local = real(rope_theta_local, "rope_theta_local", name, lo=0.0,
                                     lo_open=True)
        self.eps = real(eps, "eps", name, lo=0.0)
        self.attn_scale = maybe(real, attn_scale, "attn_scale", name, lo=0.0, lo_open=True)
        self.tie_embeddings = boolean(tie_embeddings, "tie_embeddings", name)
        self.init_std = real(init_std, "init_std", name, lo=0.0)
        self.block(0)            # bad block settings fail here, when the model is made

    def is_local(self, i: int) -> bool:
        """Whether layer ``i`` attends to the last ``window`` positions only."""
        return self.window is not None and (i + 1) % self.window_pattern != 0

    def layer_window(self, i: int) -> int | None:
        """Layer ``i``'s window as its attention takes it: None for a global layer, and for a
        local one whose window spans all ``max_len`` positions (it never binds)."""
        return self.window if self.is_local(i) and self.window < self.max_len else None

    def block(self, i: int) -> GemmaBlock:
        """Block ``i``: local (sliding window, the local RoPE base) or global."""
        return GemmaBlock(self.d_model, self.n_heads, self.n_kv_heads, self.head_dim, self.d_ff,
                          self.rope_theta_local if self.is_local(i) else self.rope_theta,
                          self.layer_window(i), self.eps, self.attn_scale, self.max_len)

    def build(self, x, b):
        """Scaled token embeddings, the blocks, the final RMSNorm and the (tied) head over int32 ids
        ``[B, T]``."""
        if len(x.shape) != 2 or x.dtype != "i32":
            raise ShapeError(f"Gemma3 expects int32 token ids [B, T], got {x.shape} {x.dtype}")
        if x.shape[1] > self.max_len:
            raise ShapeError(f"Gemma3: sequence length {x.shape[1]} exceeds max_len {self.max_len}")
        embed = ScaledEmbedding(self.vocab_size, self.d_model, math.sqrt(self.d_model),
                                self.init_std)
        h = b.call(embed, x, "embed")
        for i in range(self.n_layers):
            h = b.call(self.block(i), h, f"blocks.{i}")
        h = b.call(RMSNorm(self.d_model, self.eps), h, "norm")
        y = b.call(LMHead(self.d_model, self.vocab_size, bias=False), h, "head")
        if self.tie_embeddings:
            b.tie("head.weight", "embed.weight")
        return y
