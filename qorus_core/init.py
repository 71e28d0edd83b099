"""Parameter initializers: ``init(rng, shape) -> ndarray``, run once at model creation."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Initializer = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]


def zeros() -> Initializer:
    return lambda rng, shape: np.zeros(shape, np.float32)


def ones() -> Initializer:
    return lambda rng, shape: np.ones(shape, np.float32)


def constant(value: float) -> Initializer:
    return lambda rng, shape: np.full(shape, value, np.float32)


def uniform(bound: float) -> Initializer:
    """U(-bound, bound)."""
    return lambda rng, shape: rng.uniform(-bound, bound, size=shape).astype(np.float32)


def normal(std: float, mean: float = 0.0) -> Initializer:
    return lambda rng, shape: (rng.standard_normal(size=shape) * std + mean).astype(np.float32)


def torch_linear(fan_in: int) -> Initializer:
    """PyTorch's default for Linear weight and bias: kaiming_uniform(a=sqrt(5)), which is
    U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    return uniform(1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0)
