"""Identity: the input passed on, as a view (no copy, no kernel; PyTorch's nn.Identity)."""

from __future__ import annotations

from qorus_core import Layer, Spec


class Identity(Layer):
    """y = x: the output is the input's memory and the input gradient the output's."""

    replayable = True   # inference forward: kernel calls only

    def build(self, x: Spec, b) -> Spec:
        """The output is a view of the input."""
        return b.view_input(x.shape)

    def forward(self, x, ctx):
        """Nothing to compute."""
        return ctx.y

    def backward(self, dy, ctx):
        """Nothing to compute: dx is a view of dy."""
        return ctx.dx
