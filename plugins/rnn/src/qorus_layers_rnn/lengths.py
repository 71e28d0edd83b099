"""Variable-length batches: the ``lengths`` input (int32 [B]) is checked and turned into the
mask of valid positions at the start of every forward, from buffers made once per plan.

Position ``t`` of sequence ``b`` is valid when ``t < lengths[b]``. ``Views.lo`` / ``hi``
(the shortest and longest length) let the time loop skip the mask where every row is valid
(``t < lo``) and skip the cell where none is (``t >= hi``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qorus_core import Tensor
from qorus_core.errors import ShapeError


class LengthGrid:
    """The constants of one plan's mask: positions [T, 1, 1] and a [1, B, 1] view of the
    plan's lengths input (made on the first forward; a NumPy comparison into the saved mask
    then allocates nothing)."""

    def __init__(self, lengths: Tensor, T: int) -> None:
        self.positions = np.arange(T, dtype=np.int32).reshape(T, 1, 1)
        self.lengths = lengths.a.reshape(1, -1, 1)


def apply_lengths(where: str, views: Any, lengths: Tensor) -> None:
    """Check ``lengths`` (each in [1, T], else ``ShapeError`` naming ``where``), set
    ``views.lo`` / ``hi`` / ``masked`` and fill ``views.mask`` [T, B, H] (1 valid, 0 padding)."""
    T = views.T
    lo, hi = int(lengths.a.min()), int(lengths.a.max())
    if lo < 1 or hi > T:
        raise ShapeError(f"{where}: lengths must be in [1, {T}] (1 to the {T} time steps of "
                         f"x), got values from {lo} to {hi}")
    views.lo, views.hi, views.masked = lo, hi, lo < T
    if views.masked:
        grid = views.grid
        if grid is None:
            grid = views.grid = LengthGrid(lengths, T)
        np.less(grid.positions, grid.lengths, out=views.mask.w)

