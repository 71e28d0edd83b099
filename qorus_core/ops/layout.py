"""Shape arithmetic shared by the graph ops: axes, contiguous strides, broadcast shapes.

Axes count over the whole tensor, batch first (as PyTorch's ``dim``; negative from the end).
The batch dimension stays where it is: an op that would move, drop or merge it is refused.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ConfigError, ShapeError


def strides(shape: Sequence[int]) -> tuple[int, ...]:
    """Contiguous (C-order) element strides of ``shape``."""
    out, s = [], 1
    for d in reversed(shape):
        out.append(s)
        s *= d
    return tuple(reversed(out))


def prod(xs: Sequence[int]) -> int:
    """The product of ``xs`` (1 for none)."""
    n = 1
    for d in xs:
        n *= d
    return n


def axis_of(axis: int, ndim: int, where: str, batch_ok: bool = False) -> int:
    """``axis`` of a tensor of ``ndim`` dims as a non-negative index; ShapeError if out of
    range or (unless ``batch_ok``) the batch axis 0."""
    if not isinstance(axis, int) or isinstance(axis, bool):
        raise ConfigError(f"{where}: axis must be an int, got {axis!r}")
    a = axis + ndim if axis < 0 else axis
    if not 0 <= a < ndim:
        raise ShapeError(f"{where}: axis {axis} is out of range for {ndim} dimensions")
    if a == 0 and not batch_ok:
        raise ShapeError(f"{where}: axis {axis} is the batch axis; graph ops keep it (axes "
                         "count batch first, as PyTorch's dim)")
    return a


def broadcast(where: str, *shapes: tuple[int, ...]) -> tuple[int, ...]:
    """NumPy's broadcast of ``shapes`` of one rank, or ShapeError naming them. Ranks must be
    equal: with the batch first, a lower-rank operand would align its batch with another axis
    (unsqueeze it where it belongs instead)."""
    if len({len(s) for s in shapes}) > 1:
        raise ShapeError(f"{where}: shapes {' and '.join(map(str, shapes))} have different "
                         "numbers of axes; with the batch first, unsqueeze the smaller where it "
                         "broadcasts")
    nd = max(len(s) for s in shapes)
    out = []
    for i in range(nd):
        dims = {s[i - nd + len(s)] for s in shapes if i - nd + len(s) >= 0} - {1}
        if len(dims) > 1:
            raise ShapeError(f"{where}: shapes {' and '.join(map(str, shapes))} do not broadcast")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def check_int_tuple(value, what: str, where: str) -> tuple[int, ...]:
    """``value`` (an int or a list of ints) as a tuple; ConfigError naming ``what`` otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ConfigError(f"{where}: {what} must be an int or a list of ints, got {value!r}")
    return tuple(value)
