"""ScaledEmbedding: token vectors times a constant (Gemma multiplies by sqrt(d_model))."""

from __future__ import annotations

import numpy as np

from qorus_core import Spec
from qorus_core.errors import ShapeError
from qorus_core.init import constant, normal
from qorus_core.validate import real

from .embedding import Embedding


class ScaledEmbedding(Embedding):
    """y = weight[ids] * scale, the product in float32 (``scale`` rounded to float32 first, as
    Hugging Face's ``embed_scale`` buffer and llama.cpp's ``sqrtf(n_embd)`` are). ``weight``
    (num_embeddings, embedding_dim), N(0, ``init_std``) init; float32 or quantized rows."""

    replayable = True   # inference forward: kernel calls only

    def __init__(self, num_embeddings: int, embedding_dim: int, scale: float = 1.0,
                 init_std: float = 0.02) -> None:
        super().__init__(num_embeddings, embedding_dim)
        self.scale = real(scale, "scale", "llm.ScaledEmbedding", lo=0.0, lo_open=True)
        self.init_std = real(init_std, "init_std", "llm.ScaledEmbedding", lo=0.0)

    def build(self, x: Spec, b) -> Spec:
        """As ``Embedding``'s, with the scale held in a state tensor of the output's shape (so the
        forward is replayable kernel calls)."""
        if x.dtype != "i32":
            raise ShapeError(f"expects int32 token ids, got {x.dtype}")
        b.param("weight", (self.num_embeddings, self.embedding_dim), normal(self.init_std))
        y = x.shape + (self.embedding_dim,)
        # the factor as a tensor of y's shape, filled once: ``mul`` is a replayable kernel
        b.state("factor", y, constant(float(np.float32(self.scale))), persistent=False)
        b.scratch("dy_scaled", y)
        return Spec(y)

    def forward(self, x, ctx):
        """The embedding rows times ``scale``."""
        ctx.k.embedding_rows(x, ctx.weight, ctx.y)   # f32 or quantized rows
        ctx.k.mul(ctx.y, ctx.factor, ctx.y)
        return ctx.y

    def backward(self, dy, ctx):
        """``scale * dy`` added into the rows of ``dweight``; the ids take no gradient."""
        ctx.k.mul(dy, ctx.factor, ctx.dy_scaled)
        ctx.k.embedding_bwd(ctx.x, ctx.dy_scaled, ctx.dweight)
        return None                                # ids have no gradient
