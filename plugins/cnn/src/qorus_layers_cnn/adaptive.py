"""Adaptive pooling: AdaptiveAvgPool2d, AdaptiveMaxPool2d (NCHW) and their 1-d versions
(NCL, on the 2-D kernels with a height of 1), PyTorch's nn.AdaptiveAvgPool2d & co."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from qorus_core import Layer, Spec
from qorus_core.errors import ConfigError
from qorus_core.validate import integer

from ._args import planes, single
from ._convnd import as4d


def _output_size(name: str, value: Any, rank: int) -> tuple[int | None, int | None]:
    """``output_size`` as the (Ho, Wo) of the 2-D kernels: a 2-d layer's int or pair, whose
    None keeps that input size (PyTorch's); a 1-d layer's int as (1, Lo)."""
    if rank == 1:
        return 1, single(name, "output_size", value, 1)
    want = "an int >= 1 or a pair of ints >= 1 (or None: the input's size)"
    items = value if isinstance(value, (list, tuple, np.ndarray)) else (value, value)
    if value is None or len(items) != 2:
        raise ConfigError(f"{name}: output_size={value!r} must be {want}")
    return tuple(None if v is None else integer(v, "output_size", name, lo=1, want=want)
                 for v in items)  # type: ignore[return-value]


class _Adaptive(Layer):
    """[B, C, H, W] -> [B, C, Ho, Wo] over PyTorch's adaptive windows: output row o pools
    input rows [floor(o H / Ho), ceil((o + 1) H / Ho)), likewise the columns."""

    rank: ClassVar[int] = 2

    def __init__(self, output_size: Any = None) -> None:
        name = f"cnn.{type(self).__name__}"
        if output_size is None:
            raise ConfigError(f"{name}: output_size is required")
        self._o = _output_size(name, output_size, self.rank)
        o = self._o
        self.output_size = (o[1] if self.rank == 1 else o[0] if o[0] == o[1] else list(o))

    def _out(self, x: Spec) -> tuple[int, int, int, int]:
        B, C, H, W = planes(x, self.rank)
        return B, C, H if self._o[0] is None else self._o[0], W if self._o[1] is None else self._o[1]

    def _spec(self, out: tuple[int, int, int, int]) -> Spec:
        return Spec(out if self.rank == 2 else out[:2] + out[3:])


class _AdaptiveAvg(_Adaptive):
    def build(self, x: Spec, b) -> Spec:
        return self._spec(self._out(x))

    def forward(self, x, ctx):
        r = self.rank
        ctx.k.adaptive_avgpool2d(as4d(ctx, x, r), as4d(ctx, ctx.y, r))
        return ctx.y

    def backward(self, dy, ctx):
        if ctx.dx is not None:
            r = self.rank
            ctx.k.adaptive_avgpool2d_bwd(as4d(ctx, dy, r), as4d(ctx, ctx.dx, r))
        return ctx.dx


class _AdaptiveMax(_Adaptive):
    def build(self, x: Spec, b) -> Spec:
        out = self._out(x)
        b.saved("argmax", out, "i32")
        return self._spec(out)

    def forward(self, x, ctx):
        r = self.rank
        ctx.k.adaptive_maxpool2d(as4d(ctx, x, r), as4d(ctx, ctx.y, r), ctx.argmax)
        return ctx.y

    def backward(self, dy, ctx):
        if ctx.dx is not None:
            ctx.k.maxpool2d_bwd(dy, ctx.argmax, as4d(ctx, ctx.dx, self.rank))
        return ctx.dx


class AdaptiveAvgPool2d(_AdaptiveAvg):
    """Mean over adaptive windows [B, C, H, W] -> [B, C, *output_size] (PyTorch's
    nn.AdaptiveAvgPool2d; a None in output_size keeps that input size)."""


class AdaptiveMaxPool2d(_AdaptiveMax):
    """Max over adaptive windows [B, C, H, W] -> [B, C, *output_size] (PyTorch's
    nn.AdaptiveMaxPool2d; the argmax is kept for backward as int32)."""


class AdaptiveAvgPool1d(_AdaptiveAvg):
    """Mean over adaptive windows [B, C, L] -> [B, C, output_size] (nn.AdaptiveAvgPool1d)."""

    rank = 1


class AdaptiveMaxPool1d(_AdaptiveMax):
    """Max over adaptive windows [B, C, L] -> [B, C, output_size] (nn.AdaptiveMaxPool1d)."""

    rank = 1
