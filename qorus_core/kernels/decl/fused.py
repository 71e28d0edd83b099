"""Fused kernels (csrc/fused.c): RoPE, SwiGLU, broadcast add/mul, masked softmax, attention
and one-token decode attention, each with its backward.

The NumPy implementations favour clarity over speed: attention materializes the Tq x Tk
scores (the C kernel never does). Shapes (float32, row-major):

- RoPE: x [B, T, H, D] (or [T, H, D]), D even; row t is at position ``pos_offset + t``,
  freq_i = theta^(-2i/D); ``half_split=False`` rotates adjacent pairs (2i, 2i+1) (GGUF
  llama), ``True`` pairs (i, i + D/2) (HF). Angles in float64, cos/sin rounded to float32.
- Masked softmax: x [..., Tq, Tk]; causal masks key j > i + (Tk - Tq) (queries aligned to the
  last keys: the KV-cache convention; Tq == Tk is the usual lower triangle).
- Attention: q, out [B, Tq, H, D]; k, v [B, Tk, Hkv, D] (H a multiple of Hkv: query head h
  reads kv head h // (H // Hkv)); lse [B, H, Tq]. A tensor of rank 3 is read as
  [B, T, heads * D].
- Decode: q, out [B, H, D] (or [H, D]); per-layer caches k_cache, v_cache
  [B, max_ctx, Hkv, D] (or [max_ctx, Hkv, D]).
"""

from __future__ import annotations

import math
import operator

import numpy as np

from ...errors import KernelError
from ...tensor import Tensor
from .spec import EXACT, Fit, kernel, same_size

FAMILY = "fused"


# ----------------------------------------------------------------------------- shape helpers
def rope_dims(kernel: str, x: Tensor, y: Tensor) -> tuple[int, int, int, int]:
    """(B, T, H, D) of a RoPE operand pair, or KernelError."""
    if len(x.shape) == 4:
        B, T, H, D = x.shape
    elif len(x.shape) == 3:
        B, (T, H, D) = 1, x.shape
    else:
        raise KernelError(f"{kernel}: x {x.shape} must be [B, T, H, D] or [T, H, D]")
    if D % 2:
        raise KernelError(f"{kernel}: head dim {D} of x {x.shape} must be even")
    if y.size != x.size or y.cols != D:
        raise KernelError(f"{kernel}: x {x.shape}, y {y.shape} must have the same shape")
    return int(B), int(T), int(H), int(D)


def masked_dims(kernel: str, x: Tensor, causal: bool) -> tuple[int, int, int]:
    """(G, Tq, Tk) of scores [..., Tq, Tk]."""
    if len(x.shape) < 2:
        raise KernelError(f"{kernel}: x {x.shape} must be [..., Tq, Tk]")
    Tq, Tk = int(x.shape[-2]), int(x.shape[-1])
    if causal and Tk < Tq:
        raise KernelError(f"{kernel}: causal needs Tk >= Tq, x {x.shape}")
    G = x.size // (Tq * Tk) if Tq * Tk else 0
    return G, Tq, Tk


