"""Flatten: a reshape that costs nothing (the output is a view of the input's memory)."""

from __future__ import annotations

from qorus_core import Layer, Spec
from qorus_core.validate import integer


class Flatten(Layer):
    """Merge dimensions ``start_dim`` .. last into one (PyTorch's nn.Flatten, end_dim=-1)."""

    replayable = True   # inference forward: kernel calls only

    def __init__(self, start_dim: int = 1) -> None:
        self.start_dim = integer(start_dim, "start_dim", "mlp.Flatten", lo=1,
                                 want="an int >= 1 (the batch dimension stays)")

    def build(self, x: Spec, b) -> Spec:
        """A view of the input with the dimensions from ``start_dim`` on merged into one."""
        keep = x.shape[:self.start_dim]
        rest = 1
        for d in x.shape[self.start_dim:]:
            rest *= d
        return b.view_input(keep + (rest,))

    def forward(self, x, ctx):
        """Nothing to compute: the output is a view of the input."""
        return ctx.y

    def backward(self, dy, ctx):
        """Nothing to compute: dx is a view of dy."""
        return ctx.dx
