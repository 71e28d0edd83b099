"""Pooling and flattening: MaxPool2d, AvgPool2d (NCHW), MaxPool1d, AvgPool1d (NCL, on the
2-D kernels with a height of 1), GlobalAvgPool2d, Flatten. Output sizes, windows and
divisors are PyTorch's (qorus-core's ``pool_out``, shared with the kernels' checks)."""

from __future__ import annotations

from typing import Any, ClassVar

from qorus_core import Layer, Spec
from qorus_core.errors import ConfigError, ShapeError
from qorus_core.kernels import empty_window, pool_out
from qorus_core.validate import boolean

from ._args import config_value, nchw, planes, sizes
from ._convnd import as4d


class _Pool(Layer):
    """Window geometry shared by the max and average pools (PyTorch's arguments), over
    ``rank`` spatial dims; ``dilation`` is the max pools' only (1 for the average ones)."""

    rank: ClassVar[int] = 2

    def __init__(self, kernel_size: Any = None, stride: Any = None, padding: Any = 0,
                 dilation: Any = 1, ceil_mode: bool = False) -> None:
        name, r = f"cnn.{type(self).__name__}", self.rank
        if kernel_size is None:
            raise ConfigError(f"{name}: kernel_size is required (an int{' or a pair' * (r - 1)})")
        self._k = sizes(name, "kernel_size", kernel_size, 1, r)
        self._s = self._k if stride is None else sizes(name, "stride", stride, 1, r)
        self._p = sizes(name, "padding", padding, 0, r)
        self._d = sizes(name, "dilation", dilation, 1, r)
        if self._p[0] > self._k[0] // 2 or self._p[1] > self._k[1] // 2:
            raise ConfigError(f"{name}: padding={padding!r} must be at most half of "
                              f"kernel_size={kernel_size!r}")
        self.kernel_size = config_value(self._k, r)
        self.stride = None if stride is None else config_value(self._s, r)
        self.padding = config_value(self._p, r)
        self.ceil_mode = boolean(ceil_mode, "ceil_mode", name)

    def _out(self, x: Spec) -> tuple[int, int, int, int]:
        """(B, C, Ho, Wo) of the 2-D kernels (Ho = 1 for a 1-d pool), PyTorch's rule."""
        B, C, H, W = planes(x, self.rank)
        geo = [(n, k, s, p, d) for n, k, s, p, d in zip((H, W), self._k, self._s, self._p, self._d)]
        Ho, Wo = (pool_out(*g, self.ceil_mode) for g in geo)
        size = f"{H}x{W}" if self.rank == 2 else f"length-{W}"
        if Ho < 1 or Wo < 1:
            raise ShapeError(f"kernel {self.kernel_size} does not fit a {size} input padded "
                             f"by {self.padding}")
        if any(g[4] > 1 and empty_window(*g, o) is not None for g, o in zip(geo, (Ho, Wo))):
            raise ShapeError(f"a window of kernel {self.kernel_size} with dilation "
                             f"{config_value(self._d, self.rank)} holds padding only for a "
                             f"{size} input padded by {self.padding}")
        return B, C, Ho, Wo

    def _spec(self, out: tuple[int, int, int, int]) -> Spec:
        return Spec(out if self.rank == 2 else out[:2] + out[3:])


class _MaxPool(_Pool):
    def __init__(self, kernel_size: Any = None, stride: Any = None, padding: Any = 0,
                 dilation: Any = 1, ceil_mode: bool = False) -> None:
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode)
        self.dilation = config_value(self._d, self.rank)

    def build(self, x: Spec, b) -> Spec:
        out = self._out(x)
        b.saved("argmax", out, "i32")
        return self._spec(out)

    def forward(self, x, ctx):
        r = self.rank
        ctx.k.maxpool2d(as4d(ctx, x, r), as4d(ctx, ctx.y, r), ctx.argmax, self._k, self._s,
                        self._p, self._d, self.ceil_mode)
        return ctx.y

    def backward(self, dy, ctx):
        if ctx.dx is not None:
            ctx.k.maxpool2d_bwd(dy, ctx.argmax, as4d(ctx, ctx.dx, self.rank))
        return ctx.dx