def attention_dims(kernel: str, q: Tensor, k: Tensor, n_heads: int, n_kv_heads: int,
                   causal: bool) -> tuple[int, int, int, int, int, int]:
    """(B, Tq, Tk, H, Hkv, D) for q [B, Tq, H, D], k [B, Tk, Hkv, D], or KernelError."""
    H, Hkv = operator.index(n_heads), operator.index(n_kv_heads)   # ints, never truncated
    if H <= 0 or Hkv <= 0 or H % Hkv:
        raise KernelError(f"{kernel}: n_heads={n_heads} must be a positive multiple of "
                          f"n_kv_heads={n_kv_heads}")
    if len(q.shape) < 3 or len(k.shape) < 3:
        raise KernelError(f"{kernel}: q {q.shape}, k {k.shape} must be [B, T, heads, D] or "
                          "[B, T, heads * D]")
    B, Tq, Tk = int(q.shape[0]), int(q.shape[1]), int(k.shape[1])
    per = q.size // (B * Tq) if B * Tq else 0
    if per % H or int(k.shape[0]) != B:
        raise KernelError(f"{kernel}: q {q.shape}, k {k.shape} do not fit {H} query heads / "
                          f"batch {B}")
    D = per // H
    if B * Tq and not D:
        raise KernelError(f"{kernel}: head dim 0, q {q.shape}")
    if k.size != B * Tk * Hkv * D:
        raise KernelError(f"{kernel}: k {k.shape} must be [{B}, Tk, {Hkv}, {D}]")
    if causal and Tk < Tq:
        raise KernelError(f"{kernel}: causal needs Tk >= Tq, q {q.shape}, k {k.shape}")
    if Tq and not Tk and B:
        raise KernelError(f"{kernel}: queries with no key, k {k.shape}")
    return B, Tq, Tk, H, Hkv, D


def check_attention(kernel: str, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
                    n_heads: int, n_kv_heads: int, causal: bool,
                    grads: tuple[Tensor, Tensor, Tensor, Tensor] | None = None
                    ) -> tuple[int, int, int, int, int, int]:
    """``attention_dims`` plus every other operand: v like k, out like q, lse [B, H, Tq], and
    for the backward ``grads = (dout, dq, dk, dv)`` like (q, q, k, k); or KernelError."""
    B, Tq, Tk, H, Hkv, D = attention_dims(kernel, q, k, n_heads, n_kv_heads, causal)
    ok = v.size == k.size and out.size == q.size and lse.size == B * H * Tq
    if grads is not None:
        dout, dq, dk, dv = grads
        ok = ok and dout.size == dq.size == q.size and dk.size == dv.size == k.size
    if not ok:
        extra = "" if grads is None else ", dout/dq like q, dk/dv like k"
        raise KernelError(f"{kernel}: v {v.shape} like k {k.shape}, out {out.shape} like q "
                          f"{q.shape}, lse {lse.shape} of {B * H * Tq}{extra}")
    return B, Tq, Tk, H, Hkv, D


def decode_dims(kernel: str, q: Tensor, k_cache: Tensor, n_ctx: int, n_heads: int,
                n_kv_heads: int) -> tuple[int, int, int, int, int]:
    """(B, H, Hkv, D, max_ctx) for q [B, H, D], caches [B, max_ctx, Hkv, D]."""
    H, Hkv = operator.index(n_heads), operator.index(n_kv_heads)
    if H <= 0 or Hkv <= 0 or H % Hkv:
        raise KernelError(f"{kernel}: n_heads={n_heads} must be a positive multiple of "
                          f"n_kv_heads={n_kv_heads}")
    D = q.cols
    if len(q.shape) < 2 or D == 0 or q.size % (H * D):
        raise KernelError(f"{kernel}: q {q.shape} must be [B, {H}, D] or [{H}, D]")
    B = q.size // (H * D)
    mc = k_cache.size // (B * Hkv * D) if B else 0
    if k_cache.size != B * mc * Hkv * D or k_cache.cols != D:
        raise KernelError(f"{kernel}: k_cache {k_cache.shape} must be [{B}, max_ctx, {Hkv}, {D}]")
    if not 1 <= operator.index(n_ctx) <= mc:
        raise KernelError(f"{kernel}: n_ctx={n_ctx} outside [1, max_ctx={mc}]")
    return B, H, Hkv, D, mc


def _scale(scale: float | None, D: int) -> float:
    return 1.0 / math.sqrt(D) if scale is None else float(scale)


# ----------------------------------------------------------------------------- rope
def check_rope(kernel: str, x: Tensor, y: Tensor, pos_offset, theta,
               half_split) -> tuple[int, int, int, int]:
    """(B, T, H, D) of a RoPE call: the shapes, the scalars, and no partial overlap."""
    dims = rope_dims(kernel, x, y)
    if operator.index(pos_offset) < 0 or not theta > 0:
        raise KernelError(f"{kernel}: pos_offset={pos_offset} must be >= 0, theta={theta} > 0")
    if x.p != y.p and x.p < y.p + 4 * y.size and y.p < x.p + 4 * x.size:
        raise KernelError(f"{kernel}: x and y overlap partially")
    return dims


