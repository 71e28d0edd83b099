"""GroupNorm: per-sample normalisation over groups of channels, PyTorch's nn.GroupNorm."""

from __future__ import annotations

from qorus_core import Layer, Spec
from qorus_core.errors import ConfigError, ShapeError
from qorus_core.init import ones, zeros
from qorus_core.validate import boolean, positive_int, real


class GroupNorm(Layer):
    """[B, C, *] -> same shape: the C channels split into ``num_groups`` groups; each sample's
    group is normalised by its own mean and (biased) variance over the group's channels and
    the spatial dims, then scaled by ``weight`` and shifted by ``bias`` per channel
    (``affine=False``: neither). The same in training and inference (no running statistics):
    independent of the batch size, which BatchNorm is not."""

    def __init__(self, num_groups: int | None = None, num_channels: int | None = None,
                 eps: float = 1e-5, affine: bool = True) -> None:
        name = "cnn.GroupNorm"
        self.num_groups = positive_int(num_groups, "num_groups", name)
        self.num_channels = positive_int(num_channels, "num_channels", name)
        if self.num_channels % self.num_groups:
            raise ConfigError(f"{name}: num_channels={num_channels} must be divisible by "
                              f"num_groups={num_groups}")
        self.eps = real(eps, "eps", name, lo=0.0, lo_open=True)
        self.affine = boolean(affine, "affine", name)

    def build(self, x: Spec, b) -> Spec:
        """Check ``[batch, num_channels, *]``; declare ``weight`` and ``bias`` ``(C,)`` when affine, and
        the per-group mean and 1/std saved for backward."""
        if len(x.shape) < 2:
            raise ShapeError(f"expected [batch, channels, *], got rank {len(x.shape)}")
        B, C = x.shape[:2]
        if C != self.num_channels:
            raise ShapeError(f"expected {self.num_channels} channels (num_channels), got {C}")
        if x.size == 0:
            raise ShapeError(f"expected a non-empty input, got {x.shape}")
        if self.affine:
            b.param("weight", (C,), ones())
            b.param("bias", (C,), zeros())
        b.saved("mean", (B, self.num_groups))
        b.saved("rstd", (B, self.num_groups))
        return x

    def forward(self, x, ctx):
        """Normalize each group of channels over it and the spatial positions, then scale and shift."""
        w, bias = (ctx.weight, ctx.bias) if self.affine else (None, None)
        ctx.k.groupnorm(x, w, bias, ctx.y, ctx.mean, ctx.rstd, self.num_groups, self.eps)
        return ctx.y

    def backward(self, dy, ctx):
        """dx written, dweight and dbias added into, from the saved statistics."""
        w, dw, db = (ctx.weight, ctx.dweight, ctx.dbias) if self.affine else (None, None, None)
        ctx.k.groupnorm_bwd(ctx.x, w, ctx.mean, ctx.rstd, dy, ctx.dx, dw, db, self.num_groups)
        return ctx.dx
