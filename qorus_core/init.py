"""Parameter initializers: ``init(rng, shape) -> ndarray``, run once at model creation.

The built-in ones can also ``fill(rng, out)``: write their values straight into the arena
view, drawn in chunks, so initialising a parameter of N floats takes no N-sized temporary
(``rng.uniform`` draws float64: a one-shot draw would need twice the parameter's own bytes,
a raw MemoryError for a layer whose arena fits). The values are bit-for-bit those of the
one-shot call: NumPy's generators draw element after element, whatever the chunking.
``initialize`` is how the stores run any initializer, built-in or not.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .errors import ConfigError, ShapeError

Initializer = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]

#: elements drawn at a time by ``fill``: a 2 MiB float64 temporary at most
CHUNK = 1 << 18


class _Init:
    """A built-in initializer: ``draw(rng, n)`` gives the next ``n`` values (float64 or a
    scalar); ``__call__`` is the one-shot form, ``fill`` the chunked, in-place one."""

    def __init__(self, draw: Callable[[np.random.Generator, int], np.ndarray | float],
                 chunked: bool) -> None:
        self._draw, self._chunked = draw, chunked

    def __call__(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        out = np.empty(shape, np.float32)
        self.fill(rng, out)
        return out

    def fill(self, rng: np.random.Generator, out: np.ndarray) -> None:
        if not self._chunked:
            out[...] = self._draw(rng, out.size)
            return
        flat = out.reshape(-1)                 # a view: ``out`` is contiguous
        for i in range(0, flat.size, CHUNK):
            n = min(CHUNK, flat.size - i)
            flat[i:i + n] = self._draw(rng, n)


def initialize(init: Initializer, rng: np.random.Generator, shape: tuple[int, ...],
               out: np.ndarray, name: str) -> None:
    """Write ``init``'s values for ``shape`` into ``out`` (the memory of the parameter or state
    buffer ``name``; a 0-d one is held as shape (1,)). A built-in initializer fills it in
    chunks; any other callable returns its array, checked for shape, and running out of memory
    on the way is a ConfigError naming ``name``."""
    if isinstance(init, _Init):
        init.fill(rng, out)
        return
    try:
        value = np.asarray(init(rng, shape), dtype=out.dtype)
    except MemoryError:
        raise ConfigError(f"initializer of {name}: out of memory making its {shape} values "
                          f"({out.nbytes:,} bytes)") from None
    if value.shape != tuple(shape):
        raise ShapeError(f"initializer of {name} gave shape {value.shape}, expected {tuple(shape)}")
    out[...] = value


def zeros() -> Initializer:
    """Every entry 0."""
    return _Init(lambda rng, n: 0.0, chunked=False)


def ones() -> Initializer:
    """Every entry 1."""
    return _Init(lambda rng, n: 1.0, chunked=False)


def constant(value: float) -> Initializer:
    """Every entry ``value``."""
    return _Init(lambda rng, n: value, chunked=False)


def uniform(bound: float) -> Initializer:
    """U(-bound, bound)."""
    return _Init(lambda rng, n: rng.uniform(-bound, bound, size=n), chunked=True)


def normal(std: float, mean: float = 0.0) -> Initializer:
    """N(mean, std^2), drawn from the model's seeded generator."""
    return _Init(lambda rng, n: rng.standard_normal(size=n) * std + mean, chunked=True)


def torch_linear(fan_in: int) -> Initializer:
    """PyTorch's default for Linear weight and bias: kaiming_uniform(a=sqrt(5)), which is
    U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    return uniform(1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0)