def _rope(self, x: Tensor, y: Tensor, pos_offset: int, theta: float, half_split: bool,
          sign: float) -> None:
    B, T, H, D = rope_dims("rope", x, y)
    half = D // 2
    freq = float(np.float32(theta)) ** (-(np.arange(0, D, 2, dtype=np.float64) / D))
    ang = (pos_offset + np.arange(T, dtype=np.float64))[:, None] * freq[None, :]
    c = np.cos(ang).astype(np.float32)[None, :, None, :]
    s = (np.sin(ang).astype(np.float32) * np.float32(sign))[None, :, None, :]
    X, Y = x.a.reshape(B, T, H, D), y.w.reshape(B, T, H, D)
    x0, x1 = (X[..., :half], X[..., half:]) if half_split else (X[..., 0::2], X[..., 1::2])
    y0 = x0 * c - x1 * s
    y1 = x0 * s + x1 * c
    if half_split:
        Y[..., :half], Y[..., half:] = y0, y1
    else:
        Y[..., 0::2], Y[..., 1::2] = y0, y1


_ROPE = [dict(x=(2, 3, 2, 8), y=(2, 3, 2, 8), pos_offset=3),
         dict(x=(5, 3, 6), y=(5, 3, 6), pos_offset=0, theta=500.0, half_split=True)]


@kernel(FAMILY, "x y:out", check=check_rope, dims="B T H D", replay=True,
        c="qr_rope_f32(x, y, B, T, H, D, pos_offset:i64, theta:f32, half_split:bool)",
        examples=_ROPE, tol=(1e-5, 1e-6),
        bad=[("pos_offset=-1 must be >= 0", dict(pos_offset=-1)),
             ("theta=0.0 > 0", dict(theta=0.0)),
             (r"x \(2, 3, 2, 7\) must be even|head dim 7", dict(x=(2, 3, 2, 7), y=(2, 3, 2, 7)))])
def rope(self, x: Tensor, y: Tensor, pos_offset: int = 0, theta: float = 10000.0,
         half_split: bool = False) -> None:
    """Rotary embedding of x [B, T, H, D] into y (may alias x); see the module docs."""
    _rope(self, x, y, pos_offset, theta, half_split, 1.0)


@kernel(FAMILY, "dy dx:out", check=check_rope, dims="B T H D",
        c="qr_rope_bwd_f32(dy, dx, B, T, H, D, pos_offset:i64, theta:f32, half_split:bool)",
        examples=[dict(dy=e["x"], dx=e["y"], **{k: v for k, v in e.items() if k not in "xy"})
                  for e in _ROPE], tol=(1e-5, 1e-6))
def rope_bwd(self, dy: Tensor, dx: Tensor, pos_offset: int = 0, theta: float = 10000.0,
             half_split: bool = False) -> None:
    """dx = the inverse rotation of dy (dx may alias dy)."""
    _rope(self, dy, dx, pos_offset, theta, half_split, -1.0)


# ----------------------------------------------------------------------------- swiglu
@kernel(FAMILY, "gate up y:out", check=same_size, c="qr_swiglu_f32(gate, up, y, n)",
        replay=True, examples=[dict(gate=(7, 33), up=(7, 33), y=(7, 33))], tol=(1e-5, 1e-5))
def swiglu(self, gate: Tensor, up: Tensor, y: Tensor) -> None:
    """y = silu(gate) * up, silu(g) = g / (exp(-g) + 1)."""
    g, Y = gate.a.reshape(-1), y.w.reshape(-1)
    d = self.scratch("swiglu_d", g.shape)
    np.negative(g, out=d)
    with np.errstate(over="ignore"):   # exp(-g) = inf: silu = -0, like the C kernel
        np.exp(d, out=d)
    np.add(d, np.float32(1.0), out=d)
    np.divide(g, d, out=d)
    np.multiply(d, up.a.reshape(-1), out=Y)


