"""A decode step over several sequences at once (csrc/decode_rows.c and its SIMD tiers,
decode_rows_avx512.c / _avx2.c): a server's slots advance together in one pass over the
weights.

Row b of the step has its own position ``pos[b]`` and KV-cache slot ``slot[b]`` (int32 [B],
B <= ``ROWS_MAX``), and every kernel gives it exactly what the one-row kernels give it alone
(``matmul_q`` with one row, ``rope`` at that position, ``attention_decode`` of that length),
so a sequence decodes the same batched or not. A slot or position out of range is refused
(a KernelError naming the row) before anything is written.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import numpy as np

from ...errors import KernelError
from ...tensor import Tensor
from .fused import FAMILY, _scale, attention_decode, rope, rope_dims
from .quant import _QT, _k, check_mm, check_weight_list
from .quant import FAMILY as QUANT
from .spec import c_error, kernel

ROWS_MAX = 64                 # rows of one step (the C kernels' QR_ROWS_MAX)
ETARGET = -2                  # QR_ETARGET: a row's slot or position out of range


def _rows(kernel: str, name: str, t: Tensor, B: int) -> None:
    if t.dtype != "i32" or t.size != B:
        raise KernelError(f"{kernel}: {name} {t.shape} ({t.dtype}) must be int32 [{B}]")


def _count(kernel: str, B: int) -> None:
    if B > ROWS_MAX:
        raise KernelError(f"{kernel}: {B} rows, at most {ROWS_MAX} in one step")


def check_in_range(kernel: str, slot: Tensor | None, pos: Tensor, S: int, L: int, T: int) -> None:
    """KernelError naming the first row whose slot is outside [0, S) or whose positions
    pos..pos+T-1 are outside [0, L)."""
    p = pos.a.reshape(-1)
    s = None if slot is None else slot.a.reshape(-1)
    for b in range(p.size):
        if s is not None and not 0 <= int(s[b]) < S:
            raise KernelError(f"{kernel}: slot[{b}]={int(s[b])} outside [0, {S})")
        if int(p[b]) < 0 or int(p[b]) + T > L:
            raise KernelError(f"{kernel}: pos[{b}]={int(p[b])} with {T} position(s) is outside "
                              f"[0, {L})")


def _on_error(in_range):
    """The C error of a rows kernel: for QR_ETARGET, the NumPy set's message."""
    def error(kernel: str, rc: int, *args) -> KernelError:
        if rc == ETARGET:
            try:
                in_range(kernel, *args)
            except KernelError as exc:
                return exc
        return c_error(kernel, rc, *args)
    return error


# ----------------------------------------------------------------------------- rope_rows
def check_rope_rows(kernel: str, x: Tensor, y: Tensor, pos: Tensor, theta,
                    half_split) -> tuple[int, int, int, int]:
    """(B, T, H, D) of x [B, T, H, D] (y like it, may alias it), pos int32 [B]."""
    B, T, H, D = rope_dims(kernel, x, y)
    if not theta > 0:
        raise KernelError(f"{kernel}: theta={theta} must be > 0")
    if x.p != y.p and x.p < y.p + 4 * y.size and y.p < x.p + 4 * x.size:
        raise KernelError(f"{kernel}: x and y overlap partially")
    _rows(kernel, "pos", pos, B)
    _count(kernel, B)
    return B, T, H, D


def _rope_range(kernel: str, x, y, pos, theta, half_split) -> None:
    p = pos.a.reshape(-1)
    for b in range(p.size):
        if int(p[b]) < 0:
            raise KernelError(f"{kernel}: pos[{b}]={int(p[b])} must be >= 0")


_ROPE = [dict(x=(3, 1, 2, 8), y=(3, 1, 2, 8), pos=((3,), 0, 50)),
         dict(x=(2, 3, 4, 6), y=(2, 3, 4, 6), pos=((2,), 0, 9), theta=500.0, half_split=True)]


@kernel(FAMILY, "x y:out pos:i32", check=check_rope_rows, dims="B T H D", replay=True,
        c="qr_rope_rows_f32(x, y, pos, B, T, H, D, theta:f32, half_split:bool)",
        on_error=_on_error(_rope_range), examples=_ROPE, tol=(1e-5, 1e-6),
        bad=[(r"pos\[1\]=-1 must be >= 0", dict(pos=lambda rng: np.array([4, -1, 2], np.int32))),
             ("theta=0.0 must be > 0", dict(theta=0.0))])
