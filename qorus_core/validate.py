"""Checking API and config arguments once, where an object is made: refuse, never coerce.

``int(2.5)`` is 2, ``int(True)`` is 1 and ``float("nan")`` compares false with everything, so
a constructor that casts its arguments turns a typo into a silently different model. These
helpers accept exactly the types a caller (or a TOML/JSON config) means, return plain Python
values (so ``get_config`` stays JSON-able) and raise a ``ConfigError`` naming the owner (the
layer, optimizer or object) and the field otherwise:

- ints: ``int`` and NumPy integers; never ``bool`` (nor ``np.bool_``), floats or strings;
- reals: ints and floats (Python or NumPy), never ``bool`` or strings; NaN is always refused,
  infinities unless ``finite=False``;
- booleans: ``bool`` and ``np.bool_`` only (not ``0``/``1``, not ``"false"``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import numpy as np

from .errors import ConfigError

T = TypeVar("T")


def _fail(owner: str, field: str, want: str, value: Any) -> ConfigError:
    return ConfigError(f"{owner}: {field} must be {want}, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def integer(value: Any, field: str, owner: str, lo: int | None = None, hi: int | None = None,
            want: str | None = None) -> int:
    """``value`` as a Python int in ``[lo, hi]`` (either bound optional)."""
    if want is None:
        want = "an int" + (f" in [{lo}, {hi}]" if lo is not None and hi is not None
                           else f" >= {lo}" if lo is not None
                           else f" <= {hi}" if hi is not None else "")
    if not _is_int(value):
        raise _fail(owner, field, want, value)
    v = int(value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise _fail(owner, field, want, value)
    return v


def positive_int(value: Any, field: str, owner: str) -> int:
    """An int >= 1 (a size, a count)."""
    return integer(value, field, owner, lo=1, want="a positive int")


def nonneg_int(value: Any, field: str, owner: str) -> int:
    """An int >= 0 (a step count, a seed)."""
    return integer(value, field, owner, lo=0, want="an int >= 0")


def real(value: Any, field: str, owner: str, lo: float | None = None, hi: float | None = None,
         lo_open: bool = False, hi_open: bool = False, finite: bool = True) -> float:
    """``value`` as a Python float within the bounds (``lo_open``/``hi_open``: excluded)."""
    parts = []
    if lo is not None and hi is not None:
        parts.append(f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}")
    elif lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo:g}")
    elif hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {hi:g}")
    want = ("a finite number" if finite else "a number") + (" " + parts[0] if parts else "")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer,
                                                                      np.floating)):
        raise _fail(owner, field, want, value)
    try:
        v = float(value)
    except OverflowError:                     # an int beyond float range (10**400)
        raise _fail(owner, field, want, value) from None
    if math.isnan(v) or (finite and math.isinf(v)):
        raise _fail(owner, field, want, value)
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise _fail(owner, field, want, value)
    if hi is not None and (v > hi or (hi_open and v == hi)):
        raise _fail(owner, field, want, value)
    return v


def probability(value: Any, field: str, owner: str, lo_open: bool = False,
                hi_open: bool = False) -> float:
    """A number in [0, 1] (ends excluded as asked): dropout p, top_p, label smoothing."""
    return real(value, field, owner, 0.0, 1.0, lo_open, hi_open)


def boolean(value: Any, field: str, owner: str) -> bool:
    """``True`` or ``False`` (``np.bool_`` too), nothing that merely converts to one."""
    if not isinstance(value, (bool, np.bool_)):
        raise _fail(owner, field, "true or false", value)
    return bool(value)


def choice(value: Any, field: str, owner: str, options: Iterable[str]) -> str:
    """One of the strings ``options``."""
    options = tuple(options)
    if not isinstance(value, str) or value not in options:
        raise _fail(owner, field, "one of " + ", ".join(repr(o) for o in options), value)
    return value


def maybe(check: Callable[..., T], value: Any, field: str, owner: str, **kwargs: Any) -> T | None:
    """``None`` stays ``None`` (an optional argument); anything else goes through ``check``."""
    return None if value is None else check(value, field, owner, **kwargs)


def config_keys(cls: type, config: dict[str, Any], owner: str) -> None:
    """Refuse config keys ``cls``'s constructor does not take: the error lists the valid
    keys and the closest one (``out_feature`` -> ``out_features``), as unknown layer names
    do. A constructor taking ``**kwargs`` accepts anything."""
    import difflib
    import inspect

    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    valid = [n for n, p in params.items() if n != "self" and p.kind is not p.VAR_POSITIONAL]
    for key in config:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{owner}: unknown config key {key!r} (valid keys: "
                              f"{', '.join(valid) or 'none'}){hint}")