@kernel(FAMILY, "gate up dy dgate:out dup:out", check=same_size,
        c="qr_swiglu_bwd_f32(gate, up, dy, dgate, dup, n)", tol=(1e-5, 1e-5),
        examples=[dict(gate=(7, 33), up=(7, 33), dy=(7, 33), dgate=(7, 33), dup=(7, 33))])
def swiglu_bwd(self, gate: Tensor, up: Tensor, dy: Tensor, dgate: Tensor, dup: Tensor) -> None:
    """dgate = dy * up * sg * (1 + g (1 - sg)) with sg = sigmoid(g); dup = dy * silu(g)."""
    g, DY = gate.a.reshape(-1), dy.a.reshape(-1)
    DG, DU = dgate.w.reshape(-1), dup.w.reshape(-1)
    silu, sg = self.scratch("swiglu_d", g.shape), self.scratch("swiglu_sg", g.shape)
    t, a = self.scratch("swiglu_t", g.shape), self.scratch("swiglu_a", g.shape)
    np.negative(g, out=silu)
    with np.errstate(over="ignore"):
        np.exp(silu, out=silu)
    np.add(silu, np.float32(1.0), out=silu)           # d = exp(-g) + 1
    np.divide(np.float32(1.0), silu, out=sg)
    np.divide(g, silu, out=silu)
    np.subtract(np.float32(1.0), sg, out=t)
    np.multiply(t, g, out=t)
    np.add(t, np.float32(1.0), out=t)
    np.multiply(t, sg, out=t)
    np.multiply(DY, up.a.reshape(-1), out=a)         # before dup / dgate, which may alias
    np.multiply(DY, silu, out=DU)
    np.multiply(a, t, out=DG)


# ----------------------------------------------------------------------------- broadcast
def _bcast(x: str, b: str, like: str, like_b: str = "") -> Fit:
    """The check of a broadcast kernel: (rows, n) of ``x`` [..., n], ``b`` [n], each of
    ``like`` (names) the size of x, ``like_b`` (a gradient of b) the size of b."""
    fits = {b: "{t}.size == n", like: f"{{t}}.size == {x}.size"}
    if like_b:
        fits[like_b] = f"{{t}}.size == {b}.size"
    return Fit({"rows": f"{x}.rows", "n": f"{x}.cols"}, fits,
               f"do not fit: {b} must be the last dimension of {x} ({{n}}), "
               f"{'/'.join(like.split())} like {x}" + (f", {like_b} like {b}" if like_b else ""))


_BC = dict(x=(7, 33), b=(33,), y=(7, 33))


@kernel(FAMILY, "x b y:out", check=_bcast("x", "b", "y"),
        c="qr_add_bcast_f32(x, b, y, rows, n)", replay=True, tol=EXACT,
        examples=[_BC])
def add_bcast(self, x: Tensor, b: Tensor, y: Tensor) -> None:
    """y[..., N] = x + b[N] (y may alias x)."""
    X = self._m(x)
    np.add(X, b.a.reshape(-1), out=y.w.reshape(X.shape))


@kernel(FAMILY, "dy dx:out? db:inout", check=_bcast("dy", "db", "dx"),
        c="qr_add_bcast_bwd_f32(dy, dx, db, rows, n)", tol=(1e-5, 1e-5),
        examples=[dict(dy=(7, 33), dx=(7, 33), db=(33,)), dict(dy=(40, 3), dx=None, db=(3,))])
