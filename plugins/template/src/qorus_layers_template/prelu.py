"""PReLU: a primitive layer with its own forward and backward, on this plugin's own kernels.

    y = x where x > 0, else weight * x        weight: one learned slope per feature (last dim)

Forward and backward are one kernel call each (``kernels.py``, C in ``csrc/tpl_kernels.c``,
registered by ``plugin.py``). The weight has PyTorch's name and shape, so
``nn.PReLU(num_parameters=D)``'s state dict loads as is. Every kernel writes into a view that
``build`` declared: nothing is allocated per step.
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
        """One slope per feature (the last dimension), checked against ``num_parameters``; the output
        has the input's shape."""
        d = x.shape[-1]
        if self.num_parameters is not None and d != self.num_parameters:
            raise ShapeError(f"expected last dimension {self.num_parameters}, got {d}")
        b.param("weight", (d,), constant(self.init))   # ctx.weight, gradient ctx.dweight
        return x                     # same shape out

    def forward(self, x, ctx):
        """One pass of the plugin's own kernel (``k.tpl.prelu``) into the planned output."""
        ctx.k.tpl.prelu(x, ctx.weight, ctx.y)   # this plugin's own kernel (kernels.py)
        return ctx.y

    def backward(self, dy, ctx):
        """dx written (None: not wanted), dweight added into (None: frozen), in one kernel call."""
        # dweight is *added* into (None when frozen); dx is written (None when the input
        # needs no gradient): the kernel takes either as None
        ctx.k.tpl.prelu_bwd(ctx.x, ctx.weight, dy, ctx.dx, ctx.dweight)
        return ctx.dx
