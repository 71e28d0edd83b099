"""Arena: one aligned buffer, and the planner that places every buffer in it by lifetime.

A ``Slot`` is a buffer to be placed: its size and the intervals of *ticks* during which it
holds live data. Two slots may share memory when their intervals never meet. The planner is
greedy by size (largest first, lowest free offset), the approach of TFLite's arena planner:
simple, deterministic, and close to optimal for the chain-shaped graphs of layer stacks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .errors import ConfigError
from .tensor import DTYPES, Tensor

ALIGN = 64  # bytes: a cache line, and enough for AVX-512 loads

#: environment variable that caps one allocation, in bytes (tests; a deliberately small box)
MAX_ALLOC_ENV = "QORUS_MAX_ALLOC_BYTES"


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
    placed: list[tuple[int, int, int, int, Slot]] = []    # (first, last tick, lo, hi, slot)
    order = sorted(range(len(slots)), key=lambda i: (-slots[i].nbytes, i))
    total = 0
    for i in order:
        s = slots[i]
        size = align_up(max(s.nbytes, 1))
        t0 = min((a for a, _ in s.intervals), default=0)
        t1 = max((b for _, b in s.intervals), default=-1)
        # the tick span first (cheap; compiling a plan per sequence stays fast), then exactly
        busy = sorted((lo, hi) for p0, p1, lo, hi, p in placed
                      if p0 <= t1 and t0 <= p1 and p.overlaps_in_time(s))
        off = 0
        for lo, hi in busy:
            if off + size <= lo:
                break
            off = max(off, hi)
        s.offset = off
        placed.append((t0, t1, off, off + size, s))
        total = max(total, off + size)
    return total


def _meminfo_bytes(*keys: str) -> int | None:
    """The sum of ``keys`` (kB lines) of /proc/meminfo, or None where it cannot be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            values = {k: int(v.split()[0]) * 1024 for k, _, v in (line.partition(":") for line in f)
                      if k in keys}
    except (OSError, ValueError, IndexError):
        return None
    return sum(values.values()) if len(values) == len(keys) else None


def _cgroup_room() -> int | None:
    """What a cgroup v2 memory limit leaves (a container's cap), or None when unlimited."""
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as f:
            cap = f.read().strip()
        if cap == "max":
            return None
        with open("/sys/fs/cgroup/memory.current", encoding="ascii") as f:
            return max(int(cap) - int(f.read().strip()), 0)
    except (OSError, ValueError):
        return None


def memory_limit() -> tuple[int, str]:
    """The most bytes one allocation may ask for now, and where that figure comes from.

    ``QORUS_MAX_ALLOC_BYTES`` when set; otherwise what the system can hand out without an
    out-of-memory kill: MemAvailable + SwapFree of /proc/meminfo (physical memory where that
    file is missing), capped by a cgroup v2 limit. Read once per allocation (a plan, a state
    buffer, the parameter arena), never per step."""
    env = os.environ.get(MAX_ALLOC_ENV)
    if env is not None:
        try:
            limit = int(env)
        except ValueError:
            limit = -1
        if limit < 0:
            raise ConfigError(f"{MAX_ALLOC_ENV}={env!r}: expected a byte count (an int >= 0)")
        return limit, f"the limit set by {MAX_ALLOC_ENV}"
    room, source = _meminfo_bytes("MemAvailable", "SwapFree"), "available (MemAvailable + SwapFree)"
    if room is None:
        try:
            room, source = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "of RAM"
        except (OSError, ValueError, AttributeError):
            return 1 << 62, "(no memory figure on this system)"
    cg = _cgroup_room()
    if cg is not None and cg < room:
        room, source = cg, "left under this cgroup's memory.max"
    return room, source


def human_bytes(n: int) -> str:
    """``n`` bytes as ``"3.7 TiB"``."""
    x = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if x < 1024 or unit == "PiB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024
    return f"{n} B"  # pragma: no cover - unreachable


def check_alloc(nbytes: int, what: str, detail: str = "") -> None:
    """Refuse, before anything is allocated, a request of ``nbytes`` that cannot fit:
    ConfigError naming ``what`` the memory is for, the bytes needed and the bytes there are."""
    limit, source = memory_limit()
    if nbytes > limit:
        raise ConfigError(f"{what}: {nbytes:,} bytes ({human_bytes(nbytes)}) needed, more than the "
                          f"{limit:,} bytes ({human_bytes(limit)}) {source}{detail}")


class Arena:
    """One 64-byte aligned buffer; ``view`` carves typed, shaped Tensors out of it.

    ``name`` says what the arena is for (``"state"``, ``"plan[32,train]"``, ``"state
    blocks.0.attn.k_cache"``): a request that cannot fit in memory is refused up front with a
    ConfigError naming it, never a raw MemoryError or an allocation that swaps the box to death."""

    def __init__(self, nbytes: int, name: str = "arena") -> None:
        if isinstance(nbytes, bool) or not isinstance(nbytes, (int, np.integer)) or nbytes < 0:
            raise ConfigError(f"arena {name!r}: size must be a byte count >= 0, got {nbytes!r}")
        nbytes = int(nbytes)
        check_alloc(nbytes + ALIGN, f"arena {name!r}")
        self.name = name
        self.nbytes = nbytes
        try:
            self._raw = np.zeros(nbytes + ALIGN, dtype=np.uint8)   # zeroed: StateStore relies on it
        except MemoryError:                  # the memory went elsewhere since the check
            raise ConfigError(f"arena {name!r}: cannot allocate {nbytes:,} bytes "
                              f"({human_bytes(nbytes)}): out of memory") from None
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