def add_bcast_bwd(self, dy: Tensor, dx: Tensor | None, db: Tensor) -> None:
    """dx = dy (None: not written); db[N] += sum over rows of dy."""
    dbf, DX = db.w.reshape(-1), None if dx is None else dx.w
    col = self.scratch("bcast_col", dbf.shape)
    np.sum(self._m(dy), axis=0, dtype=np.float32, out=col)
    np.add(dbf, col, out=dbf)
    if DX is not None and dx.p != dy.p:
        np.copyto(DX.reshape(-1), dy.a.reshape(-1))


@kernel(FAMILY, "x w y:out", check=_bcast("x", "w", "y"),
        c="qr_mul_bcast_f32(x, w, y, rows, n)", tol=EXACT,
        examples=[dict(x=(7, 33), w=(33,), y=(7, 33))])
def mul_bcast(self, x: Tensor, w: Tensor, y: Tensor) -> None:
    """y[..., N] = x * w[N] (y may alias x)."""
    X = self._m(x)
    np.multiply(X, w.a.reshape(-1), out=y.w.reshape(X.shape))


@kernel(FAMILY, "x w dy dx:out? dw:inout", check=_bcast("x", "w", "dy dx", "dw"),
        c="qr_mul_bcast_bwd_f32(x, w, dy, dx, dw, rows, n)", tol=(1e-5, 1e-5),
        examples=[dict(x=(7, 33), w=(33,), dy=(7, 33), dx=(7, 33), dw=(33,)),
                  dict(x=(40, 3), w=(3,), dy=(40, 3), dx=None, dw=(3,))])
def mul_bcast_bwd(self, x: Tensor, w: Tensor, dy: Tensor, dx: Tensor | None, dw: Tensor) -> None:
    """dx = dy * w (None: not written; may alias dy); dw[N] += sum over rows of dy * x."""
    X, dwf = self._m(x), dw.w.reshape(-1)
    DY, DX = dy.a.reshape(X.shape), None if dx is None else dx.w.reshape(X.shape)
    prod, col = self.scratch("mul_bcast_prod", DY.shape), self.scratch("bcast_col", dwf.shape)
    np.multiply(DY, X, out=prod)
    np.sum(prod, axis=0, dtype=np.float32, out=col)
    np.add(dwf, col, out=dwf)
    if DX is not None:
        np.multiply(DY, w.a.reshape(-1), out=DX)


# ----------------------------------------------------------------------------- masked softmax
def _mask(Tq: int, Tk: int) -> np.ndarray:
    return np.arange(Tk)[None, :] > (np.arange(Tq)[:, None] + (Tk - Tq))


def check_softmax_masked(kernel: str, x: Tensor, y: Tensor, scale, causal) -> tuple[int, int, int]:
    """(G, Tq, Tk) of a masked softmax: x ``[G, Tq, Tk]`` and y alike."""
    G, Tq, Tk = masked_dims(kernel, x, causal)
    if y.size != x.size or y.cols != Tk:
        raise KernelError(f"{kernel}: x {x.shape}, y {y.shape} must match")
    return G, Tq, Tk


@kernel(FAMILY, "x y:out", check=check_softmax_masked, dims="G Tq Tk",
        c="qr_softmax_masked_f32(x, y, G, Tq, Tk, scale:f32, causal:bool)", tol=(1e-5, 1e-5),
        examples=[dict(x=(2, 3, 5), y=(2, 3, 5), scale=0.5, causal=True),
                  dict(x=(4, 9), y=(4, 9))],
        bad=[("causal needs Tk >= Tq", dict(x=(2, 5, 3), y=(2, 5, 3), causal=True))])
def softmax_masked(self, x: Tensor, y: Tensor, scale: float = 1.0, causal: bool = False) -> None:
    """y = softmax(scale * x) over the last dim of [..., Tq, Tk], causal: key j > i + Tk - Tq
    masked (probability 0)."""
    G, Tq, Tk = masked_dims("softmax_masked", x, causal)
    Y = y.w.reshape(G, Tq, Tk)
    if G * Tq * Tk == 0:
        return
    z = x.a.reshape(G, Tq, Tk) * np.float32(scale)
    if causal:
        z[:, _mask(Tq, Tk)] = -np.inf
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    np.divide(z, z.sum(axis=-1, keepdims=True), out=Y)
    if causal:
        Y[:, _mask(Tq, Tk)] = 0.0   # masked keys stay 0 even in a NaN row


