"""LMHead: hidden states [..., d] to vocabulary logits [..., V] (a bias-free Linear by default)."""

from __future__ import annotations

from qorus_core import Layer, Spec
from qorus_core.errors import ConfigError, ShapeError
from qorus_core.init import torch_linear


class LMHead(Layer):
    """logits = x W^T (+ b); ``weight`` (vocab_size, d_model), PyTorch's Linear layout, so a
    GPT can tie it to its token embedding table (same shape)."""

    def __init__(self, d_model: int, vocab_size: int, bias: bool = False) -> None:
        if int(d_model) <= 0 or int(vocab_size) <= 0:
            raise ConfigError(f"LMHead: sizes must be positive, got d_model={d_model}, "
                              f"vocab_size={vocab_size}")
        self.d_model = int(d_model)
        self.vocab_size = int(vocab_size)
        self.bias = bool(bias)

    def build(self, x: Spec, b) -> Spec:
        if x.shape[-1] != self.d_model:
            raise ShapeError(f"expected last dimension {self.d_model}, got {x.shape}")
        b.param("weight", (self.vocab_size, self.d_model), torch_linear(self.d_model))  # (V, d)
        if self.bias:
            b.param("bias", (self.vocab_size,), torch_linear(self.d_model))
        return Spec(x.shape[:-1] + (self.vocab_size,))

    def forward(self, x, ctx):
        ctx.k.linear(x, ctx.weight, ctx.y)                       # y (R, V) = x W^T (f32 or quantized)
        if self.bias:
            ctx.k.bias_add(ctx.y, ctx.bias)
        return ctx.y

    def backward(self, dy, ctx):
        k = ctx.k
        k.gemm(dy, ctx.x, ctx.dweight, trans_a=True, beta=1.0)   # dW (V, d) += dy^T x
        if self.bias:
            k.col_sum(dy, ctx.dbias, beta=1.0)
        if ctx.dx is not None:
            k.gemm(dy, ctx.weight, ctx.dx)                        # dx (R, d) = dy W
        return ctx.dx
