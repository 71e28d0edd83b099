"""The ggml block formats in NumPy, bit for bit with the ``gguf`` package: their sizes, exact
dequantization, the reference quantizers of the types that have one, and the integer form the
products use.

=======  ======  =====  =====================================================================
qtype    values  bytes  block (little-endian; "q" the stored integers)
=======  ======  =====  =====================================================================
f16      1       2      an IEEE half
bf16     1       2      the top 16 bits of a float32
q4_0     32      18     fp16 d, qs[16] nibbles               d * (q - 8)
q4_1     32      20     fp16 d, fp16 m, qs[16]               d * q + m
q5_0     32      22     fp16 d, qh[4], qs[16]                d * (q - 16), q 5 bits
q5_1     32      24     fp16 d, fp16 m, qh[4], qs[16]        d * q + m
q8_0     32      34     fp16 d, int8 q[32]                   d * q
iq4_nl   32      18     fp16 d, qs[16]                       d * KVALUES[q]
q2_k     256     84     sc[16], qs[64], fp16 d, fp16 dmin    (d * (sc & 15)) * q - dmin * (sc >> 4)
q3_k     256     110    hmask[32], qs[64], sc[12], fp16 d    (d * (sc6 - 32)) * (q - 4 * !hbit)
q4_k     256     144    fp16 d, fp16 dmin, sc[12], qs[128]   (d * sc6) * q - dmin * m6
q5_k     256     176    fp16 d, fp16 dmin, sc[12], qh[32],   (d * sc6) * q - dmin * m6, q 5 bits
                        qs[128]
q6_k     256     210    ql[128], qh[64], int8 sc[16], fp16 d (d * sc) * (q - 32), q 6 bits
=======  ======  =====  =====================================================================

32-value blocks hold element j in the low nibble of qs[j] and element j + 16 in its high one
(bit j of qh the fifth bit). The K-quants are super-blocks of 256 in sub-blocks of 16 (q2_k,
q3_k, q6_k) or 32 (q4_k, q5_k) with their own scales; their bit layouts are in ``_unpack_*``.
The float expressions above are the exact operation order of ggml's and gguf's dequantizers.

The products use each block of 32 in the form ``value = D * qs - mins``: ``qs`` exact
integers (the sub-block scale folded in), ``D`` one float a block, ``mins`` the per-element
offset (None where a format has none).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_F16 = np.dtype("<f2")
KVALUES = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113],
                   np.float32)   # iq4_nl's non-linear levels


@dataclass(frozen=True)
class QFormat:
    """A weight format: its ggml type number, values and bytes a block, and whether it has a
    reference quantizer here (the ones the ``gguf`` package can write)."""

    name: str
    number: int
    block_values: int
    block_bytes: int
    quantizable: bool


FORMATS = {f.name: f for f in (
    QFormat("f16", 1, 1, 2, True), QFormat("q4_0", 2, 32, 18, True),
    QFormat("q4_1", 3, 32, 20, True), QFormat("q5_0", 6, 32, 22, True),
    QFormat("q5_1", 7, 32, 24, True), QFormat("q8_0", 8, 32, 34, True),
    QFormat("q2_k", 10, 256, 84, False), QFormat("q3_k", 11, 256, 110, False),
    QFormat("q4_k", 12, 256, 144, False), QFormat("q5_k", 13, 256, 176, False),
    QFormat("q6_k", 14, 256, 210, False), QFormat("iq4_nl", 20, 32, 18, False),
    QFormat("bf16", 30, 1, 2, True))}
FLOAT_FORMATS = ("f16", "bf16")


def _f16(b: np.ndarray) -> np.ndarray:
    """[..., 2] bytes -> [...] float32 (exact)."""
    return np.ascontiguousarray(b).view(_F16)[..., 0].astype(np.float32)


def _half(a: np.ndarray) -> np.ndarray:
    """float32 -> the fp16 bytes (round to nearest even; beyond 65504: inf, as ggml)."""
    with np.errstate(over="ignore"):
        return a.astype(_F16).view(np.uint8)


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """[..., 16] packed -> [..., 32] values 0..15 in element order."""
    return np.concatenate([qs & np.uint8(15), qs >> np.uint8(4)], axis=-1)


def _high_bits(qh: np.ndarray) -> np.ndarray:
    """[..., 4] bytes of a 32-bit mask -> [..., 32] bits (bit j = element j)."""
    return np.unpackbits(np.ascontiguousarray(qh), axis=-1, bitorder="little")


# ----------------------------------------------------------------------------- the K-quants
def _scale_min_k4(sc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """q4_k / q5_k: 12 bytes -> 8 six-bit scales and 8 six-bit mins, as float32."""
    d, m, md = sc[..., 0:4], sc[..., 4:8], sc[..., 8:12]
    scale = np.concatenate([d & 63, (md & 15) | ((d >> 2) & 48)], axis=-1)
    mins = np.concatenate([m & 63, (md >> 4) | ((m >> 2) & 48)], axis=-1)
    return scale.astype(np.float32), mins.astype(np.float32)


def _crumbs(qs: np.ndarray, groups: int) -> np.ndarray:
    """2-bit fields: [..., 32 * groups] bytes -> [..., 128 * groups] values, element
    128 g + 32 s + l = bits 2s of byte 32 g + l."""
    q = qs.reshape(*qs.shape[:-1], groups, 1, 32) >> np.array([0, 2, 4, 6], np.uint8)[:, None]
    return (q & np.uint8(3)).reshape(*qs.shape[:-1], 128 * groups)


def _unpack_k(name: str, blk: np.ndarray):
    """Super-blocks [..., bytes] -> (q [..., 256] float32 as stored, d [...], sub-block
    scales [..., nsub], sub-block mins [..., nsub] or None, dmin [...] or None)."""
    if name == "q2_k":
        sc, qs = blk[..., 0:16], blk[..., 16:80]
        return (_crumbs(qs, 2).astype(np.float32), _f16(blk[..., 80:82]),
                (sc & 15).astype(np.float32), (sc >> 4).astype(np.float32), _f16(blk[..., 82:84]))
    if name == "q3_k":
        hbit = _unpack_hmask(blk[..., 0:32])
        q = _crumbs(blk[..., 32:96], 2).astype(np.int8) - ((hbit ^ 1) << 2).astype(np.int8)
        s = blk[..., 96:108]
        lo = np.concatenate([s[..., 0:8] & 15, s[..., 0:8] >> 4], axis=-1)
        hi = (s[..., 8:12, None] >> np.array([0, 2, 4, 6], np.uint8)) & 3   # [..., byte, shift]
        hi = np.swapaxes(hi, -1, -2).reshape(*s.shape[:-1], 16)
        scale = (lo | (hi << 4)).astype(np.int8) - np.int8(32)
        return q.astype(np.float32), _f16(blk[..., 108:110]), scale.astype(np.float32), None, None
    if name in ("q4_k", "q5_k"):
        scale, mins = _scale_min_k4(blk[..., 4:16])
        qs = blk[..., -128:].reshape(*blk.shape[:-1], 4, 1, 32) >> np.array([0, 4], np.uint8)[:, None]
        q = (qs & np.uint8(15)).reshape(*blk.shape[:-1], 256)
        if name == "q5_k":
            q = q | (_unpack_hmask(blk[..., 16:48]) << 4)
        return q.astype(np.float32), _f16(blk[..., 0:2]), scale, mins, _f16(blk[..., 2:4])
    # q6_k
    ql = blk[..., 0:128].reshape(*blk.shape[:-1], 2, 1, 64) >> np.array([0, 4], np.uint8)[:, None]
    ql = (ql & np.uint8(15)).reshape(*blk.shape[:-1], 256)
    q = (ql | (_crumbs(blk[..., 128:192], 2) << 4)).astype(np.int8) - np.int8(32)
    return (q.astype(np.float32), _f16(blk[..., 208:210]),
            blk[..., 192:208].view(np.int8).astype(np.float32), None, None)


def _unpack_hmask(hm: np.ndarray) -> np.ndarray:
    """[..., 32] bytes -> [..., 256] bits: element 32 b + l = bit b of byte l."""
    bits = hm[..., None, :] >> np.arange(8, dtype=np.uint8)[:, None]       # [..., b, l]
    return (bits & np.uint8(1)).reshape(*hm.shape[:-1], 256)


def _dequantize_k(name: str, blk: np.ndarray) -> np.ndarray:
    q, d, scale, mins, dmin = _unpack_k(name, blk)
    nsub = scale.shape[-1]
    q = q.reshape(*q.shape[:-1], nsub, 256 // nsub)
    y = (d[..., None] * scale)[..., None] * q
    if mins is not None:
        y = y - (dmin[..., None] * mins)[..., None]
    return y.reshape(*blk.shape[:-1], 256)


# ----------------------------------------------------------------------------- 32-value blocks
def _unpack_32(name: str, blk: np.ndarray):
    """Blocks [..., bytes] -> (q [..., 32] float32 as stored (offsets applied), d, m or None)."""
    d = _f16(blk[..., 0:2])
    if name == "q8_0":
        return blk[..., 2:].view(np.int8).astype(np.float32), d, None
    if name == "q4_0":
        return _nibbles(blk[..., 2:]).astype(np.float32) - np.float32(8), d, None
    if name == "q4_1":
        return _nibbles(blk[..., 4:]).astype(np.float32), d, _f16(blk[..., 2:4])
    if name == "iq4_nl":
        return KVALUES[_nibbles(blk[..., 2:])], d, None
    off = 4 if name == "q5_1" else 2
    q = (_nibbles(blk[..., off + 4:]) | (_high_bits(blk[..., off:off + 4]) << 4)).astype(np.float32)
    if name == "q5_0":
        return q - np.float32(16), d, None
    return q, d, _f16(blk[..., 2:4])


def dequantize(name: str, raw: np.ndarray, n: int, k: int, out: np.ndarray) -> None:
    """out [n, k] float32 = the values of a weight of format ``name`` (raw: its bytes)."""
    f = FORMATS[name]
    if n * k == 0:
        return
    if name == "f16":
        out.reshape(-1)[:] = raw.view(_F16).astype(np.float32)
        return
    if name == "bf16":
        out.reshape(-1)[:] = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
        return
    blk = raw.reshape(n, k // f.block_values, f.block_bytes)
    Y = out.reshape(n, k // f.block_values, f.block_values)
    if f.block_values == 256:
        Y[...] = _dequantize_k(name, blk)
        return
    q, d, m = _unpack_32(name, blk)
    if m is not None:
        np.multiply(d[..., None], q, out=Y)
        np.add(Y, m[..., None], out=Y)
    else:
        np.multiply(q, d[..., None], out=Y)


def unpack_products(name: str, raw: np.ndarray, n: int, k: int):
    """A weight's 32-value blocks as ``value = D * qs - mins``: (qs [n, k/32, 32] float32 exact
    integers, D [n, k/32], mins [n, k/32, 32] or None)."""
    f = FORMATS[name]
    nb = k // 32
    blk = raw.reshape(n, k // f.block_values, f.block_bytes)
    if f.block_values == 32:
        q, d, m = _unpack_32(name, blk)
        mins = None if m is None else np.broadcast_to(-m[..., None], q.shape)
        return q, d, mins
    q, d, scale, mins, dmin = _unpack_k(name, blk)
    nsub = scale.shape[-1]
    per = 256 // nsub
    qs = (q.reshape(n, -1, nsub, per) * scale[..., None]).reshape(n, nb, 32)
    D = np.repeat(d, 8, axis=-1)
    if mins is None:
        return qs, D, None
    mv = np.repeat(dmin[..., None] * mins, per, axis=-1).reshape(n, nb, 32)
    return qs, D, mv


# ----------------------------------------------------------------------------- quantizers
def quantize_blocks(name: str, x: np.ndarray) -> np.ndarray:
    """x [nblocks, 32] float32 -> [nblocks, block bytes] uint8, bit-exact with the ``gguf``
    package's (ggml's reference) quantizers: q8_0, q4_0, q4_1, q5_0, q5_1."""
    if name == "q8_0":
        d = np.abs(x).max(axis=1, keepdims=True) / np.float32(127)
        v = x * _inverse(d)
        a = np.abs(v)
        t = np.trunc(a)
        r = t + (a - t >= np.float32(0.5)).astype(np.float32)   # round half away from zero
        q = np.where(v < 0, -r, r).astype(np.int8)
        return np.concatenate([_half(d), q.view(np.uint8)], axis=1)
    if name in ("q4_0", "q5_0"):
        levels = 8 if name == "q4_0" else 16
        imax = np.abs(x).argmax(axis=1)[:, None]                # first of largest magnitude
        d = np.take_along_axis(x, imax, axis=1) / np.float32(-levels)
        q = np.minimum(_trunc(x * _inverse(d) + np.float32(levels + 0.5)), 2 * levels - 1)
        return np.concatenate([_half(d), *_pack_q(q, name == "q5_0")], axis=1)
    top = 15 if name == "q4_1" else 31
    lo = x.min(axis=1, keepdims=True)
    d = (x.max(axis=1, keepdims=True) - lo) / np.float32(top)
    q = np.minimum(_trunc((x - lo) * _inverse(d) + np.float32(0.5)), top)
    return np.concatenate([_half(d), _half(lo), *_pack_q(q, name == "q5_1")], axis=1)


def _inverse(d: np.ndarray) -> np.ndarray:
    return np.divide(np.float32(1), d, out=np.zeros_like(d), where=d != 0)


def _trunc(v: np.ndarray) -> np.ndarray:
    """truncated toward zero as uint8 (NaN and out-of-range become the top level after the
    caller's minimum, as ggml's (int) cast and clamp give)."""
    with np.errstate(invalid="ignore"):
        t = np.trunc(v)
    return np.where(np.isfinite(t) & (t >= 0) & (t < 256), t, 255).astype(np.uint8)


def _pack_q(q: np.ndarray, five: bool) -> list[np.ndarray]:
    """[nblocks, 32] levels -> ([qh bytes], nibble bytes)."""
    lo = q.reshape(-1, 2, 16) & np.uint8(15)
    nib = lo[:, 0] | (lo[:, 1] << np.uint8(4))
    if not five:
        return [nib]
    return [np.packbits(q >> np.uint8(4), axis=1, bitorder="little"), nib]


def bf16_bytes(x: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bytes, as ggml_compute_fp32_to_bf16 (NaN quieted, nearest even)."""
    n = np.ascontiguousarray(x, np.float32).view(np.uint32)
    n = np.where((n & 0x7FFFFFFF) > 0x7F800000, (n & np.uint32(0xFFFF0000)) | np.uint32(64 << 16), n)
    n = (n.astype(np.uint64) + (0x7FFF + ((n >> 16) & 1))) >> 16
    return n.astype(np.uint16).view(np.uint8)


def random_blocks(name: str, n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Bytes of a random, finite weight of format ``name`` [n, k] (the formats without a
    quantizer here: random bits, fp16 scales set to small finite values)."""
    f = FORMATS[name]
    blocks = n * k // f.block_values
    raw = rng.integers(0, 256, (blocks, f.block_bytes), dtype=np.uint8)
    scale_at = {"q2_k": (80, 82), "q3_k": (108,), "q4_k": (0, 2), "q5_k": (0, 2),
                "q6_k": (208,), "iq4_nl": (0,)}[name]
    for at in scale_at:
        scale = rng.uniform(0.002, 0.02, blocks).astype(np.float32) / (64 if "k" in name else 1)
        raw[:, at:at + 2] = _half(scale).reshape(blocks, 2)
    return raw.reshape(-1)
