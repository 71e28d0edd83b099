"""Typed, checked reads of a GGUF file's metadata: refuse, never coerce.

The llama hyperparameters (``llama.py``, ``GGUFError``) and the tokenizer keys
(``tokenizer.py``, ``ConfigError``) come from the same untrusted file, so both read it
through one ``MetadataReader``: a value of the wrong type (a string for a count, a float for a
token id, a bool for an integer) or out of its range raises the reader's error class, naming
the file and the key, and showing the value briefly (an array by its size, never its items).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from qorus_core.errors import ConfigError, QorusError


def describe(v: Any) -> str:
    """A metadata value, named for an error message (kept short)."""
    if isinstance(v, str):
        return f"the string {v[:40]!r}"
    if isinstance(v, np.ndarray):
        return f"an array of {v.size} {v.dtype}"
    if isinstance(v, list):
        return f"an array of {len(v)} {type(v[0]).__name__ + 's' if v else 'values'}"
    if isinstance(v, (bool, np.bool_)):
        return f"the bool {bool(v)}"
    return f"{type(v).__name__} {v!s}"


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


class MetadataReader:
    """Checked reads of ``gguf.metadata``; failures are ``error`` (a ``QorusError`` class)."""

    def __init__(self, gguf: Any, error: type[QorusError] = ConfigError,
                 missing_hint: str = "") -> None:
        self.md, self.path, self.error, self.missing_hint = gguf.metadata, gguf.path, error, missing_hint

    def __contains__(self, key: str) -> bool:
        return key in self.md

    def fail(self, key: str, msg: str) -> QorusError:
        """The error for a bad value of ``key`` (the file and the key named)."""
        return self.error(f"{self.path}: metadata {key}: {msg}")

    def missing(self, key: str) -> QorusError:
        """The error for a required ``key`` the file lacks."""
        return self.error(f"{self.path}: metadata {key} is missing{self.missing_hint}")

    def integer(self, key: str, default: int | None = None, lo: int = 1) -> int:
        """An integer >= ``lo``; required when ``default`` is None."""
        if key not in self.md:
            if default is None:
                raise self.missing(key)
            return default
        v = self.md[key]
        if not _is_int(v):
            raise self.fail(key, f"{describe(v)}, expected an integer")
        if int(v) < lo:
            raise self.fail(key, f"{int(v)} is less than {lo}")
        return int(v)

    def real(self, key: str, default: float, hi: float = math.inf) -> float:
        """A finite number in (0, ``hi``)."""
        v = self.md.get(key, default)
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise self.fail(key, f"{describe(v)}, expected a number")
        if not (math.isfinite(float(v)) and 0 < float(v) < hi):
            raise self.fail(key, f"{v!s} is not a finite number in (0, {hi})")
        return float(v)

    def token_id(self, key: str, n: int) -> int | None:
        """A token id in [0, ``n``), or None when the key is absent."""
        if key not in self.md:
            return None
        v = self.md[key]
        if not _is_int(v):
            raise self.fail(key, f"expected a token id, got {describe(v)}")
        if not 0 <= int(v) < n:
            raise self.fail(key, f"token id {int(v)} outside the vocabulary [0, {n})")
        return int(v)

    def flag(self, key: str, default: bool) -> bool:
        """A boolean, ``default`` when absent."""
        v = self.md.get(key, default)
        if not isinstance(v, (bool, np.bool_)):
            raise self.fail(key, f"expected a bool, got {describe(v)}")
        return bool(v)

    def string(self, key: str, default: str | None = None, required: bool = False) -> str | None:
        """A string; ``default`` when absent unless ``required``."""
        if key not in self.md:
            if required:
                raise self.missing(key)
            return default
        v = self.md[key]
        if not isinstance(v, str):
            raise self.fail(key, f"expected a string, got {describe(v)}")
        return v

    def strings(self, key: str, allow_empty: bool = False) -> list[str]:
        """A required array of strings."""
        if key not in self.md:
            raise self.missing(key)
        v = self.md[key]
        if not isinstance(v, list):
            raise self.fail(key, f"expected an array of strings, got {describe(v)}")
        for i, t in enumerate(v):
            if not isinstance(t, str):
                raise self.fail(key, f"element #{i} is {describe(t)}, expected a string")
        if not v and not allow_empty:
            raise self.fail(key, "the array is empty")
        return list(v)

    def numbers(self, key: str, n: int, kinds: str) -> np.ndarray | None:
        """A 1-D array whose dtype kind is one of ``kinds`` (``"i"``: integers, ``"iuf"``:
        numbers), or None when absent; its length and values are the consumer's to check."""
        if key not in self.md:
            return None
        v = self.md[key]
        if not isinstance(v, np.ndarray) or v.ndim != 1 or v.dtype.kind not in kinds:
            raise self.fail(key, f"expected an array of {n} {'integers' if kinds == 'i' else 'numbers'}, "
                            f"got {describe(v)}")
        return v
