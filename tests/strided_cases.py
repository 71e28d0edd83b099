"""Shapes, copies and reference helpers shared by the strided kernel tests."""

from __future__ import annotations

import numpy as np

from qorus_core.kernels import c_status
from qorus_core.kernels.decl.strided import DIV, MAXIMUM, MINIMUM
from qorus_core.tensor import Tensor

SETS = ["numpy"] + (["c"] if c_status()[0] else [])
UFUNCS = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
          "maximum": np.maximum, "minimum": np.minimum}


def T(a, dtype=np.float32) -> Tensor:
    return Tensor(np.array(a, dtype=dtype, copy=True).reshape(np.shape(a) or (1,)))


def rnd(shape, seed, lo=-2.0, hi=2.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(lo, hi, shape).astype(np.float32)


def away_from(x: np.ndarray, shape, seed: int, gap: float) -> np.ndarray:
    """Values of ``shape``, each at least ``gap`` above or below every entry of x (half
    each way): inputs of maximum / minimum with no ties, so FD never crosses a kink."""
    rng = np.random.default_rng(seed)
    up = x.max() + gap + rng.uniform(0, 1, shape)
    down = x.min() - gap - rng.uniform(0, 1, shape)
    return np.where(rng.random(shape) < 0.5, up, down).astype(np.float32)


# broadcast patterns (a, b, out): scalars, leading, middle and trailing dims, size 1 on both
# sides, the full shape, six alternating dims (the most C takes), large (threads)
PATTERNS = [((1,), (5,), (5,)), ((5,), (1,), (5,)), ((4, 1), (3,), (4, 3)),
            ((2, 1, 3), (4, 1), (2, 4, 3)), ((1, 1), (1, 1), (1, 1)), ((1,), (1,), (1,)),
            ((6, 1, 1, 5), (1, 3, 7, 1), (6, 3, 7, 5)), ((3,), (2, 1), (2, 3)),
            ((1, 4, 1), (2, 1, 1, 1), (2, 1, 4, 1)), ((9, 17), (9, 17), (9, 17)),
            ((3, 1, 1, 4), (3, 2, 5, 4), (3, 2, 5, 4)), ((1, 5, 1, 2, 1, 3), (4, 1, 3, 1, 2, 1),
                                                        (4, 5, 3, 2, 2, 3)),
            ((1, 1, 7), (2, 3, 1), (2, 3, 7)), ((257, 1, 513), (1, 3, 513), (257, 3, 513))]
PAT_IDS = [f"{a}-{b}" for a, b, _ in PATTERNS]


SUMS = [((4, 5, 6), (5, 1)), ((4, 5, 6), (1, 5, 1)), ((4, 5, 6), (6,)), ((4, 5, 6), (1,)),
        ((4, 5, 6), (4, 1, 6)), ((4, 5, 6), (4, 5, 6)), ((4, 5, 6), (4, 1, 1)),
        ((7,), (1,)), ((3, 1, 7, 2, 5), (3, 1, 1, 2, 1)), ((1000, 33), (33,)),
        ((33, 1000), (33, 1)), ((2, 3, 2, 3, 2, 3), (3, 1, 3, 1, 3))]




def _strided_ref(src, dst, shape, so, ss, do, ds, acc):
    out = dst.copy().reshape(-1)
    s = src.reshape(-1)
    for i in np.ndindex(*shape):
        v = s[so + sum(a * b for a, b in zip(i, ss))]
        j = do + sum(a * b for a, b in zip(i, ds))
        out[j] = out[j] + v if acc else v
    return out.reshape(dst.shape)


COPIES = {   # name: (src shape, dst shape, shape, src offset, src strides, dst offset, strides)
    "transpose": ((4, 5), (5, 4), (5, 4), 0, (1, 5), 0, (4, 1)),
    "permute3": ((2, 3, 4), (4, 2, 3), (4, 2, 3), 0, (1, 12, 4), 0, (6, 3, 1)),
    "concat-second": ((3, 4), (5, 4), (3, 4), 0, (4, 1), 8, (4, 1)),
    "concat-cols": ((3, 2), (3, 5), (3, 2), 0, (2, 1), 3, (5, 1)),
    "slice-step": ((6, 8), (2, 3), (2, 3), 10, (16, 2), 0, (3, 1)),
    "expand": ((1, 4), (3, 4), (3, 4), 0, (0, 1), 0, (4, 1)),
    "expand-scalar": ((1,), (2, 3, 2), (2, 3, 2), 0, (0, 0, 0), 0, (6, 2, 1)),
    "split": ((5, 4), (2, 4), (2, 4), 12, (4, 1), 0, (4, 1)),
    "ones": ((3,), (3,), (1, 1, 3, 1), 0, (5, 7, 1, 9), 0, (0, 0, 1, 0)),
    "reverse-cols-as-gather": ((4, 6), (6, 4), (6, 4), 0, (1, 6), 0, (4, 1)),
    "six": ((2, 3, 2, 3, 2, 3), (3, 2, 3, 2, 3, 2), (3, 2, 3, 2, 3, 2), 0,
            (1, 3, 6, 18, 36, 108), 0, (72, 36, 12, 6, 2, 1)),
    "big": ((130, 1100), (1100, 130), (1100, 130), 0, (1, 1100), 0, (130, 1)),
}



WHERES = [((7, 1, 5), (1, 3, 5), (7, 1, 1), (7, 3, 5)), ((1,), (4, 3), (3,), (4, 3)),
          ((2, 3), (1,), (1,), (2, 3)), ((4, 1, 6, 1), (1, 5, 1, 3), (4, 5, 6, 3), (4, 5, 6, 3)),
          ((300, 1), (1, 700), (300, 700), (300, 700))]


def binary_inputs(op, sa, sb):
    a = rnd(sa, 20)
    if op == DIV:
        b = rnd(sb, 21, 0.5, 2.0)
    elif op in (MAXIMUM, MINIMUM):
        b = away_from(a, sb, 21, 0.1)
    else:
        b = rnd(sb, 21)
    return a, b
