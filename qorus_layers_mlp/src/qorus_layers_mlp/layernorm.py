"""LayerNorm over the last dimension, with learned scale and shift (PyTorch's nn.LayerNorm)."""

from __future__ import annotations

from qorus_core import Layer, Spec
from qorus_core.errors import ShapeError
from qorus_core.init import ones, zeros
from qorus_core.validate import maybe, positive_int, real


class LayerNorm(Layer):
    """(x - mean) / sqrt(var + eps) * weight + bias over the last dimension."""

    replayable = True   # inference forward: kernel calls only

    def __init__(self, normalized_shape: int | None = None, eps: float = 1e-5) -> None:
        self.normalized_shape = maybe(positive_int, normalized_shape, "normalized_shape",
                                      "mlp.LayerNorm")
        self.eps = real(eps, "eps", "mlp.LayerNorm", lo=0.0)

    def build(self, x: Spec, b) -> Spec:
        d = x.shape[-1]
        if self.normalized_shape is not None and d != self.normalized_shape:
            raise ShapeError(f"expected last dimension {self.normalized_shape}, got {d}")
        rows = x.size // d
        b.param("weight", (d,), ones())     # gamma (D,)
        b.param("bias", (d,), zeros())      # beta (D,)
        b.saved("mean", (rows,))            # per-row mean (R,)
        b.saved("rstd", (rows,))            # per-row 1/std (R,)
        return x

    def forward(self, x, ctx):
        ctx.k.layernorm(x, ctx.weight, ctx.bias, ctx.y, ctx.mean, ctx.rstd, self.eps)
        return ctx.y

    def backward(self, dy, ctx):
        ctx.k.layernorm_bwd(ctx.x, ctx.weight, ctx.mean, ctx.rstd, dy, ctx.dx,
                            ctx.dweight, ctx.dbias)
        return ctx.dx
