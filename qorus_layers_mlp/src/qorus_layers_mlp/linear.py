"""Linear: y = x W^T + b, with PyTorch's weight layout (out, in) and default init."""

from __future__ import annotations

from qorus_core import Layer, Spec
from qorus_core.errors import ShapeError
from qorus_core.init import torch_linear
from qorus_core.validate import boolean, maybe, positive_int


class Linear(Layer):
    """Fully connected layer y = x W^T + b over the last dimension (PyTorch's nn.Linear)."""

    replayable = True   # inference forward: kernel calls only

    def __init__(self, in_features: int | None = None, out_features: int | None = None,
                 bias: bool = True) -> None:
        self.in_features = maybe(positive_int, in_features, "in_features", "mlp.Linear")
        self.out_features = positive_int(out_features, "out_features", "mlp.Linear")
        self.bias = boolean(bias, "bias", "mlp.Linear")

    def build(self, x: Spec, b) -> Spec:
        """``(..., in) -> (..., out_features)``; declares ``weight`` ``(out, in)`` and ``bias``
        ``(out,)``, PyTorch's names and default initialization."""
        n_in = x.shape[-1]
        if self.in_features is not None and n_in != self.in_features:
            raise ShapeError(f"expected {self.in_features} input features, got {n_in}")
        b.param("weight", (self.out_features, n_in), torch_linear(n_in))  # W: (out, in)
        if self.bias:
            b.param("bias", (self.out_features,), torch_linear(n_in))      # b: (out,)
        return Spec(x.shape[:-1] + (self.out_features,))

    def forward(self, x, ctx):
        """``y = x W^T + b`` (W float32 or quantized)."""
        ctx.k.linear(x, ctx.weight, ctx.y)                      # y (R, out) = x (R, in) W^T
        if self.bias:
            ctx.k.bias_add(ctx.y, ctx.bias)
        return ctx.y

    def backward(self, dy, ctx):
        """``dW += dy^T x``, ``db += sum over rows of dy``, ``dx = dy W`` (when wanted)."""
        k = ctx.k
        k.gemm(dy, ctx.x, ctx.dweight, trans_a=True, beta=1.0)  # dW (out, in) += dy^T x
        if self.bias:
            k.col_sum(dy, ctx.dbias, beta=1.0)                   # db (out,) += sum_r dy
        if ctx.dx is not None:
            k.gemm(dy, ctx.weight, ctx.dx)                       # dx (R, in) = dy W
        return ctx.dx
