"""Embedding: token ids (int32) to vectors; the gradient is a scatter-add into the table."""

from __future__ import annotations

from qorus_core import Layer, Spec
from qorus_core.errors import ShapeError
from qorus_core.init import normal
from qorus_core.validate import positive_int


class Embedding(Layer):
    """A lookup table ``weight`` (num_embeddings, embedding_dim), N(0, 1) init like PyTorch."""

    replayable = True   # inference forward: kernel calls only

    def __init__(self, num_embeddings: int, embedding_dim: int) -> None:
        self.num_embeddings = positive_int(num_embeddings, "num_embeddings", "llm.Embedding")
        self.embedding_dim = positive_int(embedding_dim, "embedding_dim", "llm.Embedding")

    def build(self, x: Spec, b) -> Spec:
        """int32 ids ``[...]`` -> ``[..., embedding_dim]``; declares ``weight`` ``(num_embeddings,
        embedding_dim)``, N(0, 1) as PyTorch's."""
        if x.dtype != "i32":
            raise ShapeError(f"expects int32 token ids, got {x.dtype}")
        b.param("weight", (self.num_embeddings, self.embedding_dim), normal(1.0))  # (V, D)
        return Spec(x.shape + (self.embedding_dim,))

    def forward(self, x, ctx):
        """The rows of ``weight`` at the ids (float32 or quantized weights)."""
        ctx.k.embedding_rows(x, ctx.weight, ctx.y)   # y (..., D) = weight[x] (f32 or quantized)
        return ctx.y

    def backward(self, dy, ctx):
        """dy added into the rows of ``dweight`` at the ids; the ids take no gradient."""
        ctx.k.embedding_bwd(ctx.x, dy, ctx.dweight)
        return None                                # ids have no gradient
