"""The kind each argument of a kernel must be, and the KernelError naming one that is not.

The generated methods trust the kinds of their arguments (a Tensor has ``.p``, a float goes
to a C float): testing each on every call would cost more than the cheapest kernels run.
Instead a call that fails with a Python or ctypes error (``ARG_ERRORS``) is diagnosed here,
on the error path only: an argument of the wrong kind (an ndarray for a Tensor, None for a
float) raises ``KernelError`` naming the kernel, the argument and what it must be; a value
ctypes cannot pass (an int for a pointer-sized offset that overflows, say) names the C
argument. When every argument is of its kind the original error stands (a bug, not bad
input). Kinds come from the declaration: the operands' dtypes, and the annotations
(``float``, ``int``, ``float | None``) of the scalar parameters.
"""

from __future__ import annotations

import ctypes
import numbers
import re
from collections.abc import Callable

import numpy as np

from ...errors import KernelError
from ...tensor import Tensor
from ..numpy_quant import QWeight
from .spec import Kernel, Operand

__all__ = ["ARG_ERRORS", "diagnosis"]

#: what a wrong kind of argument raises somewhere in a generated method
ARG_ERRORS = (AttributeError, TypeError, ValueError, IndexError, OverflowError,
              ctypes.ArgumentError)

_Kind = tuple[str, Callable[[object], bool]]
_SCALARS: dict[str, _Kind] = {
    "float": ("a real number", lambda v: isinstance(v, numbers.Real)),
    "int": ("an integer", lambda v: isinstance(v, numbers.Integral)),
    "float | None": ("a real number or None", lambda v: v is None or isinstance(v, numbers.Real)),
}
_BUFFER = (np.ndarray, bytes, bytearray, memoryview)


#: operand dtype -> (what one must be, what a list of them must be, the types)
_OPERANDS = {"qweight": ("a QWeight", "QWeights", (QWeight,)),
             "weight": ("a Tensor or a QWeight", "Tensors or QWeights", (Tensor, QWeight)),
             "bytes": ("a QWeight or a uint8 buffer", "buffers", (QWeight, *_BUFFER))}
_TENSOR = ("a Tensor", "Tensors", (Tensor,))


def _operand_kind(o: Operand) -> _Kind:
    one, many, types = _OPERANDS.get(o.dtype, _TENSOR)
    if o.seq:
        what = f"a list of {many}"
        ok = lambda v: isinstance(v, (list, tuple)) and all(isinstance(e, types) for e in v)  # noqa: E731
    else:
        what, ok = one, lambda v: isinstance(v, types)  # noqa: E731
    if o.optional:
        what, required = f"{what} or None", ok
        ok = lambda v: v is None or required(v)  # noqa: E731
    return what, ok


def _kinds(k: Kernel) -> list[_Kind | None]:
    """Per parameter, (what it must be, its test); None where any value may do (a bool is
    read for its truth, a pair or a qtype by its own check)."""
    ops = {o.name: o for o in k.operands}
    notes = k.numpy.__annotations__
    return [_operand_kind(ops[p]) if p in ops else _SCALARS.get(notes.get(p, "")) for p in k.params]


def _got(v) -> str:
    return "None" if v is None else type(v).__name__


_ARG_NO = re.compile(r"argument (\d+):")


def diagnosis(k: Kernel) -> Callable[..., None]:
    """``(exc, *args)`` for kernel ``k``: raises the KernelError naming the first argument
    of a wrong kind, or the C argument ctypes refused; returns when there is none."""
    kinds = _kinds(k)
    sym = next(iter(k.c.values()), None)

    def diagnose(exc: BaseException, *args) -> None:
        for p, kind, v in zip(k.params, kinds, args):
            if kind is not None and not kind[1](v):
                raise KernelError(f"{k.full_name}: {p} must be {kind[0]}, got {_got(v)}") from exc
        m = _ARG_NO.match(str(exc)) if isinstance(exc, ctypes.ArgumentError) else None
        if m and sym is not None and 0 < int(m.group(1)) <= len(sym.args):
            arg = sym.args[int(m.group(1)) - 1]
            raise KernelError(f"{k.full_name}: {arg.expr} cannot be passed to {sym.symbol} as "
                              f"{arg.ctype} ({exc})") from exc

    return diagnose