def rope_rows(self, x: Tensor, y: Tensor, pos: Tensor, theta: float = 10000.0,
              half_split: bool = False) -> None:
    """``rope`` of each row b of x [B, T, H, D] at positions pos[b] + t (pos int32 [B]):
    row b gets exactly what ``rope(x[b], pos_offset=pos[b])`` gives it. y may alias x."""
    B, T, H, D = check_rope_rows("rope_rows", x, y, pos, theta, half_split)
    _rope_range("rope_rows", x, y, pos, theta, half_split)
    X, Y, P = x.a.reshape(B, T, H, D), y.w.reshape(B, T, H, D), pos.a.reshape(-1)
    for b in range(B):
        rope.numpy(self, Tensor(X[b]), Tensor(Y[b]), int(P[b]), theta, half_split)


# ----------------------------------------------------------------------------- kv_store_rows
def check_kv_store(kernel: str, src: Tensor, cache: Tensor, slot: Tensor, pos: Tensor
                   ) -> tuple[int, int, int, int, int]:
    """(B, T, W, S, L) of src [B, T, ...] and cache [S, L, ...], W values a position."""
    if len(cache.shape) < 3 or len(src.shape) < 2:
        raise KernelError(f"{kernel}: cache {cache.shape} must be [S, L, ...] and src "
                          f"{src.shape} [B, T, ...]")
    S, L = int(cache.shape[0]), int(cache.shape[1])
    W = cache.size // (S * L) if S * L else 0
    B = int(src.shape[0])
    if B == 0 or W == 0 or src.size % (B * W):
        raise KernelError(f"{kernel}: src {src.shape} must hold [{B}, T, {W}] for cache "
                          f"{cache.shape}")
    _rows(kernel, "slot", slot, B)
    _rows(kernel, "pos", pos, B)
    _count(kernel, B)
    return B, src.size // (B * W), W, S, L


def _kv_range(kernel: str, src, cache, slot, pos) -> None:
    B, T, W, S, L = check_kv_store(kernel, src, cache, slot, pos)
    check_in_range(kernel, slot, pos, S, L, T)


_KV = dict(src=(2, 1, 16), cache=(3, 5, 2, 8), slot=((2,), 0, 3), pos=((2,), 0, 5))


@kernel(FAMILY, "src cache:inout slot:i32 pos:i32", check=check_kv_store, dims="B T W S L",
        replay=True, c="qr_kv_store_rows_f32(src, cache, slot, pos, B, T, W, S, L)",
        on_error=_on_error(_kv_range), tol=(0.0, 0.0),
        examples=[_KV, dict(src=(3, 2, 6), cache=(4, 7, 6), slot=lambda rng: np.array(
            [3, 0, 3], np.int32), pos=((3,), 0, 6))],
        bad=[(r"slot\[0\]=3 outside \[0, 3\)", dict(slot=lambda rng: np.array([3, 0], np.int32))),
             (r"pos\[1\]=5 with 1 position\(s\) is outside \[0, 5\)",
              dict(pos=lambda rng: np.array([0, 5], np.int32)))])
def kv_store_rows(self, src: Tensor, cache: Tensor, slot: Tensor, pos: Tensor) -> None:
    """cache[slot[b], pos[b] + t] = src[b, t] for src [B, T, W...] and cache [S, L, W...]:
    each row's new keys (or values) at its own position of its own cache slot."""
    B, T, W, S, L = check_kv_store("kv_store_rows", src, cache, slot, pos)
    check_in_range("kv_store_rows", slot, pos, S, L, T)
    C, X = cache.w.reshape(S, L, W), src.a.reshape(B, T, W)
    for b, (s, p) in enumerate(zip(slot.a.reshape(-1).tolist(), pos.a.reshape(-1).tolist())):
        C[s, p:p + T] = X[b]


