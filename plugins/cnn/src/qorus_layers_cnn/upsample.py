"""Upsample: nearest or bilinear resizing of NCHW planes, PyTorch's nn.Upsample."""

from __future__ import annotations

import math
from typing import Any

from qorus_core import Layer, Spec
from qorus_core.errors import ConfigError, ShapeError
from qorus_core.validate import boolean, choice, real

from ._args import config_value, nchw, pair


def _factors(name: str, value: Any) -> tuple[float, float]:
    """A scale factor (a positive number, or two in a list) as an (h, w) pair of floats."""
    items = value if isinstance(value, (list, tuple)) else (value, value)
    if len(items) != 2:
        raise ConfigError(f"{name}: scale_factor={value!r} must be a number > 0 or a pair")
    return tuple(real(v, "scale_factor", name, lo=0.0, lo_open=True) for v in items)  # type: ignore[return-value]


class Upsample(Layer):
    """[B, C, H, W] -> [B, C, Ho, Wo] by ``mode`` "nearest" or "bilinear" (PyTorch's
    nn.Upsample): ``size`` gives (Ho, Wo), or ``scale_factor`` gives Ho = floor(H * factor)
    and the source positions (PyTorch's rule when the factor is given); exactly one of the
    two. ``align_corners`` (bilinear only; None: False) maps corner pixels onto each other."""

    def __init__(self, size: Any = None, scale_factor: Any = None, mode: str = "nearest",
                 align_corners: bool | None = None) -> None:
        name = "cnn.Upsample"
        if (size is None) == (scale_factor is None):
            raise ConfigError(f"{name}: give exactly one of size and scale_factor, got "
                              f"size={size!r}, scale_factor={scale_factor!r}")
        self.mode = choice(mode, "mode", name, ("nearest", "bilinear"))
        if align_corners is not None:
            if self.mode == "nearest":
                raise ConfigError(f"{name}: align_corners={align_corners!r} is for "
                                  "mode='bilinear' only (leave it None)")
            align_corners = boolean(align_corners, "align_corners", name)
        self.align_corners = align_corners
        self._size = None if size is None else pair(name, "size", size, 1)
        self._f = None if scale_factor is None else _factors(name, scale_factor)
        self.size = None if self._size is None else config_value(self._size)
        self.scale_factor = (None if self._f is None else
                             self._f[0] if self._f[0] == self._f[1] else list(self._f))

    def build(self, x: Spec, b) -> Spec:
        """The output size: ``size``, or the input's times ``scale_factor`` (floored); ShapeError when
        nothing is left."""
        B, C, H, W = nchw(x)
        if self._size is not None:
            Ho, Wo = self._size
        else:
            Ho, Wo = math.floor(H * self._f[0]), math.floor(W * self._f[1])
        if Ho < 1 or Wo < 1:
            raise ShapeError(f"scale_factor {self.scale_factor} leaves no output of a {H}x{W} "
                             "input")
        return Spec((B, C, Ho, Wo))

    def _args(self) -> tuple[str, bool, float, float]:
        sh, sw = self._f if self._f is not None else (0.0, 0.0)
        return self.mode, bool(self.align_corners), sh, sw

    def forward(self, x, ctx):
        """Nearest or bilinear resampling into the planned output."""
        ctx.k.upsample2d(x, ctx.y, *self._args())
        return ctx.y

    def backward(self, dy, ctx):
        """Each output gradient added back to the input positions it was sampled from."""
        if ctx.dx is not None:
            ctx.k.upsample2d_bwd(dy, ctx.dx, *self._args())
        return ctx.dx
