"""Arena: one aligned buffer, and the planner that places every buffer in it by lifetime.

A ``Slot`` is a buffer to be placed: its size and the intervals of *ticks* during which it
holds live data. Two slots may share memory when their intervals never meet. The planner is
greedy by size (largest first, lowest free offset), the approach of TFLite's arena planner:
simple, deterministic, and close to optimal for the chain-shaped graphs of layer stacks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .tensor import DTYPES, Tensor

ALIGN = 64  # bytes: a cache line, and enough for AVX-512 loads


def align_up(n: int, a: int = ALIGN) -> int:
    return (n + a - 1) // a * a


@dataclass(eq=False)
class Slot:
    """A buffer the planner places: ``nbytes`` live during ``intervals`` (inclusive ticks)."""

    name: str
    nbytes: int
    intervals: list[tuple[int, int]] = field(default_factory=list)
    region: str = "activations"
    offset: int = -1

    def overlaps_in_time(self, other: Slot) -> bool:
        return any(a0 <= b1 and b0 <= a1 for a0, a1 in self.intervals for b0, b1 in other.intervals)


def plan_offsets(slots: list[Slot]) -> int:
    """Give every slot an offset so that slots live at the same time never share bytes.

    Returns the arena size in bytes. Deterministic: ties keep the slots' given order.
    """
    placed: list[Slot] = []
    order = sorted(range(len(slots)), key=lambda i: (-slots[i].nbytes, i))
    total = 0
    for i in order:
        s = slots[i]
        size = align_up(max(s.nbytes, 1))
        busy = sorted((p.offset, p.offset + align_up(max(p.nbytes, 1)))
                      for p in placed if p.overlaps_in_time(s))
        off = 0
        for lo, hi in busy:
            if off + size <= lo:
                break
            off = max(off, hi)
        s.offset = off
        placed.append(s)
        total = max(total, off + size)
    return total


class Arena:
    """One 64-byte aligned buffer; ``view`` carves typed, shaped Tensors out of it."""

    def __init__(self, nbytes: int, name: str = "arena") -> None:
        self.name = name
        self.nbytes = nbytes
        self._raw = np.zeros(nbytes + ALIGN, dtype=np.uint8)
        start = (-self._raw.ctypes.data) % ALIGN
        self.buf = self._raw[start:start + nbytes]

    def view(self, offset: int, shape: tuple[int, ...], dtype: str = "f32", name: str = "") -> Tensor:
        dt = DTYPES[dtype]
        count = 1
        for d in shape:
            count *= d
        if offset % ALIGN and offset % dt.itemsize:
            raise ValueError(f"misaligned view {name} at {offset}")
        arr = self.buf[offset:offset + count * dt.itemsize].view(dt).reshape(shape)
        return Tensor(arr, name)