# ----------------------------------------------------------------------------- attention
def check_decode_rows(kernel: str, q: Tensor, k_cache: Tensor, v_cache: Tensor, out: Tensor,
                      slot: Tensor, pos: Tensor, scale, n_heads, n_kv_heads) -> tuple:
    """(B, H, Hkv, D, S, L, scale in effect) of q, out [B, H, D] over caches [S, L, Hkv, D]."""
    H, Hkv = operator.index(n_heads), operator.index(n_kv_heads)
    if H <= 0 or Hkv <= 0 or H % Hkv:
        raise KernelError(f"{kernel}: n_heads={n_heads} must be a positive multiple of "
                          f"n_kv_heads={n_kv_heads}")
    D = q.cols
    if len(q.shape) < 2 or D == 0 or q.size % (H * D):
        raise KernelError(f"{kernel}: q {q.shape} must be [B, {H}, D]")
    B = q.size // (H * D)
    if len(k_cache.shape) != 4 or tuple(k_cache.shape[2:]) != (Hkv, D):
        raise KernelError(f"{kernel}: k_cache {k_cache.shape} must be [S, L, {Hkv}, {D}]")
    if tuple(v_cache.shape) != tuple(k_cache.shape) or out.size != q.size:
        raise KernelError(f"{kernel}: v_cache {v_cache.shape} like k_cache {k_cache.shape}, "
                          f"out {out.shape} like q {q.shape}")
    _rows(kernel, "slot", slot, B)
    _rows(kernel, "pos", pos, B)
    _count(kernel, B)
    S, L = int(k_cache.shape[0]), int(k_cache.shape[1])
    return B, H, Hkv, D, S, L, _scale(scale, D)


def _att_range(kernel: str, q, k_cache, v_cache, out, slot, pos, scale, n_heads,
               n_kv_heads) -> None:
    B, H, Hkv, D, S, L, _ = check_decode_rows(kernel, q, k_cache, v_cache, out, slot, pos,
                                              scale, n_heads, n_kv_heads)
    check_in_range(kernel, slot, pos, S, L, 1)


_ATT = dict(q=(3, 4, 8), k_cache=(4, 70, 2, 8), v_cache=(4, 70, 2, 8), out=(3, 4, 8),
            slot=lambda rng: np.array([2, 0, 3], np.int32),
            pos=lambda rng: np.array([69, 0, 5], np.int32), n_heads=4, n_kv_heads=2)


@kernel(FAMILY, "q k_cache v_cache out:out slot:i32 pos:i32", check=check_decode_rows,
        dims="B H Hkv D S L sc", replay=True, tol=(1e-4, 2e-5), on_error=_on_error(_att_range),
        c="qr_attention_decode_rows_f32(q, k_cache, v_cache, out, slot, pos, B, H, Hkv, D, S, "
          "L, sc:f32)",
        examples=[_ATT, {**_ATT, "q": (2, 4, 8), "out": (2, 4, 8), "scale": 0.2,
                         "slot": ((2,), 0, 4), "pos": ((2,), 0, 70)}],
        bad=[(r"pos\[2\]=70 with 1 position\(s\) is outside \[0, 70\)",
              dict(pos=lambda rng: np.array([1, 2, 70], np.int32))),
             (r"slot\[1\]=-1 outside \[0, 4\)",
              dict(slot=lambda rng: np.array([0, -1, 1], np.int32)))])
def attention_decode_rows(self, q: Tensor, k_cache: Tensor, v_cache: Tensor, out: Tensor,
                          slot: Tensor, pos: Tensor, scale: float | None = None,
                          n_heads: int = 1, n_kv_heads: int = 1) -> None:
    """One new token a row: q, out [B, H, D]; row b attends to positions [0, pos[b]] of cache
    slot slot[b] of k_cache, v_cache [S, L, Hkv, D] (its own k/v already stored at pos[b]),
    exactly as ``attention_decode`` of that slot with n_ctx = pos[b] + 1 computes it."""
    B, H, Hkv, D, S, L, _ = check_decode_rows("attention_decode_rows", q, k_cache, v_cache,
                                              out, slot, pos, scale, n_heads, n_kv_heads)
    check_in_range("attention_decode_rows", slot, pos, S, L, 1)
    Q, O = q.a.reshape(B, H, D), out.w.reshape(B, H, D)
    K, V = k_cache.a, v_cache.a
    for b, (s, p) in enumerate(zip(slot.a.reshape(-1).tolist(), pos.a.reshape(-1).tolist())):
        attention_decode.numpy(self, Tensor(Q[b:b + 1]), Tensor(K[s:s + 1]), Tensor(V[s:s + 1]),
                               Tensor(O[b:b + 1]), p + 1, scale, H, Hkv)


# ----------------------------------------------------------------------------- products
_NO_WEIGHT = (None, None, 0)   # an unused weight of qr_linears_rows_f32


