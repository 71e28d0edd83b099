"""C bindings of the fused kernels (``csrc/fused.c``): a mixin of ``CKernels``.

Same methods and signatures as ``numpy_fused.NumpyFusedKernels`` (the reference, with the
docstrings and shapes). Every argument is checked here before the C call (the shape helpers
are shared with the NumPy twins, so both raise the same ``KernelError``); a non-float32
operand goes to the NumPy fallback.
"""

from __future__ import annotations

from ctypes import c_float, c_int, c_int64, c_void_p

from ..errors import KernelError
from ..tensor import Tensor
from .numpy_fused import NumpyFusedKernels, _scale, check_attention, decode_dims, masked_dims, rope_dims

__all__ = ["CFusedKernels", "FUSED_SIGNATURES"]

_P, _I64, _I, _F = c_void_p, c_int64, c_int, c_float

FUSED_SIGNATURES = {
    "qr_rope_f32": (_I, [_P, _P, _I64, _I64, _I64, _I64, _I64, _F, _I]),
    "qr_rope_bwd_f32": (_I, [_P, _P, _I64, _I64, _I64, _I64, _I64, _F, _I]),
    "qr_swiglu_f32": (_I, [_P, _P, _P, _I64]),
    "qr_swiglu_bwd_f32": (_I, [_P, _P, _P, _P, _P, _I64]),
    "qr_add_bcast_f32": (_I, [_P, _P, _P, _I64, _I64]),
    "qr_add_bcast_bwd_f32": (_I, [_P, _P, _P, _I64, _I64]),
    "qr_mul_bcast_f32": (_I, [_P, _P, _P, _I64, _I64]),
    "qr_mul_bcast_bwd_f32": (_I, [_P, _P, _P, _P, _P, _I64, _I64]),
    "qr_softmax_masked_f32": (_I, [_P, _P, _I64, _I64, _I64, _F, _I]),
    "qr_softmax_masked_bwd_f32": (_I, [_P, _P, _P, _I64, _I64, _I64, _F, _I]),
    "qr_attention_f32": (_I, [_P] * 5 + [_I64] * 6 + [_F, _I]),
    "qr_attention_bwd_f32": (_I, [_P] * 9 + [_I64] * 6 + [_F, _I]),
    "qr_attention_decode_f32": (_I, [_P] * 4 + [_I64] * 6 + [_F]),
}

# The codes of csrc/qorus.h; these helpers serve the conv and rnn bindings too.
_ERR = {-1: "invalid argument", -2: "index out of range", -3: "out of memory"}


def _rc(kernel: str, rc: int) -> None:
    if rc:
        raise KernelError(f"{kernel}: C kernel returned {rc} ({_ERR.get(rc, 'error')})")


def _f32(*ts: Tensor | None) -> bool:
    for t in ts:   # a loop, not all(<generator>): this runs on every call
        if t is not None and t.dtype != "f32":
            return False
    return True


def _p(t: Tensor | None) -> int | None:
    return None if t is None else t.p


_same = NumpyFusedKernels._same     # the shape checks of the NumPy twins: the same messages
_bcast = NumpyFusedKernels._bcast


