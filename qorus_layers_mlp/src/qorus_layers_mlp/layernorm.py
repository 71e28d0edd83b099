"""LayerNorm over the last dimension, with or without learned scale and shift (PyTorch's
nn.LayerNorm)."""

from __future__ import annotations

from qorus_core import Layer, Spec
from qorus_core.errors import ShapeError
from qorus_core.init import ones, zeros
from qorus_core.validate import boolean, maybe, positive_int, real


class LayerNorm(Layer):
    """(x - mean) / sqrt(var + eps) * weight + bias over the last dimension; no ``weight`` and
    ``bias`` with ``elementwise_affine=False``, no ``bias`` with ``bias=False``."""

    replayable = True   # inference forward: kernel calls only

    def __init__(self, normalized_shape: int | None = None, eps: float = 1e-5,
                 elementwise_affine: bool = True, bias: bool = True) -> None:
        self.normalized_shape = maybe(positive_int, normalized_shape, "normalized_shape",
                                      "mlp.LayerNorm")
        self.eps = real(eps, "eps", "mlp.LayerNorm", lo=0.0)
        self.elementwise_affine = boolean(elementwise_affine, "elementwise_affine",
                                          "mlp.LayerNorm")
        self.bias = boolean(bias, "bias", "mlp.LayerNorm")
        self._has_bias = self.elementwise_affine and self.bias

    def build(self, x: Spec, b) -> Spec:
        """Declare ``weight`` (ones) and ``bias`` (zeros) ``(d,)`` over the last dimension when affine,
        and each row's mean and 1/std saved for backward."""
        d = x.shape[-1]
        if self.normalized_shape is not None and d != self.normalized_shape:
            raise ShapeError(f"expected last dimension {self.normalized_shape}, got {d}")
        rows = x.size // d
        if self.elementwise_affine:
            b.param("weight", (d,), ones())     # gamma (D,)
        if self._has_bias:
            b.param("bias", (d,), zeros())      # beta (D,)
        b.saved("mean", (rows,))                # per-row mean (R,)
        b.saved("rstd", (rows,))                # per-row 1/std (R,)
        return x

    def forward(self, x, ctx):
        """``(x - mean) / sqrt(var + eps) * weight + bias``, row by row."""
        w = ctx.weight if self.elementwise_affine else None
        bias = ctx.bias if self._has_bias else None
        ctx.k.layernorm(x, w, bias, ctx.y, ctx.mean, ctx.rstd, self.eps)
        return ctx.y

    def backward(self, dy, ctx):
        """dx written, dweight and dbias added into, from the saved statistics."""
        affine = self.elementwise_affine
        ctx.k.layernorm_bwd(ctx.x, ctx.weight if affine else None, ctx.mean, ctx.rstd, dy,
                            ctx.dx, ctx.dweight if affine else None,
                            ctx.dbias if self._has_bias else None)
        return ctx.dx
