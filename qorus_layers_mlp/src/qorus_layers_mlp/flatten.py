"""Flatten: a reshape that costs nothing (the output is a view of the input's memory)."""

from __future__ import annotations

from qorus_core import Layer, Spec
from qorus_core.errors import ConfigError


class Flatten(Layer):
    """Merge dimensions ``start_dim`` .. last into one (PyTorch's nn.Flatten, end_dim=-1)."""

    replayable = True   # inference forward: kernel calls only

    def __init__(self, start_dim: int = 1) -> None:
        if int(start_dim) < 1:
            raise ConfigError(f"Flatten: start_dim must be >= 1 (the batch stays), got {start_dim}")
        self.start_dim = int(start_dim)

    def build(self, x: Spec, b) -> Spec:
        keep = x.shape[:self.start_dim]
        rest = 1
        for d in x.shape[self.start_dim:]:
            rest *= d
        return b.view_input(keep + (rest,))

    def forward(self, x, ctx):
        return ctx.y

    def backward(self, dy, ctx):
        return ctx.dx
