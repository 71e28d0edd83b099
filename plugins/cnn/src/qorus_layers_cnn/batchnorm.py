"""BatchNorm2d and BatchNorm1d: per-channel normalisation over the batch (and the spatial
dims), PyTorch's nn.BatchNorm2d / nn.BatchNorm1d, on one pair of kernels."""

from __future__ import annotations

from typing import ClassVar

from qorus_core import Layer, Spec
from qorus_core.errors import ConfigError, ShapeError
from qorus_core.init import ones, zeros
from qorus_core.validate import boolean, maybe, positive_int, probability, real

from .batchnorm_sync import sync_backward, sync_forward


class _BatchNorm(Layer):
    """(x - mean) / sqrt(var + eps) * weight + bias per channel (axis 1). Training plans use
    the batch statistics and update ``running_mean`` / ``running_var`` (unbiased variance,
    ``momentum``); inference plans use the running statistics. The running statistics and
    ``num_batches_tracked`` are persistent buffers (state dict, checkpoints); ``affine=False``
    keeps no weight and bias (1 and 0). ``synchronized``: in a data-parallel job the batch
    statistics are those of the global batch, reduced over the ranks (PyTorch's SyncBatchNorm;
    see ``batchnorm_sync.py``), instead of each rank's own (DDP's default)."""

    #: the input ranks taken, and how an error names them
    ranks: ClassVar[tuple[int, ...]] = (4,)
    layout: ClassVar[str] = "an NCHW input [batch, channels, height, width]"

    def __init__(self, num_features: int | None = None, eps: float = 1e-5,
                 momentum: float = 0.1, affine: bool = True, synchronized: bool = False) -> None:
        name = f"cnn.{type(self).__name__}"
        self.num_features = maybe(positive_int, num_features, "num_features", name)
        self.eps = real(eps, "eps", name, lo=0.0, lo_open=True)
        if momentum is None:
            raise ConfigError(f"{name}: momentum must be in [0, 1], got None (the cumulative "
                              "average, momentum=None, is not offered)")
        self.momentum = probability(momentum, "momentum", name)
        self.affine = boolean(affine, "affine", name)
        self.synchronized = boolean(synchronized, "synchronized", name)

    def build(self, x: Spec, b) -> Spec:
        if len(x.shape) not in self.ranks:
            raise ShapeError(f"expected {self.layout}, got rank {len(x.shape)}")
        B, C = x.shape[:2]
        if self.num_features is not None and C != self.num_features:
            raise ShapeError(f"expected {self.num_features} channels, got {C}")
        if b.train and x.size // C < 2:
            raise ShapeError(f"training needs more than one value per channel, got {x.shape}")
        if self.affine:
            b.param("weight", (C,), ones())
            b.param("bias", (C,), zeros())
        b.state("running_mean", (C,), zeros())
        b.state("running_var", (C,), ones())
        b.state("num_batches_tracked", (1,), None, dtype="i32")  # PyTorch: 0-d int64
        b.saved("mean", (C,))
        b.saved("rstd", (C,))
        if b.train and self.synchronized:         # the global statistics' work buffers
            per_channel = (1, C) + (1,) * (len(x.shape) - 2)
            for name in ("sync_mean", "sync_var", "sync_dw", "sync_db"):
                b.scratch(name, (C,))
            for name in ("sync_coef_g", "sync_coef_d", "sync_coef_e"):
                b.scratch(name, per_channel)
            b.scratch("sync_tmp", x.shape)
        return x

    def forward(self, x, ctx):
        w, bias = (ctx.weight, ctx.bias) if self.affine else (None, None)
        if ctx.train and self.synchronized and ctx.run.comm.size > 1:
            sync_forward(self, x, ctx, w, bias)
        else:
            ctx.k.batchnorm2d(x, w, bias, ctx.y, ctx.mean, ctx.rstd, ctx.running_mean,
                              ctx.running_var, self.eps, self.momentum, ctx.train)
        if ctx.train:
            n = ctx.num_batches_tracked.a
            n += 1
        return ctx.y

    def backward(self, dy, ctx):
        w, dw, db = (ctx.weight, ctx.dweight, ctx.dbias) if self.affine else (None, None, None)
        if self.synchronized and ctx.run.comm.size > 1:
            sync_backward(self, dy, ctx, w, dw, db)
            return ctx.dx
        ctx.k.batchnorm2d_bwd(ctx.x, w, ctx.mean, ctx.rstd, dy, ctx.dx, dw, db)
        return ctx.dx


class BatchNorm2d(_BatchNorm):
    """BatchNorm over (batch, height, width) of [B, C, H, W] (PyTorch's nn.BatchNorm2d)."""


class BatchNorm1d(_BatchNorm):
    """BatchNorm over the batch of [B, C], or over (batch, length) of [B, C, L] (PyTorch's
    nn.BatchNorm1d)."""

    ranks = (2, 3)
    layout = "[batch, channels] or [batch, channels, length]"
