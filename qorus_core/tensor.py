"""Tensor: a planned view into an arena, carrying its NumPy view and its address.

Tensors are made once, when a model is compiled; kernels receive them on every call. The
NumPy kernels read ``.a`` (the ndarray view), the C kernels read ``.p`` (its address as a plain
int), so a kernel call creates no array and converts no pointer. Outputs are written through
``.w`` / ``.wp``, which only a writeable tensor has (see ``Tensor``).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np

from .errors import KernelError, ShapeError

DTYPES = {"f32": np.dtype(np.float32), "i32": np.dtype(np.int32)}


@dataclass(frozen=True)
class Spec:
    """Shape and dtype of a tensor before it has memory: what ``Layer.build`` passes along."""

    shape: tuple[int, ...]
    dtype: str = "f32"

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ShapeError(f"unknown dtype {self.dtype!r}; expected one of {sorted(DTYPES)}")
        if any((not isinstance(d, (int, np.integer))) or d <= 0 for d in self.shape):
            raise ShapeError(f"shape {self.shape} must be positive integers")
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))

    @property
    def size(self) -> int:
        """The number of values (the product of the shape)."""
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        """The bytes a tensor of this spec takes."""
        return self.size * DTYPES[self.dtype].itemsize


class Tensor:
    """A contiguous view with its address; ``rows``/``cols`` view it as a 2-D matrix.

    Immutable: its fields are checked once, here, and kernels trust them on every call, so
    assigning or deleting one raises ``AttributeError``. Inputs are read through ``a`` (the
    ndarray) and ``p`` (its address); outputs through ``w`` and ``wp``, the same two, which a
    read-only tensor (``writeable`` False: a view of a read-only mmap such as a GGUF weight,
    or of a ``bytes`` object) does not have: it is made a ``ReadOnlyTensor``, whose ``w`` and
    ``wp`` raise ``KernelError`` naming the kernel and the operand. So a kernel never writes
    into memory it may not write, at the cost of one attribute load per output operand (the
    same as reading ``a`` or ``p``: a plain slot, which is why the check is a subclass and not
    a ``__getattr__``, which would slow every attribute read of every tensor).
    """

    __slots__ = ("a", "p", "w", "wp", "shape", "size", "rows", "cols", "dtype", "name")

    def __new__(cls, array: np.ndarray, name: str = ""):
        """A ``ReadOnlyTensor`` for a read-only array (its output views raise), else a ``Tensor``."""
        if isinstance(array, np.ndarray) and not array.flags.writeable:
            cls = ReadOnlyTensor
        return object.__new__(cls)

    def __init__(self, array: np.ndarray, name: str = "") -> None:
        if not isinstance(array, np.ndarray):
            raise ShapeError(f"tensor {name or '?'}: expected a numpy array, got "
                             f"{type(array).__name__}")
        if not array.flags.c_contiguous:
            raise ShapeError(f"tensor {name or '?'}: array must be C-contiguous")
        if array.dtype not in (np.float32, np.int32):
            raise ShapeError(f"tensor {name or '?'}: dtype {array.dtype} is not float32 or int32")
        if array.ndim == 0:
            array = array.reshape(1)
        shape = array.shape
        p, put = int(array.ctypes.data), _SET
        put(self, "a", array)
        put(self, "p", p)
        if not isinstance(self, ReadOnlyTensor):   # which has properties that raise instead
            put(self, "w", array)
            put(self, "wp", p)
        put(self, "shape", shape)
        put(self, "size", int(array.size))
        put(self, "cols", shape[-1])
        put(self, "rows", math.prod(shape[:-1]))     # (3, 0) has 3 rows of 0 columns
        put(self, "dtype", "f32" if array.dtype == np.float32 else "i32")
        put(self, "name", str(name))

    def __setattr__(self, field: str, value) -> None:
        raise AttributeError(f"Tensor is immutable (its fields were checked once, when it was "
                             f"made): cannot set {field} of {self!r}")

    def __delattr__(self, field: str) -> None:
        raise AttributeError(f"Tensor is immutable: cannot delete {field} of {self!r}")

    def __reduce__(self):
        return (Tensor, (self.a, self.name))

    @classmethod
    def of(cls, array: np.ndarray, name: str = "") -> Tensor:
        """Wrap an existing array (tests, user data copied into a plan's input)."""
        return cls(np.ascontiguousarray(array), name)

    @property
    def writeable(self) -> bool:
        """False for a ReadOnlyTensor (a view of read-only memory), which has no ``w``/``wp``."""
        return not isinstance(self, ReadOnlyTensor)

    @property
    def spec(self) -> Spec:
        """The tensor's ``Spec`` (shape and dtype)."""
        return Spec(self.shape, self.dtype)

    def __repr__(self) -> str:
        ro = "" if self.writeable else ", read-only"
        return f"Tensor({self.name!r}, shape={self.shape}, dtype={self.dtype}{ro})"


class ReadOnlyTensor(Tensor):
    """A Tensor over read-only memory (``Tensor(array)`` makes one when the array is not
    writeable): an input only; taking its output view raises ``KernelError``."""

    __slots__ = ()

    @property
    def w(self) -> np.ndarray:
        """Refused: a read-only tensor has no output view (KernelError naming it)."""
        raise read_only_error(self)

    @property
    def wp(self) -> int:
        """Refused: a read-only tensor has no output address (KernelError naming it)."""
        raise read_only_error(self)


_SET = object.__setattr__


def read_only_error(t: Tensor) -> KernelError:
    """The error for taking the output view (``w`` / ``wp``) of a read-only tensor, naming the
    kernel and the operand: the outermost kernel-set method of the kernel code on the stack
    (the one the caller called, so both sets name the same) and its argument holding ``t``
    (the last one: outputs come last; ``ys[1]`` for an element of a list). Only this error
    path looks at the stack: the check itself, a plain slot read on a writeable tensor, costs
    nothing more than reading ``a`` or ``p``."""
    from .kernels.numpy_quant import WeightDispatch  # a base of both kernel sets

    kernel = operand = None
    frame = sys._getframe(1)
    while frame is not None and (frame.f_globals.get("__name__", "").startswith(_KERNEL_CODE)
                                 or kernel is None):
        code, args = frame.f_code, frame.f_locals
        if isinstance(args.get("self"), WeightDispatch) and not code.co_name.startswith("_"):
            # a generated method carries its kernel's full name (``tpl.prelu``: a plugin's)
            kernel, operand = frame.f_globals.get("_kernel_name") or code.co_name, None
            for arg in code.co_varnames[1:code.co_argcount]:
                v = args.get(arg)
                if v is t:
                    operand = arg
                elif isinstance(v, (list, tuple)):
                    operand = next((f"{arg}[{i}]" for i, e in enumerate(v) if e is t), operand)
        frame = frame.f_back
    del frame
    what = f"{operand} {t.shape}" if operand else f"tensor {t.shape}"
    name = f" ({t.name!r})" if t.name else ""
    where = f"{kernel}: " if kernel else ""
    return KernelError(f"{where}{what}{name} is read-only (a view of a read-only mmap or of a "
                       "bytes object, say) and cannot be written: an output must be writeable")


_KERNEL_CODE = ("qorus_core.kernels.", "qorus_core.tensor")
