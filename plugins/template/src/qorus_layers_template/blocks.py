"""ResidualMLP: a composite layer. It wires other layers in ``build`` and writes no forward or
backward: the graph runs its children in order and derives the backward pass."""

from __future__ import annotations

from qorus_core import Composite
from qorus_core.errors import ConfigError
from qorus_layers_mlp import LayerNorm, Linear

from .prelu import PReLU


class ResidualMLP(Composite):
    """x + Linear(PReLU(Linear(LayerNorm(x)))): a pre-norm feed-forward block that keeps the shape."""

    def __init__(self, hidden: int, norm: bool = True, init: float = 0.25) -> None:
        if int(hidden) <= 0:
            raise ConfigError(f"ResidualMLP: hidden must be a positive int, got {hidden!r}")
        self.hidden = int(hidden)
        self.norm = bool(norm)
        self.init = float(init)

    def build(self, x, b):
        """``x + down(PReLU(up(LayerNorm(x))))``: the children's parameters are named ``norm.*``,
        ``up.*``, ``act.*`` and ``down.*``; the graph derives the backward."""
        # x is a symbolic Value; b.call(child, value, name) runs a child layer, and name
        # becomes part of its parameter names ("<path>.up.weight", ...).
        h = b.call(LayerNorm(), x, "norm") if self.norm else x
        h = b.call(Linear(None, self.hidden), h, "up")
        h = b.call(PReLU(init=self.init), h, "act")
        h = b.call(Linear(None, x.shape[-1]), h, "down")
        return b.add(x, h)          # the residual sum; its gradient fans out to both inputs
