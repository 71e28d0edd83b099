"""ConvTranspose2d and ConvTranspose1d: transposed convolutions (the input gradient of a
convolution as a layer, e.g. a learned upsampling), PyTorch's layouts, names and init."""

from __future__ import annotations

from typing import Any, ClassVar

from qorus_core import Layer, Spec
from qorus_core.errors import ConfigError, ShapeError
from qorus_core.init import torch_linear
from qorus_core.validate import boolean

from ._args import config_value, conv_channels, planes, sizes
from ._convnd import as4d


def transposed_size(n: int, k: int, stride: int, pad: int, out_pad: int, dilation: int) -> int:
    """PyTorch's output length: (n - 1) stride - 2 pad + dilation (k - 1) + out_pad + 1."""
    return (n - 1) * stride - 2 * pad + dilation * (k - 1) + out_pad + 1


class ConvTransposeNd(Layer):
    """Transposed convolution over ``rank`` spatial dims (1: [B, C, L], 2: [B, C, H, W]),
    PyTorch's ConvTransposeNd arguments in its order; weight [in, out/groups, *kernel]."""

    rank: ClassVar[int] = 2

    def __init__(self, in_channels: int | None = None, out_channels: int | None = None,
                 kernel_size: Any = None, stride: Any = 1, padding: Any = 0,
                 output_padding: Any = 0, groups: int = 1, bias: bool = True,
                 dilation: Any = 1) -> None:
        name, r = f"cnn.{type(self).__name__}", self.rank
        in_channels, out_channels, groups = conv_channels(name, r, in_channels, out_channels,
                                                          kernel_size, groups)
        self._k = sizes(name, "kernel_size", kernel_size, 1, r)
        self._s = sizes(name, "stride", stride, 1, r)
        self._p = sizes(name, "padding", padding, 0, r)
        self._op = sizes(name, "output_padding", output_padding, 0, r)
        self._d = sizes(name, "dilation", dilation, 1, r)
        if self._op[0] >= self._s[0] or self._op[1] >= self._s[1]:
            raise ConfigError(f"{name}: output_padding={output_padding!r} must be smaller than "
                              f"stride={stride!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = config_value(self._k, r), config_value(self._s, r)
        self.padding, self.output_padding = config_value(self._p, r), config_value(self._op, r)
        self.dilation = config_value(self._d, r)
        self.groups, self.bias = groups, boolean(bias, "bias", name)

    def build(self, x: Spec, b) -> Spec:
        """Check the channels, declare ``weight`` ``(C_in, C_out / groups, *kernel)`` and ``bias``; the
        output's spatial size is PyTorch's ``(H - 1) * stride - 2 * padding + dilation * (k - 1) +
        output_padding + 1``."""
        B, C, H, W = planes(x, self.rank)
        if self.in_channels is not None and C != self.in_channels:
            raise ShapeError(f"expected {self.in_channels} input channels, got {C}")
        if C % self.groups:
            raise ShapeError(f"{C} input channels are not a multiple of groups={self.groups}")
        (R, S), (sh, sw), (ph, pw), (oh, ow), (dh, dw) = self._k, self._s, self._p, self._op, self._d
        Ho, Wo = transposed_size(H, R, sh, ph, oh, dh), transposed_size(W, S, sw, pw, ow, dw)
        if Ho < 1 or Wo < 1:
            raise ShapeError(f"padding {self.padding} leaves no output of a {H}x{W} input "
                             f"(kernel {self.kernel_size}, stride {self.stride})")
        cg = self.out_channels // self.groups
        fan_in = cg * R * S                       # PyTorch's: weight.size(1) * kernel
        kernel = self._k if self.rank == 2 else (S,)
        b.param("weight", (C, cg) + kernel, torch_linear(fan_in))
        if self.bias:
            b.param("bias", (self.out_channels,), torch_linear(fan_in))
        out = (B, self.out_channels, Ho, Wo)
        return Spec(out if self.rank == 2 else out[:2] + out[3:])

    def forward(self, x, ctx):
        """One transposed-convolution kernel call into the planned output."""
        r = self.rank
        ctx.k.conv_transpose2d(as4d(ctx, x, r), as4d(ctx, ctx.weight, r),
                               ctx.bias if self.bias else None, as4d(ctx, ctx.y, r), self._s,
                               self._p, self._d, self.groups)
        return ctx.y

    def backward(self, dy, ctx):
        """dx written, dweight and dbias added into, in one kernel call."""
        r = self.rank
        ctx.k.conv_transpose2d_bwd(as4d(ctx, ctx.x, r), as4d(ctx, ctx.weight, r),
                                   as4d(ctx, dy, r), as4d(ctx, ctx.dx, r),
                                   as4d(ctx, ctx.dweight, r), ctx.dbias if self.bias else None,
                                   self._s, self._p, self._d, self.groups)
        return ctx.dx


class ConvTranspose2d(ConvTransposeNd):
    """[B, C, H, W] -> [B, out_channels, Ho, Wo], Ho = (H - 1) stride - 2 padding + dilation
    (kernel - 1) + output_padding + 1 (PyTorch's nn.ConvTranspose2d)."""

    rank = 2


class ConvTranspose1d(ConvTransposeNd):
    """[B, C, L] -> [B, out_channels, Lo], Lo = (L - 1) stride - 2 padding + dilation
    (kernel - 1) + output_padding + 1 (PyTorch's nn.ConvTranspose1d); weight [in, out/groups,
    k]. It runs on the 2-D kernels with a height of 1 (views, no copy)."""

    rank = 1
