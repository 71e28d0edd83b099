"""Strict JSON for the files Qorus reads: safetensors headers, checkpoint JSON and metadata.

``loads(text, where, error)`` parses like ``json.loads`` but refuses what a reader must not
silently accept, raising ``error("<where>: <reason>")``: a duplicate key (``json`` keeps the
last one, another reader the first: two readers, two models), an integer of more than
``max_digits`` digits (CPython's own default limit, on every Python version), nesting deeper
than the interpreter's recursion limit, bytes that are not UTF-8, and (``integers_only``)
any float, ``NaN`` or ``Infinity``. One place for these rules, so every format keeps them.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import QorusError

__all__ = ["MAX_DIGITS", "loads"]

MAX_DIGITS = 4300   # CPython's default int_max_str_digits (3.11+), applied on 3.10 too


class _Refused(Exception):
    """Raised inside the parser's hooks; ``loads`` turns it into ``error``."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Refused(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_float(text: str) -> float:
    raise _Refused(f"a number with a fraction or exponent ({text[:40]}), where only integers "
                   "belong")


def _no_constant(text: str) -> float:
    raise _Refused(f"{text} is not JSON")


def loads(text: str | bytes, where: str, error: type[QorusError], *,
          integers_only: bool = False, max_digits: int = MAX_DIGITS) -> Any:
    """The JSON value of ``text`` (bytes are decoded as UTF-8), or ``error`` naming ``where``
    and the reason. ``integers_only`` refuses floats and ``NaN``/``Infinity``."""
    def parse_int(digits: str) -> int:
        if len(digits.lstrip("-")) > max_digits:
            raise _Refused(f"an integer of {len(digits.lstrip('-'))} digits (at most {max_digits})")
        return int(digits)

    try:
        if isinstance(text, (bytes, bytearray, memoryview)):
            text = bytes(text).decode("utf-8")
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_int=parse_int,
                          **({"parse_float": _no_float, "parse_constant": _no_constant}
                             if integers_only else {}))
    except _Refused as exc:
        raise error(f"{where}: {exc}") from None
    except RecursionError:
        raise error(f"{where}: JSON nested too deeply") from None
    except ValueError as exc:   # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise error(f"{where}: not valid JSON: {exc}") from None
