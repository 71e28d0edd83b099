"""Tensor: a planned view into an arena, carrying its NumPy view and its address.

Tensors are made once, when a model is compiled; kernels receive them on every call. The
NumPy kernels read ``.a`` (the ndarray view), the C kernels read ``.p`` (its address as a plain
int), so a kernel call creates no array and converts no pointer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ShapeError

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
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.size * DTYPES[self.dtype].itemsize


class Tensor:
    """A contiguous view with its address; ``rows``/``cols`` view it as a 2-D matrix."""

    __slots__ = ("a", "p", "shape", "size", "rows", "cols", "dtype", "name")

    def __init__(self, array: np.ndarray, name: str = "") -> None:
        if not array.flags.c_contiguous:
            raise ShapeError(f"tensor {name or '?'}: array must be C-contiguous")
        if array.dtype not in (np.float32, np.int32):
            raise ShapeError(f"tensor {name or '?'}: dtype {array.dtype} is not float32 or int32")
        if array.ndim == 0:
            array = array.reshape(1)
        self.a = array
        self.p = int(array.ctypes.data)
        self.shape = tuple(array.shape)
        self.size = int(array.size)
        self.cols = int(self.shape[-1])
        self.rows = self.size // self.cols if self.cols else 0
        self.dtype = "f32" if array.dtype == np.float32 else "i32"
        self.name = name

    @classmethod
    def of(cls, array: np.ndarray, name: str = "") -> Tensor:
        """Wrap an existing array (tests, user data copied into a plan's input)."""
        return cls(np.ascontiguousarray(array), name)

    @property
    def spec(self) -> Spec:
        return Spec(self.shape, self.dtype)

    def __repr__(self) -> str:
        return f"Tensor({self.name!r}, shape={self.shape}, dtype={self.dtype})"