class CFusedKernels:
    """Fused kernels of the C set (mixed into ``CKernels``; needs ``self.fallback`` and
    ``self._fused``, the functions of ``FUSED_SIGNATURES`` the library has, by kernel name,
    bound at load). A library built before fused.c still serves everything else, and these
    kernels then run on the NumPy fallback."""

    # ----------------------------------------------------------------- rope
    def _rope_call(self, fn, kernel: str, x: Tensor, y: Tensor, pos_offset: int, theta: float,
                   half_split: bool) -> None:
        B, T, H, D = rope_dims(kernel, x, y)
        if pos_offset < 0 or not theta > 0:
            raise KernelError(f"{kernel}: pos_offset={pos_offset} must be >= 0, theta={theta} > 0")
        if x.p != y.p and x.p < y.p + 4 * y.size and y.p < x.p + 4 * x.size:
            raise KernelError(f"{kernel}: x and y overlap partially")
        _rc(kernel, fn(x.p, y.p, B, T, H, D, int(pos_offset), float(theta), 1 if half_split else 0))

    def rope(self, x: Tensor, y: Tensor, pos_offset: int = 0, theta: float = 10000.0,
             half_split: bool = False) -> None:
        fn = self._fused.get("rope")
        if fn is None or not _f32(x, y):
            return self.fallback.rope(x, y, pos_offset, theta, half_split)
        self._rope_call(fn, "rope", x, y, pos_offset, theta, half_split)

    def rope_bwd(self, dy: Tensor, dx: Tensor, pos_offset: int = 0, theta: float = 10000.0,
                 half_split: bool = False) -> None:
        fn = self._fused.get("rope_bwd")
        if fn is None or not _f32(dy, dx):
            return self.fallback.rope_bwd(dy, dx, pos_offset, theta, half_split)
        self._rope_call(fn, "rope_bwd", dy, dx, pos_offset, theta, half_split)

    # ----------------------------------------------------------------- swiglu
    def swiglu(self, gate: Tensor, up: Tensor, y: Tensor) -> None:
        fn = self._fused.get("swiglu")
        if fn is None or not _f32(gate, up, y):
            return self.fallback.swiglu(gate, up, y)
        _same("swiglu", gate, up, y)
        _rc("swiglu", fn(gate.p, up.p, y.p, y.size))

    def swiglu_bwd(self, gate: Tensor, up: Tensor, dy: Tensor, dgate: Tensor,
                   dup: Tensor) -> None:
        fn = self._fused.get("swiglu_bwd")
        if fn is None or not _f32(gate, up, dy, dgate, dup):
            return self.fallback.swiglu_bwd(gate, up, dy, dgate, dup)
        _same("swiglu_bwd", gate, up, dy, dgate, dup)
        _rc("swiglu_bwd", fn(gate.p, up.p, dy.p, dgate.p, dup.p, dy.size))

    # ----------------------------------------------------------------- broadcast add / mul
    def add_bcast(self, x: Tensor, b: Tensor, y: Tensor) -> None:
        fn = self._fused.get("add_bcast")
        if fn is None or not _f32(x, b, y):
            return self.fallback.add_bcast(x, b, y)
        _bcast("add_bcast", x, b, y)
        _rc("add_bcast", fn(x.p, b.p, y.p, x.rows, x.cols))

    def add_bcast_bwd(self, dy: Tensor, dx: Tensor | None, db: Tensor) -> None:
        fn = self._fused.get("add_bcast_bwd")
        if fn is None or not _f32(dy, dx, db):
            return self.fallback.add_bcast_bwd(dy, dx, db)
        _bcast("add_bcast_bwd", dy, db, *(() if dx is None else (dx,)))
        _rc("add_bcast_bwd", fn(dy.p, _p(dx), db.p, dy.rows, dy.cols))

    def mul_bcast(self, x: Tensor, w: Tensor, y: Tensor) -> None:
        fn = self._fused.get("mul_bcast")
        if fn is None or not _f32(x, w, y):
            return self.fallback.mul_bcast(x, w, y)
        _bcast("mul_bcast", x, w, y)
        _rc("mul_bcast", fn(x.p, w.p, y.p, x.rows, x.cols))

    def mul_bcast_bwd(self, x: Tensor, w: Tensor, dy: Tensor, dx: Tensor | None,
                      dw: Tensor) -> None:
        fn = self._fused.get("mul_bcast_bwd")
        if fn is None or not _f32(x, w, dy, dx, dw):
            return self.fallback.mul_bcast_bwd(x, w, dy, dx, dw)
        _bcast("mul_bcast_bwd", x, w, dy, *(() if dx is None else (dx,)))
        if dw.size != w.size:
            raise KernelError(f"mul_bcast_bwd: dw {dw.shape} must be like w {w.shape}")
        _rc("mul_bcast_bwd", fn(x.p, w.p, dy.p, _p(dx), dw.p, x.rows, x.cols))

    # ----------------------------------------------------------------- masked softmax
    def softmax_masked(self, x: Tensor, y: Tensor, scale: float = 1.0,
                       causal: bool = False) -> None:
        fn = self._fused.get("softmax_masked")
        if fn is None or not _f32(x, y):
            return self.fallback.softmax_masked(x, y, scale, causal)
        G, Tq, Tk = masked_dims("softmax_masked", x, causal)
        if y.size != x.size or y.cols != Tk:
            raise KernelError(f"softmax_masked: x {x.shape}, y {y.shape} must match")
        _rc("softmax_masked", fn(x.p, y.p, G, Tq, Tk, float(scale), 1 if causal else 0))

    def softmax_masked_bwd(self, y: Tensor, dy: Tensor, dx: Tensor, scale: float = 1.0,
                           causal: bool = False) -> None:
        fn = self._fused.get("softmax_masked_bwd")
        if fn is None or not _f32(y, dy, dx):
            return self.fallback.softmax_masked_bwd(y, dy, dx, scale, causal)
        G, Tq, Tk = masked_dims("softmax_masked_bwd", y, causal)
        if not (y.size == dy.size == dx.size and y.cols == dy.cols == dx.cols):
            raise KernelError(f"softmax_masked_bwd: y {y.shape}, dy {dy.shape}, dx {dx.shape} "
                              "must match")
        _rc("softmax_masked_bwd", fn(y.p, dy.p, dx.p, G, Tq, Tk, float(scale), 1 if causal else 0))

    # ----------------------------------------------------------------- attention
    def attention(self, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
                  scale: float | None = None, n_heads: int = 1, n_kv_heads: int = 1,
                  causal: bool = True) -> None:
        fn = self._fused.get("attention")
        if fn is None or not _f32(q, k, v, out, lse):
            return self.fallback.attention(q, k, v, out, lse, scale, n_heads, n_kv_heads, causal)
        B, Tq, Tk, H, Hkv, D = check_attention("attention", q, k, v, out, lse, n_heads,
                                               n_kv_heads, causal)
        _rc("attention", fn(q.p, k.p, v.p, out.p, lse.p, B, Tq, Tk, H, Hkv, D, _scale(scale, D),
                            1 if causal else 0))

    def attention_bwd(self, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
                      dout: Tensor, dq: Tensor, dk: Tensor, dv: Tensor,
                      scale: float | None = None, n_heads: int = 1, n_kv_heads: int = 1,
                      causal: bool = True) -> None:
        fn = self._fused.get("attention_bwd")
        if fn is None or not _f32(q, k, v, out, lse, dout, dq, dk, dv):
            return self.fallback.attention_bwd(q, k, v, out, lse, dout, dq, dk, dv, scale,
                                               n_heads, n_kv_heads, causal)
        B, Tq, Tk, H, Hkv, D = check_attention("attention_bwd", q, k, v, out, lse, n_heads,
                                               n_kv_heads, causal, (dout, dq, dk, dv))
        _rc("attention_bwd", fn(
            q.p, k.p, v.p, out.p, lse.p, dout.p, dq.p, dk.p, dv.p, B, Tq, Tk, H, Hkv, D,
            _scale(scale, D), 1 if causal else 0))

    def attention_decode(self, q: Tensor, k_cache: Tensor, v_cache: Tensor, out: Tensor,
                         n_ctx: int, scale: float | None = None, n_heads: int = 1,
                         n_kv_heads: int = 1) -> None:
        fn = self._fused.get("attention_decode")
        if fn is None or not _f32(q, k_cache, v_cache, out):
            return self.fallback.attention_decode(q, k_cache, v_cache, out, n_ctx, scale,
                                                  n_heads, n_kv_heads)
        B, H, Hkv, D, mc = decode_dims("attention_decode", q, k_cache, n_ctx, n_heads,
                                       n_kv_heads)
        if v_cache.size != k_cache.size or out.size != q.size:
            raise KernelError(f"attention_decode: v_cache {v_cache.shape} like k_cache "
                              f"{k_cache.shape}, out {out.shape} like q {q.shape}")
        _rc("attention_decode", fn(
            q.p, k_cache.p, v_cache.p, out.p, B, H, Hkv, D, mc, int(n_ctx), _scale(scale, D)))


for _name in (n[3:-4] for n in FUSED_SIGNATURES):   # the reference's docs
    getattr(CFusedKernels, _name).__doc__ = getattr(NumpyFusedKernels, _name).__doc__
