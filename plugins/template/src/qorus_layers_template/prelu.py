"""PReLU: a primitive layer with its own forward and backward, written with core kernels only.

    y = max(x, 0) + weight * min(x, 0)        weight: one learned slope per feature (last dim)

The weight has PyTorch's name and shape, so ``nn.PReLU(num_parameters=D)``'s state dict loads
as is. Every kernel writes into a view that ``build`` declared: nothing is allocated per step.
"""

from __future__ import annotations

from qorus_core import Layer, Spec
from qorus_core.errors import ConfigError, ShapeError
from qorus_core.init import constant


class PReLU(Layer):
    """max(x, 0) + weight * min(x, 0), one learned slope per feature (PyTorch's nn.PReLU(D))."""

    def __init__(self, num_parameters: int | None = None, init: float = 0.25) -> None:
        # Store every constructor argument under its own name: get_config() reads them back,
        # which is how the layer round-trips through TOML, JSON and checkpoints.
        if num_parameters is not None and int(num_parameters) <= 0:
            raise ConfigError(f"PReLU: num_parameters must be positive, got {num_parameters!r}")
        self.num_parameters = None if num_parameters is None else int(num_parameters)
        self.init = float(init)

    def build(self, x: Spec, b) -> Spec:
        d = x.shape[-1]
        if self.num_parameters is not None and d != self.num_parameters:
            raise ShapeError(f"expected last dimension {self.num_parameters}, got {d}")
        b.param("weight", (d,), constant(self.init))   # ctx.weight, gradient ctx.dweight
        b.saved("neg", x.shape)     # min(x, 0): written in forward, read in backward
        b.scratch("tmp", x.shape)   # within one call only (memory reused between calls)
        return x                     # same shape out

    def forward(self, x, ctx):
        k = ctx.k
        k.relu(x, ctx.y)                  # y = max(x, 0)
        k.copy(x, ctx.neg)
        k.axpy(-1.0, ctx.y, ctx.neg)      # neg = x - max(x, 0) = min(x, 0)
        k.mul_bcast(ctx.neg, ctx.weight, ctx.tmp)  # tmp[r, d] = min(x, 0)[r, d] * weight[d]
        k.add(ctx.y, ctx.tmp, ctx.y)      # y = max(x, 0) + weight * min(x, 0)
        return ctx.y

    def backward(self, dy, ctx):
        k = ctx.k
        if ctx.dweight is not None:       # parameter gradients are *added* into
            k.mul(dy, ctx.neg, ctx.tmp)
            k.col_sum(ctx.tmp, ctx.dweight, beta=1.0)   # dweight[d] += sum_r dy * min(x, 0)
        if ctx.dx is not None:            # None when the input needs no gradient
            k.relu_bwd(ctx.x, dy, ctx.dx)  # dx = dy where x > 0, else 0
            k.copy(dy, ctx.tmp)
            k.axpy(-1.0, ctx.dx, ctx.tmp)  # tmp = dy where x <= 0, else 0
            k.mul_bcast(ctx.tmp, ctx.weight, ctx.tmp)
            k.add(ctx.dx, ctx.tmp, ctx.dx)  # dx += weight * dy where x <= 0
        return ctx.dx
