"""Graph ops: primitive layers with derived backward, usable in the functional API
(``ops.concat([a, b])`` on Input nodes) and inside a ``Composite.build`` (on traced Values),
each registered as ``core.<Name>`` so graphs using them round-trip through configs.

Axes count over the whole tensor, batch first (PyTorch's ``dim``); shapes given to
``reshape`` are per example. Elementwise ops broadcast like NumPy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .elementwise import (
    Abs,
    Add,
    Div,
    Exp,
    Log,
    MaskedFill,
    Maximum,
    Minimum,
    Mul,
    Neg,
    Scale,
    Sqrt,
    StopGradient,
    Sub,
    Where,
)
from .reduce import Gather, MatMul, Max, Mean, Sum
from .shape import Concat, Permute, Reshape, Slice, Split, Squeeze, Stack, Transpose, Unsqueeze

#: what core registers, under ``core.<name>``
OPS = {cls.__name__: cls for cls in (
    Add, Sub, Mul, Div, Maximum, Minimum, Where, MaskedFill, Scale, Exp, Log, Sqrt, Abs, Neg,
    StopGradient, Reshape, Squeeze, Unsqueeze, Permute, Transpose, Concat, Stack, Split, Slice,
    Sum, Mean, Max, Gather, MatMul)}


def add(x: Any, other: Any) -> Any:
    """x + other, broadcasting."""
    return Add()(x, other)


def sub(x: Any, other: Any) -> Any:
    """x - other, broadcasting."""
    return Sub()(x, other)


def mul(x: Any, other: Any) -> Any:
    """x * other, broadcasting."""
    return Mul()(x, other)


def div(x: Any, other: Any) -> Any:
    """x / other, broadcasting."""
    return Div()(x, other)


def maximum(x: Any, other: Any) -> Any:
    """Elementwise max, broadcasting."""
    return Maximum()(x, other)


def minimum(x: Any, other: Any) -> Any:
    """Elementwise min, broadcasting."""
    return Minimum()(x, other)


def scale(x: Any, alpha: float) -> Any:
    """alpha * x."""
    return Scale(alpha)(x)


def exp(x: Any) -> Any:
    """exp(x)."""
    return Exp()(x)


def log(x: Any) -> Any:
    """log(x)."""
    return Log()(x)


def sqrt(x: Any) -> Any:
    """sqrt(x)."""
    return Sqrt()(x)


def abs(x: Any) -> Any:  # noqa: A001 - the op's name
    """|x|."""
    return Abs()(x)


def neg(x: Any) -> Any:
    """-x."""
    return Neg()(x)


def where(cond: Any, x: Any, other: Any) -> Any:
    """x where cond (nonzero) else other, broadcasting."""
    return Where()(cond, x, other)


def masked_fill(x: Any, mask: Any, value: float) -> Any:
    """value where mask (nonzero) else x; mask broadcasts to x."""
    return MaskedFill(value)(x, mask)


def stop_gradient(x: Any) -> Any:
    """x, with no gradient flowing back through it."""
    return StopGradient()(x)


def matmul(x: Any, other: Any, transpose_a: bool = False, transpose_b: bool = False) -> Any:
    """Batched matrix product over the last two axes."""
    return MatMul(transpose_a, transpose_b)(x, other)


def concat(xs: Sequence[Any], axis: int = -1) -> Any:
    """The inputs joined along ``axis``."""
    return Concat(axis)(*xs)


def stack(xs: Sequence[Any], axis: int = 1) -> Any:
    """The inputs stacked along a new ``axis``."""
    return Stack(axis)(*xs)


def split(x: Any, sizes: Sequence[int], axis: int = -1) -> tuple[Any, ...]:
    """x cut along ``axis`` into pieces of ``sizes``."""
    return Split(sizes=list(sizes), axis=axis)(x)


def chunk(x: Any, sections: int, axis: int = -1) -> tuple[Any, ...]:
    """x cut along ``axis`` into ``sections`` equal pieces."""
    return Split(sections=sections, axis=axis)(x)


def slice(x: Any, axis: int, start: int = 0, stop: int | None = None, step: int = 1) -> Any:  # noqa: A001
    """x[start:stop:step] along ``axis``."""
    return Slice(axis, start, stop, step)(x)


def narrow(x: Any, axis: int, start: int, length: int) -> Any:
    """``length`` elements of ``axis`` from ``start`` (PyTorch's ``narrow``)."""
    return Slice(axis, start, start + length)(x)


def reshape(x: Any, shape: Sequence[int]) -> Any:
    """A view with per-example ``shape`` (the batch kept; one -1 allowed)."""
    return Reshape(list(shape))(x)


def permute(x: Any, dims: Sequence[int]) -> Any:
    """The axes reordered (``dims[0]`` must be 0, the batch)."""
    return Permute(list(dims))(x)


def transpose(x: Any, dim0: int, dim1: int) -> Any:
    """Two axes swapped."""
    return Transpose(dim0, dim1)(x)


def squeeze(x: Any, axis: int) -> Any:
    """A view without the size-1 ``axis``."""
    return Squeeze(axis)(x)


def unsqueeze(x: Any, axis: int) -> Any:
    """A view with a new size-1 ``axis``."""
    return Unsqueeze(axis)(x)


def sum(x: Any, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Any:  # noqa: A001
    """x summed over ``axis`` (None: all but the batch)."""
    return Sum(None if axis is None else axis if isinstance(axis, int) else list(axis), keepdims)(x)


def mean(x: Any, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Any:
    """x averaged over ``axis`` (None: all but the batch)."""
    return Mean(None if axis is None else axis if isinstance(axis, int) else list(axis), keepdims)(x)


def max(x: Any, axis: int = -1, keepdims: bool = False) -> Any:  # noqa: A001
    """The maximum over one ``axis``."""
    return Max(axis, keepdims)(x)


def gather(x: Any, axis: int, index: Any) -> Any:
    """PyTorch's ``gather``: values of x at ``index`` (int32) along ``axis``."""
    return Gather(axis)(x, index)


__all__ = sorted(OPS) + ["OPS", "add", "sub", "mul", "div", "maximum", "minimum", "scale", "exp",
                         "log", "sqrt", "abs", "neg", "where", "masked_fill", "stop_gradient",
                         "matmul", "concat", "stack", "split", "chunk", "slice", "narrow",
                         "reshape", "permute", "transpose", "squeeze", "unsqueeze", "sum", "mean",
                         "max", "gather"]