@kernel(QUANT, "x w:qweight y:out", check=check_mm, dims="m n k", replay=True,
        c="qr_linears_rows_f32(x, m, k, w.code:int, w, y, n, 0:ptr, 0:ptr, 0:i64, 0:ptr, "
          "0:ptr, 0:i64)", tol=(1e-5, 1e-5),
        examples=[dict(x=(3, _k(t, 64)), w=(t, 9, _k(t, 64)), y=(3, 9)) for t in _QT]
        + [dict(x=(1, _k(t, 64)), w=(t, 5, _k(t, 64)), y=(1, 5)) for t in _QT[:2]]
        + [dict(x=(11, 96), w=(t, 21, 96), y=(11, 21)) for t in ("q8_0", "q4_0", "q4_1")],
        bad=[("matmul_rows: x .* expected x", dict(x=(2, 96)))])
def matmul_rows(self, x: Tensor, w, y: Tensor) -> None:
    """y [M, N] = x [M, K] @ W^T for a quantized W [N, K], each row exactly as ``matmul_q``
    computes it for that row alone (8-bit activations: a decode step's arithmetic), the
    weight read once for all M rows: the products of a batched decode step."""
    M, N, K = check_mm("matmul_rows", x, w, y)
    X, Y = x.a.reshape(M, K), y.w.reshape(M, N)
    for m in range(M):
        self.matmul_q(Tensor(X[m:m + 1]), w, Tensor(Y[m:m + 1]))


def check_linears_rows(kernel: str, x: Tensor, ws: Sequence, ys: Sequence[Tensor]) -> None:
    """One output per weight, each a QWeight product of x's rows (``matmul_rows``'s shapes)."""
    check_weight_list(kernel, x, ws, ys, check_mm)


@kernel(QUANT, "x ws:qweight* ys:out*", check=check_linears_rows, replay=True,
        tol=(1e-5, 1e-5),
        c="qr_linears_rows_f32(x, m:i64, k:i64, t:int, w0:ptr, y0:ptr, n0:i64, w1:ptr, y1:ptr, "
          "n1:i64, w2:ptr, y2:ptr, n2:i64)",
        examples=[dict(x=(3, 64), ws=[("q4_1", 5, 64), ("q4_1", 3, 64), ("q4_1", 4, 64)],
                       ys=[(3, 5), (3, 3), (3, 4)]),
                  dict(x=(5, 256), ws=[("q8_0", 7, 256), ("q6_k", 3, 256), ("q6_k", 2, 256),
                                       ("q4_0", 9, 256)], ys=[(5, 7), (5, 3), (5, 2), (5, 9)])],
        bad=[("linears_rows: 2 weights but 1 outputs",
              dict(ws=[("q8_0", 5, 64), ("q8_0", 3, 64)], ys=[(3, 5)]))])
def linears_rows(self, x: Tensor, ws: Sequence, ys: Sequence[Tensor]) -> None:
    """``matmul_rows(x, ws[i], ys[i])`` for each quantized weight: the projections of one
    input in a batched decode step (q/k/v, gate/up), each row exactly as ``matmul_q`` gives it
    alone. The C set quantizes x once and runs the weights of one format (up to three in a
    row) in one call, one parallel region over all their rows; the results are the same."""
    check_linears_rows("linears_rows", x, ws, ys)
    for y in ys:          # every output writeable before the first is written
        y.w  # noqa: B018
    for w, y in zip(ws, ys):
        self.matmul_rows(x, w, y)


@linears_rows.c_method
def linears_rows(self, x: Tensor, ws: Sequence, ys: Sequence[Tensor]) -> None:  # noqa: F811
    """The C set's: each run of weights of one format (three at most) one C call."""
    check_linears_rows("linears_rows", x, ws, ys)
    outs = [y.wp for y in ys]        # every output writeable before the first is written
    i, M, K = 0, x.rows, x.cols
    while i < len(ws):               # consecutive weights of one format, three at most a call
        j = i + 1
        while j < len(ws) and j - i < 3 and ws[j].code == ws[i].code:
            j += 1
        args = []
        for w, y in zip(ws[i:j], outs[i:j]):
            args += (w.p, y, w.n)
        rc = self._qr_linears_rows_f32(x.p, M, K, ws[i].code, *args,
                                       *_NO_WEIGHT * (3 - (j - i)))
        if rc:
            raise KernelError(f"linears_rows: C kernel returned {rc}")
        i = j
