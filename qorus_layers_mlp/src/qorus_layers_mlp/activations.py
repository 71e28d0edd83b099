"""Elementwise activations; each backward reads the input (``ctx.x``) or output (``ctx.y``)."""

from __future__ import annotations

from qorus_core import Layer, Spec
from qorus_core.errors import ConfigError


class _Elementwise(Layer):
    def build(self, x: Spec, b) -> Spec:
        return x


class ReLU(_Elementwise):
    """max(x, 0)."""

    def forward(self, x, ctx):
        ctx.k.relu(x, ctx.y)
        return ctx.y

    def backward(self, dy, ctx):
        ctx.k.relu_bwd(ctx.x, dy, ctx.dx)
        return ctx.dx


class GELU(_Elementwise):
    """x * Phi(x); ``approximate="tanh"`` for the tanh form (PyTorch's nn.GELU)."""

    def __init__(self, approximate: str = "none") -> None:
        if approximate not in ("none", "tanh"):
            raise ConfigError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate
        self._tanh = approximate == "tanh"

    def forward(self, x, ctx):
        ctx.k.gelu(x, ctx.y, self._tanh)
        return ctx.y

    def backward(self, dy, ctx):
        ctx.k.gelu_bwd(ctx.x, dy, ctx.dx, self._tanh)
        return ctx.dx


class SiLU(_Elementwise):
    """x * sigmoid(x) (a.k.a. swish)."""

    def forward(self, x, ctx):
        ctx.k.silu(x, ctx.y)
        return ctx.y

    def backward(self, dy, ctx):
        ctx.k.silu_bwd(ctx.x, dy, ctx.dx)
        return ctx.dx


class Tanh(_Elementwise):
    """tanh(x)."""

    def forward(self, x, ctx):
        ctx.k.tanh(x, ctx.y)
        return ctx.y

    def backward(self, dy, ctx):
        ctx.k.tanh_bwd(ctx.y, dy, ctx.dx)
        return ctx.dx


class Sigmoid(_Elementwise):
    """1 / (1 + exp(-x))."""

    def forward(self, x, ctx):
        ctx.k.sigmoid(x, ctx.y)
        return ctx.y

    def backward(self, dy, ctx):
        ctx.k.sigmoid_bwd(ctx.y, dy, ctx.dx)
        return ctx.dx


class Softmax(_Elementwise):
    """softmax over the last dimension (for probabilities; train on logits with CrossEntropy)."""

    def forward(self, x, ctx):
        ctx.k.softmax(x, ctx.y)
        return ctx.y

    def backward(self, dy, ctx):
        ctx.k.softmax_bwd(ctx.y, dy, ctx.dx)
        return ctx.dx
