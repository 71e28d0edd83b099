"""Arena: one aligned buffer, and the planner that places every buffer in it by lifetime.

A ``Slot`` is a buffer to be placed: its size and the intervals of *ticks* during which it
holds live data. Two slots may share memory when their intervals never meet. The planner is
greedy by size (largest first, lowest free offset), the approach of TFLite's arena planner:
simple, deterministic, and close to optimal for the chain-shaped graphs of layer stacks.
"""

from __future__ import annotations

import os
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field

import numpy as np

from .errors import ConfigError
from .tensor import DTYPES, Tensor

try:
    import resource
except ImportError:                    # not on Windows
    resource = None  # type: ignore[assignment]

ALIGN = 64  # bytes: a cache line, and enough for AVX-512 loads

#: environment variable that caps one allocation, in bytes (tests; a deliberately small box)
MAX_ALLOC_ENV = "QORUS_MAX_ALLOC_BYTES"


def align_up(n: int, a: int = ALIGN) -> int:
    """``n`` rounded up to a multiple of ``a``."""
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
        """Whether the two slots are live at a common tick (then they must not share bytes)."""
        return any(a0 <= b1 and b0 <= a1 for a0, a1 in self.intervals for b0, b1 in other.intervals)


def plan_offsets(slots: list[Slot]) -> int:
    """Give every slot an offset so that slots live at the same time never share bytes.

    Greedy by size: largest first (ties keep the slots' given order), each at the start of the
    lowest gap, between the bytes of the slots already placed that are live at the same time,
    that is large enough. Returns the arena size in bytes. Deterministic.

    Finding those slots one by one costs the number placed per slot: quadratic, and a training
    plan's activations all live across the middle of the timeline, so each one meets every
    other (a 256-block GPT took over 10 s). Instead, a segment tree over the ticks keeps, per
    node, the byte ranges in use as a merged sorted list: ``cover`` for slots live during the
    whole of the node's ticks, ``inside`` for slots with a canonical node in its subtree. The
    bytes in use at some tick of a query interval are the ``inside`` of its O(log T) canonical
    nodes and the ``cover`` of their ancestors; the lowest gap is found by jumping over the
    merged ranges of those few lists. About n log^2 n; the offsets are exactly those of the
    one-by-one search (tests/test_planner_offsets.py compares them).
    """
    ticks = sorted({t for s in slots for iv in s.intervals for t in iv})
    rank = {t: i for i, t in enumerate(ticks)}
    leaves = 1
    while leaves < len(ticks):
        leaves *= 2
    cover: dict[int, tuple[list[int], list[int]]] = {}    # node -> (starts, ends), merged
    inside: dict[int, tuple[list[int], list[int]]] = {}
    total = 0
    for i in sorted(range(len(slots)), key=lambda i: (-slots[i].nbytes, i)):
        s = slots[i]
        size = align_up(max(s.nbytes, 1))
        canon: list[int] = []                              # the nodes tiling its intervals
        for a, b in s.intervals:
            if a > b:
                raise ValueError(f"slot {s.name}: interval ({a}, {b}) ends before it starts")
            lo, hi = rank[a] + leaves, rank[b] + leaves + 1
            while lo < hi:
                if lo & 1:
                    canon.append(lo)
                    lo += 1
                if hi & 1:
                    hi -= 1
                    canon.append(hi)
                lo, hi = lo >> 1, hi >> 1
        above: set[int] = set()                            # their strict ancestors
        for node in canon:
            node >>= 1
            while node and node not in above:
                above.add(node)
                node >>= 1
        busy = [inside[n] for n in canon if n in inside] + [cover[n] for n in above if n in cover]
        off = 0
        while True:                                        # jump past what overlaps [off, +size)
            nxt = off
            for starts, ends in busy:
                k = bisect_right(ends, off)
                if k < len(ends) and starts[k] < off + size and ends[k] > nxt:
                    nxt = ends[k]
            if nxt == off:
                break
            off = nxt
        s.offset = off
        for node in canon:
            _merge_in(cover.setdefault(node, ([], [])), off, off + size)
        for node in (*canon, *above):
            _merge_in(inside.setdefault(node, ([], [])), off, off + size)
        total = max(total, off + size)
    return total


def _merge_in(ranges: tuple[list[int], list[int]], lo: int, hi: int) -> None:
    """Add [lo, hi) to sorted disjoint ranges (starts, ends), merging those it meets."""
    starts, ends = ranges
    i = bisect_left(ends, lo)
    j = bisect_right(starts, hi, i)
    if i < j:
        if starts[i] < lo:
            lo = starts[i]
        if ends[j - 1] > hi:
            hi = ends[j - 1]
    starts[i:j] = [lo]
    ends[i:j] = [hi]


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


def _rlimit_room() -> int | None:
    """What an address-space limit (``ulimit -v``: RLIMIT_AS) leaves this process, or None
    when there is none: past it every allocation fails, however much memory is free."""
    if resource is None:
        return None
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY:
            return None
        with open("/proc/self/statm", encoding="ascii") as f:
            used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None
    return max(soft - used, 0)


def memory_limit() -> tuple[int, str]:
    """The most bytes one allocation may ask for now, and where that figure comes from.

    ``QORUS_MAX_ALLOC_BYTES`` when set; otherwise what the system can hand out without an
    out-of-memory kill: MemAvailable + SwapFree of /proc/meminfo (physical memory where that
    file is missing), capped by a cgroup v2 limit and by what RLIMIT_AS leaves. Read once
    per allocation (a plan, a state buffer, the parameter arena), never per step."""
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
            room, source = 1 << 62, "(no memory figure on this system)"
    for cap, why in ((_cgroup_room(), "left under this cgroup's memory.max"),
                     (_rlimit_room(), "of address space left under RLIMIT_AS (ulimit -v)")):
        if cap is not None and cap < room:
            room, source = cap, why
    return room, source


def human_bytes(n: int) -> str:
    """``n`` bytes as ``"3.7 TiB"``, rounded half to even; exact for any int (a float would
    overflow past 10**308 bytes, the size of a shape of a thousand dimensions)."""
    n = int(n)
    if n < 0:
        return "-" + human_bytes(-n)
    if n < 1024:
        return f"{n} B"
    units = ("KiB", "MiB", "GiB", "TiB", "PiB")
    power = 1
    while power < len(units) and n >= 1024 ** (power + 1):
        power += 1
    unit = 1024 ** power
    tenths, rest = divmod(10 * n, unit)
    if 2 * rest > unit or (2 * rest == unit and tenths % 2):
        tenths += 1
    return f"{tenths // 10}.{tenths % 10} {units[power - 1]}"


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
        """A ``Tensor`` of ``shape`` and ``dtype`` over the arena's bytes at ``offset`` (no copy)."""
        dt = DTYPES[dtype]
        count = 1
        for d in shape:
            count *= d
        if offset % ALIGN and offset % dt.itemsize:
            raise ValueError(f"misaligned view {name} at {offset}")
        arr = self.buf[offset:offset + count * dt.itemsize].view(dt).reshape(shape)
        return Tensor(arr, name)
