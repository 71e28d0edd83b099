"""Size arguments as PyTorch takes them: an int or a pair, for (height, width)."""

from __future__ import annotations

from typing import Any

import numpy as np

from qorus_core import Spec
from qorus_core.errors import ConfigError, ShapeError
from qorus_core.validate import integer


def pair(layer: str, name: str, value: Any, lo: int) -> tuple[int, int]:
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


def config_value(p: tuple[int, int]) -> int | list[int]:
    """How a pair is kept in a config: one int when both agree, else [h, w] (JSON/TOML-able)."""
    return p[0] if p[0] == p[1] else [p[0], p[1]]


def nchw(x: Spec) -> tuple[int, int, int, int]:
    """The (B, C, H, W) of a rank-4 spec; ShapeError for any other rank."""
    if len(x.shape) != 4:
        raise ShapeError(f"expected an NCHW input [batch, channels, height, width], got rank "
                         f"{len(x.shape)}")
    return x.shape  # type: ignore[return-value]
