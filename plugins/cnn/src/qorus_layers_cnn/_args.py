"""Size arguments as PyTorch takes them: an int or a pair (height, width) for 2-d layers, an
int or a one-item list for 1-d ones; and the string paddings of convolutions."""

from __future__ import annotations

from typing import Any

import numpy as np

from qorus_core import Spec
from qorus_core.errors import ConfigError, ShapeError
from qorus_core.validate import integer, maybe, positive_int

Pair = tuple[int, int]


def pair(layer: str, name: str, value: Any, lo: int) -> Pair:
    """``value`` (int or two ints in a list or tuple, each >= lo; NumPy ints too, never bools,
    floats, strings or a set, whose order is not the caller's) as an (h, w) pair of Python
    ints; ConfigError naming ``layer`` and ``name`` otherwise."""
    want = f"an int or a pair of ints >= {lo}"
    items = value if isinstance(value, (list, tuple, np.ndarray)) else (value, value)
    try:
        a, b = items
        return (integer(a, name, layer, lo=lo, want=want), integer(b, name, layer, lo=lo, want=want))
    except ValueError:     # not two items; or a ConfigError (a ValueError): name the whole value
        raise ConfigError(f"{layer}: {name}={value!r} must be {want}") from None


def single(layer: str, name: str, value: Any, lo: int) -> int:
    """``value`` (an int, or one int in a list or tuple, >= lo) as a Python int: the size
    argument of a 1-d layer; ConfigError naming ``layer`` and ``name`` otherwise."""
    want = f"an int >= {lo} (or a list of one)"
    items = value if isinstance(value, (list, tuple, np.ndarray)) else (value,)
    try:
        (a,) = items
        return integer(a, name, layer, lo=lo, want=want)
    except ValueError:
        raise ConfigError(f"{layer}: {name}={value!r} must be {want}") from None


def sizes(layer: str, name: str, value: Any, lo: int, rank: int) -> Pair:
    """A size argument of a ``rank``-d layer (1 or 2) as the (h, w) pair of the 2-d kernels
    it runs on: a 1-d layer's length is their width, its height 1 (``lo_h``: 1 for a kernel,
    stride or dilation, 0 for a padding)."""
    if rank == 2:
        return pair(layer, name, value, lo)
    return (min(lo, 1), single(layer, name, value, lo))


def config_value(p: Pair, rank: int = 2) -> int | list[int]:
    """How a size is kept in a config: a 1-d layer's int; a pair as one int when both agree,
    else [h, w] (JSON/TOML-able)."""
    if rank == 1:
        return p[1]
    return p[0] if p[0] == p[1] else [p[0], p[1]]


def nchw(x: Spec) -> tuple[int, int, int, int]:
    """The (B, C, H, W) of a rank-4 spec; ShapeError for any other rank."""
    if len(x.shape) != 4:
        raise ShapeError(f"expected an NCHW input [batch, channels, height, width], got rank "
                         f"{len(x.shape)}")
    return x.shape  # type: ignore[return-value]


def ncl(x: Spec) -> tuple[int, int, int]:
    """The (B, C, L) of a rank-3 spec; ShapeError for any other rank."""
    if len(x.shape) != 3:
        raise ShapeError(f"expected an NCL input [batch, channels, length], got rank "
                         f"{len(x.shape)}")
    return x.shape  # type: ignore[return-value]


def planes(x: Spec, rank: int) -> tuple[int, int, int, int]:
    """(B, C, H, W) of a rank-2 layer's NCHW input, or of a rank-1 layer's NCL one as H = 1."""
    if rank == 2:
        return nchw(x)
    B, C, L = ncl(x)
    return B, C, 1, L


def conv_channels(name: str, rank: int, in_channels: Any, out_channels: Any, kernel_size: Any,
                  groups: Any) -> tuple[int | None, int, int]:
    """(in_channels or None, out_channels, groups) of a convolution's config, checked: both
    channel counts multiples of groups, a kernel_size given."""
    out_channels = positive_int(out_channels, "out_channels", name)
    if kernel_size is None:
        raise ConfigError(f"{name}: kernel_size is required (an int{' or a pair' * (rank - 1)})")
    groups = positive_int(groups, "groups", name)
    if out_channels % groups:
        raise ConfigError(f"{name}: groups={groups!r} must be a positive int dividing "
                          f"out_channels={out_channels}")
    in_channels = maybe(positive_int, in_channels, "in_channels", name)
    if in_channels is not None and in_channels % groups:
        raise ConfigError(f"{name}: in_channels={in_channels!r} must be a positive multiple "
                          f"of groups={groups}")
    return in_channels, out_channels, groups

