"""Pooling and flattening over NCHW: MaxPool2d, AvgPool2d, GlobalAvgPool2d, Flatten."""

from __future__ import annotations

from typing import Any

from qorus_core import Layer, Spec
from qorus_core.errors import ConfigError, ShapeError

from ._args import config_value, nchw, pair
from .conv import out_size


class _Pool2d(Layer):
    """Window geometry shared by the max and average pools (PyTorch's arguments)."""

    def __init__(self, kernel_size: Any = None, stride: Any = None, padding: Any = 0) -> None:
        name = f"cnn.{type(self).__name__}"
        if kernel_size is None:
            raise ConfigError(f"{name}: kernel_size is required (an int or a pair)")
        self._k = pair(name, "kernel_size", kernel_size, 1)
        self._s = self._k if stride is None else pair(name, "stride", stride, 1)
        self._p = pair(name, "padding", padding, 0)
        if self._p[0] > self._k[0] // 2 or self._p[1] > self._k[1] // 2:
            raise ConfigError(f"{name}: padding={padding!r} must be at most half of "
                              f"kernel_size={kernel_size!r}")
        self.kernel_size = config_value(self._k)
        self.stride = None if stride is None else config_value(self._s)
        self.padding = config_value(self._p)

    def _out(self, x: Spec) -> tuple[int, int, int, int]:
        B, C, H, W = nchw(x)
        Ho = out_size(H, self._k[0], self._s[0], self._p[0])
        Wo = out_size(W, self._k[1], self._s[1], self._p[1])
        if Ho < 1 or Wo < 1:
            raise ShapeError(f"kernel {self._k} does not fit a {H}x{W} input padded by {self._p}")
        return B, C, Ho, Wo


class MaxPool2d(_Pool2d):
    """Max over windows [B, C, H, W] -> [B, C, Ho, Wo] (PyTorch's nn.MaxPool2d; stride
    defaults to kernel_size; the argmax is kept for backward as int32)."""

    def build(self, x: Spec, b) -> Spec:
        out = self._out(x)
        b.saved("argmax", out, "i32")
        return Spec(out)

    def forward(self, x, ctx):
        ctx.k.maxpool2d(x, ctx.y, ctx.argmax, self._k, self._s, self._p)
        return ctx.y

    def backward(self, dy, ctx):
        if ctx.dx is not None:
            ctx.k.maxpool2d_bwd(dy, ctx.argmax, ctx.dx)
        return ctx.dx


class AvgPool2d(_Pool2d):
    """Mean over windows [B, C, H, W] -> [B, C, Ho, Wo] (PyTorch's nn.AvgPool2d with
    count_include_pad=True: zero padding counts in the mean)."""

    def build(self, x: Spec, b) -> Spec:
        return Spec(self._out(x))

    def forward(self, x, ctx):
        ctx.k.avgpool2d(x, ctx.y, self._k, self._s, self._p)
        return ctx.y

    def backward(self, dy, ctx):
        if ctx.dx is not None:
            ctx.k.avgpool2d_bwd(dy, ctx.dx, self._k, self._s, self._p)
        return ctx.dx


class GlobalAvgPool2d(Layer):
    """Mean over the whole plane [B, C, H, W] -> [B, C] (nn.AdaptiveAvgPool2d(1) + flatten)."""

    def build(self, x: Spec, b) -> Spec:
        B, C, _, _ = nchw(x)
        return Spec((B, C))

    def forward(self, x, ctx):
        hw = x.shape[2:]
        ctx.k.avgpool2d(x, ctx.y, hw, hw, (0, 0))
        return ctx.y

    def backward(self, dy, ctx):
        if ctx.dx is not None:
            hw = ctx.dx.shape[2:]
            ctx.k.avgpool2d_bwd(dy, ctx.dx, hw, hw, (0, 0))
        return ctx.dx


class Flatten(Layer):
    """[B, ...] -> [B, prod(...)]: a zero-copy view of the input (PyTorch's nn.Flatten())."""

    def build(self, x: Spec, b) -> Spec:
        if len(x.shape) < 2:
            raise ShapeError(f"expected [batch, ...] with at least one feature dimension, got "
                             f"rank {len(x.shape)}")
        return b.view_input((x.shape[0], x.size // x.shape[0]))

    def forward(self, x, ctx):
        return ctx.y

    def backward(self, dy, ctx):
        return ctx.dx