def check_softmax_masked_bwd(kernel: str, y: Tensor, dy: Tensor, dx: Tensor, scale,
                             causal) -> tuple[int, int, int]:
    """(G, Tq, Tk) of a masked softmax's backward: y, dy and dx alike."""
    G, Tq, Tk = masked_dims(kernel, y, causal)
    if not (y.size == dy.size == dx.size and y.cols == dy.cols == dx.cols):
        raise KernelError(f"{kernel}: y {y.shape}, dy {dy.shape}, dx {dx.shape} must match")
    return G, Tq, Tk


def _causal_probs(rng: np.random.Generator) -> np.ndarray:
    """An example y of softmax_masked_bwd: probabilities [2, 3, 5], 0 where causal masks."""
    p = rng.uniform(0.0, 1.0, (2, 3, 5)).astype(np.float32)
    p[:, _mask(3, 5)] = 0.0
    return p / p.sum(axis=-1, keepdims=True)


@kernel(FAMILY, "y dy dx:out", check=check_softmax_masked_bwd, dims="G Tq Tk",
        c="qr_softmax_masked_bwd_f32(y, dy, dx, G, Tq, Tk, scale:f32, causal:bool)",
        tol=(1e-5, 1e-5),
        examples=[dict(y=_causal_probs, dy=(2, 3, 5), dx=(2, 3, 5), scale=0.5, causal=True),
                  dict(y=((4, 9), 0.0, 0.3), dy=(4, 9), dx=(4, 9))])
def softmax_masked_bwd(self, y: Tensor, dy: Tensor, dx: Tensor, scale: float = 1.0,
                       causal: bool = False) -> None:
    """dx = scale * y * (dy - sum(dy * y)) per row; 0 where masked."""
    G, Tq, Tk = masked_dims("softmax_masked_bwd", y, causal)
    DX = dx.w.reshape(G, Tq, Tk)
    if G * Tq * Tk == 0:
        return
    Y, DY = y.a.reshape(G, Tq, Tk), dy.a.reshape(G, Tq, Tk)
    s = (DY * Y).sum(axis=-1, keepdims=True)
    r = ((DY - s) * Y) * np.float32(scale)
    if causal:
        r[:, _mask(Tq, Tk)] = 0.0
    DX[:] = r


# ----------------------------------------------------------------------------- attention
def _heads(t: Tensor, B: int, T: int, nh: int, D: int, G: int = 1) -> np.ndarray:
    """[B, T, nh, D] -> [B, nh * G, T, D] (kv heads repeated G times for GQA)."""
    a = t.a.reshape(B, T, nh, D).transpose(0, 2, 1, 3)
    return np.repeat(a, G, axis=1) if G > 1 else a


