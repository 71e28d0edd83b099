"""Elementwise activations: each is a forward kernel and its ``_bwd`` twin, which reads the
layer's input (``ctx.x``) or, where cheaper, its output (``ctx.y``), with PyTorch's semantics
(the kernels follow torch.nn.functional's formulas and branch conditions)."""

from __future__ import annotations

from typing import ClassVar

from qorus_core import Layer, Spec
from qorus_core.errors import ConfigError
from qorus_core.validate import real


class _Pointwise(Layer):
    """A shape-keeping layer computed by kernel ``<kernel>`` with backward ``<kernel>_bwd``,
    both given the scalars ``_args`` after their tensors."""

    replayable = True   # inference forward: kernel calls only

    kernel: ClassVar[str]
    kernel_bwd: ClassVar[str]                   # "<kernel>_bwd", set once per subclass
    grad_reads_output: ClassVar[bool] = False   # backward takes y instead of x
    _args: tuple[float, ...] = ()               # the kernels' scalar arguments

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls.kernel_bwd = cls.kernel + "_bwd"    # not rebuilt on every backward call

    def build(self, x: Spec, b) -> Spec:
        return x

    def forward(self, x, ctx):
        getattr(ctx.k, self.kernel)(x, ctx.y, *self._args)
        return ctx.y

    def backward(self, dy, ctx):
        saved = ctx.y if self.grad_reads_output else ctx.x
        getattr(ctx.k, self.kernel_bwd)(saved, dy, ctx.dx, *self._args)
        return ctx.dx


class ReLU(_Pointwise):
    """max(x, 0)."""

    kernel = "relu"


class SiLU(_Pointwise):
    """x * sigmoid(x) (a.k.a. swish)."""

    kernel = "silu"


class Tanh(_Pointwise):
    """tanh(x)."""

    kernel, grad_reads_output = "tanh", True


class Sigmoid(_Pointwise):
    """1 / (1 + exp(-x))."""

    kernel, grad_reads_output = "sigmoid", True


class Softmax(_Pointwise):
    """softmax over the last dimension (for probabilities; train on logits with CrossEntropy)."""

    kernel, grad_reads_output = "softmax", True


class LeakyReLU(_Pointwise):
    """x for x > 0, else negative_slope * x (PyTorch's nn.LeakyReLU)."""

    kernel = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01) -> None:
        self.negative_slope = real(negative_slope, "negative_slope", "mlp.LeakyReLU")
        self._args = (self.negative_slope,)


class ELU(_Pointwise):
    """x for x > 0, else alpha * (exp(x) - 1) (PyTorch's nn.ELU)."""

    kernel = "elu"

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = real(alpha, "alpha", "mlp.ELU")
        self._args = (self.alpha,)


class Softplus(_Pointwise):
    """log(1 + exp(beta x)) / beta, and x where beta x > threshold (PyTorch's nn.Softplus)."""

    kernel = "softplus"

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        self.beta = real(beta, "beta", "mlp.Softplus")
        if self.beta == 0.0:
            raise ConfigError("mlp.Softplus: beta must be a nonzero finite number, got 0")
        self.threshold = real(threshold, "threshold", "mlp.Softplus")
        self._args = (self.beta, self.threshold)


class Mish(_Pointwise):
    """x * tanh(softplus(x)) (PyTorch's nn.Mish)."""

    kernel = "mish"


class Hardswish(_Pointwise):
    """x * relu6(x + 3) / 6 (PyTorch's nn.Hardswish)."""

    kernel = "hardswish"


class GELU(Layer):
    """x * Phi(x); ``approximate="tanh"`` for the tanh form (PyTorch's nn.GELU)."""

    replayable = True   # inference forward: kernel calls only

    def __init__(self, approximate: str = "none") -> None:
        if approximate not in ("none", "tanh"):
            raise ConfigError(f"mlp.GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate
        self._tanh = approximate == "tanh"

    def build(self, x: Spec, b) -> Spec:
        """The output: the input's shape."""
        return x

    def forward(self, x, ctx):
        """GELU, exact (erf) or the tanh approximation."""
        ctx.k.gelu(x, ctx.y, self._tanh)
        return ctx.y

    def backward(self, dy, ctx):
        """dx from the saved input."""
        ctx.k.gelu_bwd(ctx.x, dy, ctx.dx, self._tanh)
        return ctx.dx
