"""Size arguments as PyTorch takes them: an int or a pair, for (height, width)."""

from __future__ import annotations

from typing import Any

from qorus_core import Spec
from qorus_core.errors import ConfigError, ShapeError


def pair(layer: str, name: str, value: Any, lo: int) -> tuple[int, int]:
    """``value`` (int or two ints, each >= lo) as an (h, w) pair; ConfigError otherwise."""
    if isinstance(value, bool):
        raise ConfigError(f"{layer}: {name}={value!r} must be an int or a pair of ints")
    items = [value, value] if isinstance(value, int) else value
    try:
        a, b = items
        ok = all(isinstance(v, int) and not isinstance(v, bool) for v in (a, b))
    except (TypeError, ValueError):
        ok = False
    if not ok or a < lo or b < lo:
        raise ConfigError(f"{layer}: {name}={value!r} must be an int or a pair of ints >= {lo}")
    return int(a), int(b)


def config_value(p: tuple[int, int]) -> int | list[int]:
    """How a pair is kept in a config: one int when both agree, else [h, w] (JSON/TOML-able)."""
    return p[0] if p[0] == p[1] else [p[0], p[1]]


def nchw(x: Spec) -> tuple[int, int, int, int]:
    """The (B, C, H, W) of a rank-4 spec; ShapeError for any other rank."""
    if len(x.shape) != 4:
        raise ShapeError(f"expected an NCHW input [batch, channels, height, width], got rank "
                         f"{len(x.shape)}")
    return x.shape  # type: ignore[return-value]