class _AvgPool(_Pool):
    def __init__(self, kernel_size: Any = None, stride: Any = None, padding: Any = 0,
                 ceil_mode: bool = False, count_include_pad: bool = True) -> None:
        super().__init__(kernel_size, stride, padding, 1, ceil_mode)
        self.count_include_pad = boolean(count_include_pad, "count_include_pad",
                                         f"cnn.{type(self).__name__}")

    def build(self, x: Spec, b) -> Spec:
        return self._spec(self._out(x))

    def _args(self) -> tuple:
        return self._k, self._s, self._p, self.ceil_mode, self.count_include_pad

    def forward(self, x, ctx):
        r = self.rank
        ctx.k.avgpool2d(as4d(ctx, x, r), as4d(ctx, ctx.y, r), *self._args())
        return ctx.y

    def backward(self, dy, ctx):
        if ctx.dx is not None:
            r = self.rank
            ctx.k.avgpool2d_bwd(as4d(ctx, dy, r), as4d(ctx, ctx.dx, r), *self._args())
        return ctx.dx


class MaxPool2d(_MaxPool):
    """Max over windows [B, C, H, W] -> [B, C, Ho, Wo] (PyTorch's nn.MaxPool2d: stride
    defaults to kernel_size; dilation, ceil_mode; the argmax is kept for backward as int32)."""


class AvgPool2d(_AvgPool):
    """Mean over windows [B, C, H, W] -> [B, C, Ho, Wo] (PyTorch's nn.AvgPool2d: ceil_mode;
    count_include_pad, True by default, counts the zero padding in the divisor)."""


class MaxPool1d(_MaxPool):
    """Max over windows [B, C, L] -> [B, C, Lo] (PyTorch's nn.MaxPool1d)."""

    rank = 1


class AvgPool1d(_AvgPool):
    """Mean over windows [B, C, L] -> [B, C, Lo] (PyTorch's nn.AvgPool1d)."""

    rank = 1


class GlobalAvgPool2d(Layer):
    """Mean over the whole plane [B, C, H, W] -> [B, C] (nn.AdaptiveAvgPool2d(1) + flatten)."""

    def build(self, x: Spec, b) -> Spec:
        """``[B, C, H, W] -> [B, C]``."""
        B, C, _, _ = nchw(x)
        return Spec((B, C))

    def forward(self, x, ctx):
        """The mean over each channel's plane: an average pool of the whole plane."""
        hw = x.shape[2:]
        ctx.k.avgpool2d(x, ctx.y, hw, hw, (0, 0))
        return ctx.y

    def backward(self, dy, ctx):
        """Spread each channel's gradient evenly over its plane (nothing when dx is not wanted)."""
        if ctx.dx is not None:
            hw = ctx.dx.shape[2:]
            ctx.k.avgpool2d_bwd(dy, ctx.dx, hw, hw, (0, 0))
        return ctx.dx


class Flatten(Layer):
    """[B, ...] -> [B, prod(...)]: a zero-copy view of the input (PyTorch's nn.Flatten())."""

    def build(self, x: Spec, b) -> Spec:
        """``[B, ...] -> [B, prod(...)]`` as a view of the input's memory."""
        if len(x.shape) < 2:
            raise ShapeError(f"expected [batch, ...] with at least one feature dimension, got "
                             f"rank {len(x.shape)}")
        return b.view_input((x.shape[0], x.size // x.shape[0]))

    def forward(self, x, ctx):
        """Nothing to compute: the output is a view of the input."""
        return ctx.y

    def backward(self, dy, ctx):
        """Nothing to compute: dx is a view of dy."""
        return ctx.dx