def _scores(q, k, B, Tq, Tk, H, Hkv, D, scale, causal) -> np.ndarray:
    Q = _heads(q, B, Tq, H, D)
    K = _heads(k, B, Tk, Hkv, D, H // Hkv)
    S = np.matmul(Q, K.transpose(0, 1, 3, 2)) * np.float32(scale)
    if causal:
        S[:, :, _mask(Tq, Tk)] = -np.inf
    return S


def check_attention_call(kernel: str, q: Tensor, k: Tensor, v: Tensor, out: Tensor,
                         lse: Tensor, scale, n_heads, n_kv_heads, causal) -> tuple:
    """(B, Tq, Tk, H, Hkv, D, scale in effect) of an attention call."""
    dims = check_attention(kernel, q, k, v, out, lse, n_heads, n_kv_heads, causal)
    return (*dims, _scale(scale, dims[5]))


_ATT = dict(q=(2, 3, 4, 8), k=(2, 5, 2, 8), v=(2, 5, 2, 8), out=(2, 3, 4, 8), lse=(2, 4, 3),
            n_heads=4, n_kv_heads=2)
_ATT_BAD = [("n_heads=4 must be a positive multiple of n_kv_heads=3", dict(n_kv_heads=3)),
            ("causal needs Tk >= Tq", dict(k=(2, 2, 2, 8), v=(2, 2, 2, 8)))]


@kernel(FAMILY, "q k v out:out lse:out", check=check_attention_call,
        dims="B Tq Tk H Hkv D sc", tol=(1e-4, 2e-5),
        c="qr_attention_f32(q, k, v, out, lse, B, Tq, Tk, H, Hkv, D, sc:f32, causal:bool)",
        examples=[_ATT, {**_ATT, "causal": False, "scale": 0.2}], bad=_ATT_BAD)
def attention(self, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
              scale: float | None = None, n_heads: int = 1, n_kv_heads: int = 1,
              causal: bool = True) -> None:
    """out = softmax(scale q k^T, causal mask) v per head (GQA); lse [B, H, Tq] saved.
    scale None: 1 / sqrt(D)."""
    B, Tq, Tk, H, Hkv, D = check_attention("attention", q, k, v, out, lse, n_heads, n_kv_heads,
                                           causal)
    Out, Lse = out.w.reshape(B, Tq, H, D), lse.w.reshape(B, H, Tq)
    if B * Tq == 0:
        return
    S = _scores(q, k, B, Tq, Tk, H, Hkv, D, _scale(scale, D), causal)
    m = S.max(axis=-1, keepdims=True)
    P = np.exp(S - m)
    ls = P.sum(axis=-1, keepdims=True)
    V = _heads(v, B, Tk, Hkv, D, H // Hkv)
    O = np.matmul(P, V) / ls
    Out[:] = O.transpose(0, 2, 1, 3)
    Lse[:] = (m + np.log(ls))[..., 0]


def check_attention_bwd(kernel: str, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
                        dout: Tensor, dq: Tensor, dk: Tensor, dv: Tensor, scale, n_heads,
                        n_kv_heads, causal) -> tuple:
    """The dimensions and scale of an attention backward, or KernelError."""
    dims = check_attention(kernel, q, k, v, out, lse, n_heads, n_kv_heads, causal,
                           (dout, dq, dk, dv))
    return (*dims, _scale(scale, dims[5]))


_ATTB = {**_ATT, "lse": ((2, 4, 3), 1.0, 2.0), "dout": (2, 3, 4, 8), "dq": (2, 3, 4, 8),
         "dk": (2, 5, 2, 8), "dv": (2, 5, 2, 8)}


@kernel(FAMILY, "q k v out lse dout dq:out dk:out dv:out", check=check_attention_bwd,
        dims="B Tq Tk H Hkv D sc", tol=(1e-4, 5e-5),
        c="qr_attention_bwd_f32(q, k, v, out, lse, dout, dq, dk, dv, B, Tq, Tk, H, Hkv, D, "
          "sc:f32, causal:bool)",
        examples=[_ATTB], bad=_ATT_BAD)
def attention_bwd(self, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
                  dout: Tensor, dq: Tensor, dk: Tensor, dv: Tensor,
                  scale: float | None = None, n_heads: int = 1, n_kv_heads: int = 1,
                  causal: bool = True) -> None:
    """dq, dk, dv (written) of attention, from the saved lse; dk/dv summed over the query
    heads of each kv head."""
    B, Tq, Tk, H, Hkv, D = check_attention("attention_bwd", q, k, v, out, lse, n_heads,
                                           n_kv_heads, causal, (dout, dq, dk, dv))
    DQ, DK, DV = dq.w, dk.w, dv.w
    DK[...] = 0.0
    DV[...] = 0.0
    DQ[...] = 0.0
    if B * Tq == 0:
        return
    sc = np.float32(_scale(scale, D))
    G = H // Hkv
    S = _scores(q, k, B, Tq, Tk, H, Hkv, D, sc, causal)
    P = np.exp(S - lse.a.reshape(B, H, Tq, 1))
    dO = _heads(dout, B, Tq, H, D)
    O = _heads(out, B, Tq, H, D)
    V = _heads(v, B, Tk, Hkv, D, G)
    K = _heads(k, B, Tk, Hkv, D, G)
    Q = _heads(q, B, Tq, H, D)
    dP = np.matmul(dO, V.transpose(0, 1, 3, 2))
    Di = (dO * O).sum(axis=-1, keepdims=True)
    dS = P * (dP - Di) * sc
    DQ.reshape(B, Tq, H, D)[:] = np.matmul(dS, K).transpose(0, 2, 1, 3)
    dK = np.matmul(dS.transpose(0, 1, 3, 2), Q).reshape(B, Hkv, G, Tk, D).sum(axis=2)
    dV = np.matmul(P.transpose(0, 1, 3, 2), dO).reshape(B, Hkv, G, Tk, D).sum(axis=2)
    DK.reshape(B, Tk, Hkv, D)[:] = dK.transpose(0, 2, 1, 3)
    DV.reshape(B, Tk, Hkv, D)[:] = dV.transpose(0, 2, 1, 3)


def check_decode(kernel: str, q: Tensor, k_cache: Tensor, v_cache: Tensor, out: Tensor, n_ctx,
                 scale, n_heads, n_kv_heads) -> tuple:
    """(B, H, Hkv, D, max_ctx, scale in effect) of a decode step."""
    B, H, Hkv, D, mc = decode_dims(kernel, q, k_cache, n_ctx, n_heads, n_kv_heads)
    if v_cache.size != k_cache.size or out.size != q.size:
        raise KernelError(f"{kernel}: v_cache {v_cache.shape} like k_cache {k_cache.shape}, "
                          f"out {out.shape} like q {q.shape}")
    return B, H, Hkv, D, mc, _scale(scale, D)


@kernel(FAMILY, "q k_cache v_cache out:out", check=check_decode, dims="B H Hkv D mc sc",
        c="qr_attention_decode_f32(q, k_cache, v_cache, out, B, H, Hkv, D, mc, n_ctx:i64, "
          "sc:f32)", replay=True, tol=(1e-4, 2e-5),
        examples=[dict(q=(2, 4, 8), k_cache=(2, 6, 2, 8), v_cache=(2, 6, 2, 8), out=(2, 4, 8),
                       n_ctx=4, n_heads=4, n_kv_heads=2)],
        bad=[(r"n_ctx=7 outside \[1, max_ctx=6\]", dict(n_ctx=7)),
             ("n_ctx=0 outside", dict(n_ctx=0))])
def attention_decode(self, q: Tensor, k_cache: Tensor, v_cache: Tensor, out: Tensor,
                     n_ctx: int, scale: float | None = None, n_heads: int = 1,
                     n_kv_heads: int = 1) -> None:
    """One new token: q, out [B, H, D] attend to cache positions [0, n_ctx) of k_cache,
    v_cache [B, max_ctx, Hkv, D] (the token's own k/v already at n_ctx - 1)."""
    B, H, Hkv, D, mc = decode_dims("attention_decode", q, k_cache, n_ctx, n_heads, n_kv_heads)
    G, n, Out = H // Hkv, int(n_ctx), out.w.reshape(B, H, 1, D)
    K = np.repeat(k_cache.a.reshape(B, mc, Hkv, D)[:, :n].transpose(0, 2, 1, 3), G, axis=1)
    V = np.repeat(v_cache.a.reshape(B, mc, Hkv, D)[:, :n].transpose(0, 2, 1, 3), G, axis=1)
    Q = q.a.reshape(B, H, 1, D)
    s = np.matmul(Q, K.transpose(0, 1, 3, 2)) * np.float32(_scale(scale, D))
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    o = np.matmul(p, V) / p.sum(axis=-1, keepdims=True)
    Out[:] = o
