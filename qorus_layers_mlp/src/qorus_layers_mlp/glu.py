"""GLU: the input split in halves along a dimension, a * sigmoid(b) (PyTorch's nn.GLU)."""

from __future__ import annotations

import math

from qorus_core import Layer, Spec
from qorus_core.errors import ConfigError, ShapeError
from qorus_core.validate import integer


class GLU(Layer):
    """[a | b] = the input halved along ``dim`` (not the batch dimension): a * sigmoid(b).

    A contiguous (..., 2h, inner...) split at ``dim`` is rows of [a | b] with m = h * inner
    elements each, so one kernel (``glu``, on that view) serves every ``dim``."""

    replayable = True   # inference forward: kernel calls only

    def __init__(self, dim: int = -1) -> None:
        self.dim = integer(dim, "dim", "mlp.GLU")
        if self.dim == 0:
            raise ConfigError("mlp.GLU: dim must not be 0 (the batch dimension), got 0")

    def _axis(self, shape: tuple[int, ...]) -> int:
        d = self.dim + len(shape) if self.dim < 0 else self.dim
        if not 1 <= d < len(shape):
            raise ShapeError(f"dim {self.dim} is not a feature dimension of input {shape}")
        return d

    def build(self, x: Spec, b) -> Spec:
        """The output: the input with dimension ``dim`` halved (it must be even)."""
        d = self._axis(x.shape)
        if x.shape[d] % 2:
            raise ShapeError(f"dim {self.dim} of input {x.shape} has odd size {x.shape[d]}: "
                             "GLU halves it")
        return Spec(x.shape[:d] + (x.shape[d] // 2,) + x.shape[d + 1:])

    def _views(self, ctx, wide, half):
        """``wide`` (the input's shape) and ``half`` (the output's) as [rows, 2m] and
        [rows, m]: themselves for the last dim, else views made once (ctx.view caches them)."""
        d = self._axis(wide.shape)
        if d == len(wide.shape) - 1:
            return wide, half
        rows, m = math.prod(wide.shape[:d]), math.prod(half.shape[d:])
        return ctx.view(wide, (rows, 2 * m)), ctx.view(half, (rows, m))

    def forward(self, x, ctx):
        """``a * sigmoid(b)`` of the two halves ``a``, ``b`` along ``dim``."""
        ctx.k.glu(*self._views(ctx, x, ctx.y))
        return ctx.y

    def backward(self, dy, ctx):
        """Both halves' gradients written into dx."""
        if ctx.dx is None:
            return None
        xv, dyv = self._views(ctx, ctx.x, dy)
        ctx.k.glu_bwd(xv, dyv, self._views(ctx, ctx.dx, dy)[0])
        return ctx.dx
