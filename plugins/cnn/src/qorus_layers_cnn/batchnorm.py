"""BatchNorm2d: per-channel normalisation over (batch, height, width), PyTorch's nn.BatchNorm2d."""

from __future__ import annotations

from qorus_core import Layer, Spec
from qorus_core.errors import ConfigError, ShapeError
from qorus_core.init import ones, zeros
from qorus_core.validate import maybe, positive_int, probability, real

from ._args import nchw


class BatchNorm2d(Layer):
    """(x - mean) / sqrt(var + eps) * weight + bias per channel of [B, C, H, W]. Training
    plans use the batch statistics and update ``running_mean`` / ``running_var`` (unbiased
    variance, ``momentum``); inference plans use the running statistics. The running
    statistics and ``num_batches_tracked`` are persistent buffers (state dict, checkpoints)."""

    def __init__(self, num_features: int | None = None, eps: float = 1e-5,
                 momentum: float = 0.1) -> None:
        name = "cnn.BatchNorm2d"
        self.num_features = maybe(positive_int, num_features, "num_features", name)
        self.eps = real(eps, "eps", name, lo=0.0, lo_open=True)
        if momentum is None:
            raise ConfigError(f"{name}: momentum must be in [0, 1], got None (the cumulative "
                              "average, momentum=None, is not offered)")
        self.momentum = probability(momentum, "momentum", name)

    def build(self, x: Spec, b) -> Spec:
        B, C, H, W = nchw(x)
        if self.num_features is not None and C != self.num_features:
            raise ShapeError(f"expected {self.num_features} channels, got {C}")
        if b.train and B * H * W < 2:
            raise ShapeError(f"training needs more than one value per channel, got {x.shape}")
        b.param("weight", (C,), ones())
        b.param("bias", (C,), zeros())
        b.state("running_mean", (C,), zeros())
        b.state("running_var", (C,), ones())
        b.state("num_batches_tracked", (1,), None, dtype="i32")  # PyTorch: 0-d int64
        b.saved("mean", (C,))
        b.saved("rstd", (C,))
        return x

    def forward(self, x, ctx):
        ctx.k.batchnorm2d(x, ctx.weight, ctx.bias, ctx.y, ctx.mean, ctx.rstd, ctx.running_mean,
                          ctx.running_var, self.eps, self.momentum, ctx.train)
        if ctx.train:
            n = ctx.num_batches_tracked.a
            n += 1
        return ctx.y

    def backward(self, dy, ctx):
        ctx.k.batchnorm2d_bwd(ctx.x, ctx.weight, ctx.mean, ctx.rstd, dy, ctx.dx, ctx.dweight,
                              ctx.dbias)
        return ctx.dx
