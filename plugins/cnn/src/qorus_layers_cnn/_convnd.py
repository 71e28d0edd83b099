"""What Conv1d and Conv2d share: PyTorch's arguments, the string paddings, and the run on
qorus-core's 2-D convolution kernels (a 1-d layer is a 2-d one of height 1, as views)."""

from __future__ import annotations

from typing import Any, ClassVar

from qorus_core import Layer, Spec
from qorus_core.errors import ConfigError, ShapeError
from qorus_core.init import torch_linear
from qorus_core.validate import boolean

from ._args import Pair, config_value, conv_channels, planes, sizes


def out_size(n: int, k: int, stride: int, pad: int, dilation: int = 1) -> int:
    """PyTorch's output length: (n + 2 pad - dilation (k - 1) - 1) // stride + 1."""
    return (n + 2 * pad - dilation * (k - 1) - 1) // stride + 1


def strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Contiguous element strides of ``shape``."""
    out, s = [], 1
    for d in reversed(shape):
        out.append(s)
        s *= d
    return tuple(reversed(out))


def as4d(ctx, t, rank: int):
    """``t`` as the 4-D tensor the 2-D kernels take: itself, or for a 1-d layer a cached view
    with a height of 1 inserted after the channels (None and 4-D tensors stay as they are)."""
    if t is None or rank == 2 or len(t.shape) == 4:
        return t
    return ctx.view(t, tuple(t.shape[:2]) + (1,) + tuple(t.shape[2:]))


def same_padding(k: Pair, d: Pair) -> tuple[Pair, Pair]:
    """padding="same" (stride 1) as (symmetric padding, crop) per axis. The total padding
    d (k - 1) goes half left, the odd one extra right (PyTorch's); the kernels pad
    symmetrically, so an odd total is padded by one more on both sides and the one extra
    output at the start is cropped."""
    tot = (d[0] * (k[0] - 1), d[1] * (k[1] - 1))
    crop = (tot[0] % 2, tot[1] % 2)
    return (tot[0] // 2 + crop[0], tot[1] // 2 + crop[1]), crop


class ConvNd(Layer):
    """Convolution over ``rank`` spatial dims (1: [B, C, L], 2: [B, C, H, W]), PyTorch's
    ConvNd arguments, layouts, names and default initialisation."""

    rank: ClassVar[int] = 2

    def __init__(self, in_channels: int | None = None, out_channels: int | None = None,
                 kernel_size: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
                 groups: int = 1, bias: bool = True) -> None:
        name, r = f"cnn.{type(self).__name__}", self.rank
        in_channels, out_channels, groups = conv_channels(name, r, in_channels, out_channels,
                                                          kernel_size, groups)
        self._k = sizes(name, "kernel_size", kernel_size, 1, r)
        self._s = sizes(name, "stride", stride, 1, r)
        self._d = sizes(name, "dilation", dilation, 1, r)
        self._crop = (0, 0)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ConfigError(f"{name}: padding={padding!r} must be an int"
                                  f"{' or a pair' * (r - 1)}, 'same' or 'valid'")
            if padding == "same" and self._s != (1, 1):
                raise ConfigError(f"{name}: padding='same' needs stride 1, got stride={stride!r}")
            self._p, self._crop = (same_padding(self._k, self._d) if padding == "same"
                                   else ((0, 0), (0, 0)))
            self.padding: Any = padding
        else:
            self._p = sizes(name, "padding", padding, 0, r)
            self.padding = config_value(self._p, r)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = config_value(self._k, r), config_value(self._s, r)
        self.dilation = config_value(self._d, r)
        self.groups, self.bias = groups, boolean(bias, "bias", name)

    def _weight_shape(self, cg: int) -> tuple[int, ...]:
        return (self.out_channels, cg) + (self._k if self.rank == 2 else (self._k[1],))

    def build(self, x: Spec, b) -> Spec:
        B, C, H, W = planes(x, self.rank)
        if self.in_channels is not None and C != self.in_channels:
            raise ShapeError(f"expected {self.in_channels} input channels, got {C}")
        if C % self.groups:
            raise ShapeError(f"{C} input channels are not a multiple of groups={self.groups}")
        (R, S), (sh, sw), (ph, pw), (dh, dw) = self._k, self._s, self._p, self._d
        Ho, Wo = out_size(H, R, sh, ph, dh), out_size(W, S, sw, pw, dw)
        if Ho < 1 or Wo < 1:
            size = f"{H}x{W}" if self.rank == 2 else f"length-{W}"
            raise ShapeError(f"kernel {self.kernel_size} (dilation {self.dilation}) does not fit "
                             f"a {size} input padded by {self.padding}")
        fan_in = C // self.groups * R * S
        b.param("weight", self._weight_shape(C // self.groups), torch_linear(fan_in))
        if self.bias:
            b.param("bias", (self.out_channels,), torch_linear(fan_in))
        if self._crop != (0, 0):
            b.scratch("wide", (B, self.out_channels, Ho, Wo))
        ch, cw = self._crop
        out = (B, self.out_channels, Ho - ch, Wo - cw)
        return Spec(out if self.rank == 2 else out[:2] + out[3:])

    def _crop_copy(self, ctx) -> tuple[tuple[int, ...], int, tuple[int, ...], tuple[int, ...]]:
        """(shape, offset, wide's strides, y's strides) of y as a window of ``wide``."""
        wide = tuple(ctx.wide.shape)
        shape = wide[:2] + (wide[2] - self._crop[0], wide[3] - self._crop[1])
        ws = strides(wide)
        return shape, self._crop[0] * ws[2] + self._crop[1], ws, strides(shape)

    def _window(self, ctx):
        v = ctx.__dict__.get("_crop_plan")
        if v is None:
            v = ctx.__dict__["_crop_plan"] = self._crop_copy(ctx)
        return v

    def forward(self, x, ctx):
        r = self.rank
        crop = self._crop != (0, 0)
        y = ctx.wide if crop else as4d(ctx, ctx.y, r)
        ctx.k.conv2d(as4d(ctx, x, r), as4d(ctx, ctx.weight, r), ctx.bias if self.bias else None,
                     y, self._s, self._p, self._d, self.groups)
        if crop:
            shape, off, ws, ys = self._window(ctx)
            ctx.k.strided_copy(ctx.wide, ctx.y, shape, off, ws, 0, ys)
        return ctx.y

    def backward(self, dy, ctx):
        r = self.rank
        if self._crop != (0, 0):          # dy into the window of a zeroed wide gradient
            shape, off, ws, ys = self._window(ctx)
            ctx.k.fill(ctx.wide, 0.0)
            ctx.k.strided_copy(dy, ctx.wide, shape, 0, ys, off, ws)
            dy = ctx.wide
        ctx.k.conv2d_bwd(as4d(ctx, ctx.x, r), as4d(ctx, ctx.weight, r), as4d(ctx, dy, r),
                         as4d(ctx, ctx.dx, r), as4d(ctx, ctx.dweight, r),
                         ctx.dbias if self.bias else None, self._s, self._p, self._d,
                         self.groups)
        return ctx.dx
