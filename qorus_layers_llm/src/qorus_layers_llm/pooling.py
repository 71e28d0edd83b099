"""MeanPool: the mean over the unpadded positions of [B, T, d] -> [B, d], the pooling of
sentence encoders (sentence-transformers' ``mean`` mode); a row of padding only gives 0."""

from __future__ import annotations

from qorus_core import Layer, Spec
from qorus_core.errors import ShapeError


class MeanPool(Layer):
    """``pool(x, key_padding_mask=None)``: x [B, T, d], mask bool [B, T] (True: padding, left
    out of the mean; PyTorch's key_padding_mask convention). No parameters."""

    inputs = ("x", "key_padding_mask?")
    replayable = True   # inference forward: kernel calls only

    def build(self, xs: tuple, b) -> Spec:
        """``[B, T, d]`` (and an optional ``key_padding_mask`` ``[B, T]``, True at padding) -> ``[B,
        d]``."""
        x, pad = xs
        where = b.path or "MeanPool"
        if len(x.shape) != 3 or x.dtype != "f32":
            raise ShapeError(f"{where}: x must be float [B, T, d], got {x.shape} {x.dtype}")
        if pad is not None and (pad.shape != x.shape[:2] or pad.dtype != "i32"):
            raise ShapeError(f"{where}: key_padding_mask must be bool {list(x.shape[:2])}, got "
                             f"{pad.shape} {pad.dtype}")
        return Spec((x.shape[0], x.shape[2]))

    def forward(self, x, ctx):
        """The mean over the unpadded positions of each sequence."""
        ctx.k.masked_mean(x, ctx.xs[1], ctx.y)
        return ctx.y

    def backward(self, dy, ctx):
        """dy shared evenly among each sequence's unpadded positions."""
        if ctx.dx is not None:
            ctx.k.masked_mean_bwd(dy, ctx.xs[1], ctx.dx)
        return ctx.dx
