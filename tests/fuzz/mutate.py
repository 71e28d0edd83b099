"""Format-blind mutations of bytes, and the boundary values every mutator draws from.

Positions are biased towards ``hot`` (the header: metadata, tensor infos, JSON), where a
flipped byte changes what the parser believes instead of one weight. Each mutator returns
the new bytes and a short description for the findings report.
"""

from __future__ import annotations

import math
import random

#: integers that break size arithmetic: zero, -1, the int32/uint32/int64/uint64 edges, 2^53+1
BOUNDARY_INTS = (0, 1, -1, 2, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**53 + 1, 2**63 - 1, 2**63,
                 2**64 - 1, -(2**31), -(2**63))
#: floats that break numerics: NaN, infinities, signed zero, denormals, the float32 edge
BOUNDARY_FLOATS = (math.nan, math.inf, -math.inf, 0.0, -0.0, -1.0, 1e-45, 1e-40, 5e-324,
                   3.4028235e38, 1e308, 0.5)


def boundary_int(rng: random.Random, old: int | None = None) -> int:
    """A boundary integer, or (given the old value) one of its near neighbours."""
    if old is not None and rng.random() < 0.4:
        return rng.choice((old + 1, old - 1, old * 2, old // 2, -old, old * 1000, old + 2**32))
    return rng.choice(BOUNDARY_INTS)


def pack_int(value: int, width: int) -> bytes:
    """``value`` modulo 2**(8*width), little-endian (so -1 is all ones)."""
    return (value % (1 << (8 * width))).to_bytes(width, "little")


def position(rng: random.Random, size: int, hot: int) -> int:
    """A position in ``[0, size)``: four times in five inside the first ``hot`` bytes."""
    if size <= 0:
        return 0
    hot = max(1, min(hot, size))
    return rng.randrange(hot) if rng.random() < 0.8 else rng.randrange(size)


def _flip(rng, b: bytearray, hot: int) -> str:
    where = [position(rng, len(b), hot) for _ in range(rng.choice((1, 1, 1, 2, 4, 8)))]
    for p in where:
        b[p] ^= 1 << rng.randrange(8)
    return f"flip bits at {where}"


def _setbyte(rng, b: bytearray, hot: int) -> str:
    p = position(rng, len(b), hot)
    v = rng.choice((0, 0xFF, 0x7F, 0x80, 0x01, rng.randrange(256)))
    b[p] = v
    return f"byte {p} := {v:#x}"


def _truncate(rng, b: bytearray, hot: int) -> str:
    cut = position(rng, len(b), hot) if rng.random() < 0.7 else len(b) - rng.randint(1, 64)
    cut = max(0, min(cut, len(b) - 1))
    del b[cut:]
    return f"truncate to {cut} bytes"


def _extend(rng, b: bytearray, hot: int) -> str:
    n = rng.choice((1, 7, 8, 64, 4096))
    kind = rng.choice(("zeros", "ones", "random", "head"))
    tail = {"zeros": bytes(n), "ones": b"\xff" * n, "random": rng.randbytes(n),
            "head": bytes(b[:n])}[kind]
    b += tail
    return f"extend by {len(tail)} bytes of {kind}"


def _insert(rng, b: bytearray, hot: int) -> str:
    p = position(rng, len(b), hot)
    if rng.random() < 0.5:
        w = rng.choice((4, 8))
        v = boundary_int(rng)
        b[p:p] = pack_int(v, w)
        return f"insert int{8 * w} {v} at {p}"
    n = rng.randint(1, 16)
    b[p:p] = rng.randbytes(n)
    return f"insert {n} random bytes at {p}"


def _delete(rng, b: bytearray, hot: int) -> str:
    p = position(rng, len(b), hot)
    n = rng.randint(1, 16)
    del b[p:p + n]
    return f"delete {n} bytes at {p}"


def _splice(rng, b: bytearray, hot: int) -> str:
    src, dst = position(rng, len(b), hot), position(rng, len(b), hot)
    n = rng.randint(1, 64)
    chunk = bytes(b[src:src + n])
    b[dst:dst + len(chunk)] = chunk
    return f"copy {len(chunk)} bytes from {src} over {dst}"


def _overwrite_int(rng, b: bytearray, hot: int) -> str:
    w = rng.choice((4, 8))
    p = position(rng, len(b), hot) & ~(w - 1)     # fields are mostly naturally aligned
    v = boundary_int(rng)
    b[p:p + w] = pack_int(v, w)
    return f"int{8 * w} at {p} := {v}"


BYTE_OPS = {"flip": _flip, "setbyte": _setbyte, "truncate": _truncate, "extend": _extend,
            "insert": _insert, "delete": _delete, "splice": _splice, "int": _overwrite_int}


def mutate_bytes(rng: random.Random, data: bytes, hot: int, ops: tuple[str, ...] | None = None
                 ) -> tuple[bytes, str]:
    """One to three byte-level mutations of ``data``."""
    b = bytearray(data)
    done = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        if not b:
            break
        name = rng.choice(ops or tuple(BYTE_OPS))
        done.append(BYTE_OPS[name](rng, b, hot))
    return bytes(b), "; ".join(done) or "empty"


#: strings that break tokenizers, name lookups and text handling
WEIRD_STRINGS = ("", " ", "x", "<0x!E>", "<0xZZ>", "<0x100>", "<0x", "\u2581", "\x00", "a" * 4096,
                 "é🙂", "\u202e", "..", "../../etc/passwd", "None", "nan", "-1", "4", "four",
                 "{{", "%s%s%s", "mlp.Linear", "llama", "gpt2")
