"""Conv2d: 2-D cross-correlation over NCHW, PyTorch's nn.Conv2d layout, names and init."""

from __future__ import annotations

from typing import Any

from qorus_core import Layer, Spec
from qorus_core.errors import ConfigError, ShapeError
from qorus_core.init import torch_linear
from qorus_core.validate import boolean, maybe, positive_int

from ._args import config_value, nchw, pair


def out_size(n: int, k: int, stride: int, pad: int, dilation: int = 1) -> int:
    """PyTorch's output length: (n + 2 pad - dilation (k - 1) - 1) // stride + 1."""
    return (n + 2 * pad - dilation * (k - 1) - 1) // stride + 1


class Conv2d(Layer):
    """2-D convolution [B, C, H, W] -> [B, out_channels, Ho, Wo] (PyTorch's nn.Conv2d)."""

    def __init__(self, in_channels: int | None = None, out_channels: int | None = None,
                 kernel_size: Any = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
                 groups: int = 1, bias: bool = True) -> None:
        name = "cnn.Conv2d"
        out_channels = positive_int(out_channels, "out_channels", name)
        if kernel_size is None:
            raise ConfigError(f"{name}: kernel_size is required (an int or a pair)")
        groups = positive_int(groups, "groups", name)
        if out_channels % groups:
            raise ConfigError(f"{name}: groups={groups!r} must be a positive int dividing "
                              f"out_channels={out_channels}")
        in_channels = maybe(positive_int, in_channels, "in_channels", name)
        if in_channels is not None and in_channels % groups:
            raise ConfigError(f"{name}: in_channels={in_channels!r} must be a positive multiple "
                              f"of groups={groups}")
        self._k = pair(name, "kernel_size", kernel_size, 1)
        self._s = pair(name, "stride", stride, 1)
        self._p = pair(name, "padding", padding, 0)
        self._d = pair(name, "dilation", dilation, 1)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = config_value(self._k), config_value(self._s)
        self.padding, self.dilation = config_value(self._p), config_value(self._d)
        self.groups, self.bias = groups, boolean(bias, "bias", name)

    def build(self, x: Spec, b) -> Spec:
        B, C, H, W = nchw(x)
        if self.in_channels is not None and C != self.in_channels:
            raise ShapeError(f"expected {self.in_channels} input channels, got {C}")
        if C % self.groups:
            raise ShapeError(f"{C} input channels are not a multiple of groups={self.groups}")
        (R, S), (sh, sw), (ph, pw), (dh, dw) = self._k, self._s, self._p, self._d
        Ho, Wo = out_size(H, R, sh, ph, dh), out_size(W, S, sw, pw, dw)
        if Ho < 1 or Wo < 1:
            raise ShapeError(f"kernel {self._k} (dilation {self._d}) does not fit a {H}x{W} "
                             f"input padded by {self._p}")
        fan_in = C // self.groups * R * S
        b.param("weight", (self.out_channels, C // self.groups, R, S), torch_linear(fan_in))
        if self.bias:
            b.param("bias", (self.out_channels,), torch_linear(fan_in))
        return Spec((B, self.out_channels, Ho, Wo))

    def forward(self, x, ctx):
        ctx.k.conv2d(x, ctx.weight, ctx.bias if self.bias else None, ctx.y, self._s, self._p,
                     self._d, self.groups)
        return ctx.y

    def backward(self, dy, ctx):
        ctx.k.conv2d_bwd(ctx.x, ctx.weight, dy, ctx.dx, ctx.dweight,
                         ctx.dbias if self.bias else None, self._s, self._p, self._d, self.groups)
        return ctx.dx
