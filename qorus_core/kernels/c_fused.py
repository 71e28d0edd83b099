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

_ERR = {-1: "invalid argument", -3: "out of memory"}


def _rc(kernel: str, rc: int) -> None:
    if rc:
        raise KernelError(f"{kernel}: C kernel returned {rc} ({_ERR.get(rc, 'error')})")


def _f32(*ts: Tensor | None) -> bool:
    return all(t is None or t.dtype == "f32" for t in ts)


def _same(kernel: str, *ts: Tensor) -> None:
    if any(t.size != ts[0].size for t in ts):
        raise KernelError(f"{kernel}: " + ", ".join(str(t.shape) for t in ts)
                          + " must have the same size")


def _bcast(kernel: str, x: Tensor, b: Tensor, *like: Tensor) -> None:
    if b.size != x.cols or any(t.size != x.size for t in like):
        raise KernelError(f"{kernel}: x {x.shape}, {b.shape} must be the last dimension "
                          f"({x.cols}); " + ", ".join(str(t.shape) for t in like) + " like x")


class CFusedKernels:
    """Fused kernels of the C set (mixed into ``CKernels``; needs ``self.fallback`` and
    ``self._lib``). The C functions are bound on first use: a library built before fused.c
    still serves everything else, and these kernels then run on the NumPy fallback."""

    def _fused_fns(self) -> dict:
        fns = self.__dict__.get("_fused_bound")
        if fns is None:
            fns = {}
            for cname, (restype, argtypes) in FUSED_SIGNATURES.items():
                fn = getattr(self._lib, cname, None)
                if fn is not None:
                    fn.restype, fn.argtypes = restype, argtypes
                    fns[cname[3:-4]] = fn
            self.__dict__["_fused_bound"] = fns
        return fns

    def _fused_native(self) -> frozenset:
        """The fused kernels this library serves natively."""
        return frozenset(self._fused_fns())


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
        if not _f32(x, y) or "rope" not in self._fused_fns():
            return self.fallback.rope(x, y, pos_offset, theta, half_split)
        self._rope_call(self._fused_fns()["rope"], "rope", x, y, pos_offset, theta, half_split)

    def rope_bwd(self, dy: Tensor, dx: Tensor, pos_offset: int = 0, theta: float = 10000.0,
                 half_split: bool = False) -> None:
        if not _f32(dy, dx) or "rope_bwd" not in self._fused_fns():
            return self.fallback.rope_bwd(dy, dx, pos_offset, theta, half_split)
        self._rope_call(self._fused_fns()["rope_bwd"], "rope_bwd", dy, dx, pos_offset, theta, half_split)

    # ----------------------------------------------------------------- swiglu
    def swiglu(self, gate: Tensor, up: Tensor, y: Tensor) -> None:
        if not _f32(gate, up, y) or "swiglu" not in self._fused_fns():
            return self.fallback.swiglu(gate, up, y)
        _same("swiglu", gate, up, y)
        _rc("swiglu", self._fused_fns()["swiglu"](gate.p, up.p, y.p, y.size))

    def swiglu_bwd(self, gate: Tensor, up: Tensor, dy: Tensor, dgate: Tensor,
                   dup: Tensor) -> None:
        if not _f32(gate, up, dy, dgate, dup) or "swiglu_bwd" not in self._fused_fns():
            return self.fallback.swiglu_bwd(gate, up, dy, dgate, dup)
        _same("swiglu_bwd", gate, up, dy, dgate, dup)
        _rc("swiglu_bwd", self._fused_fns()["swiglu_bwd"](gate.p, up.p, dy.p, dgate.p, dup.p, dy.size))

    # ----------------------------------------------------------------- broadcast add / mul
    def add_bcast(self, x: Tensor, b: Tensor, y: Tensor) -> None:
        if not _f32(x, b, y) or "add_bcast" not in self._fused_fns():
            return self.fallback.add_bcast(x, b, y)
        _bcast("add_bcast", x, b, y)
        _rc("add_bcast", self._fused_fns()["add_bcast"](x.p, b.p, y.p, x.rows, x.cols))

    def add_bcast_bwd(self, dy: Tensor, dx: Tensor | None, db: Tensor) -> None:
        if not _f32(dy, dx, db) or "add_bcast_bwd" not in self._fused_fns():
            return self.fallback.add_bcast_bwd(dy, dx, db)
        _bcast("add_bcast_bwd", dy, db, *([] if dx is None else [dx]))
        _rc("add_bcast_bwd", self._fused_fns()["add_bcast_bwd"](dy.p, None if dx is None else dx.p, db.p,
                                                     dy.rows, dy.cols))

    def mul_bcast(self, x: Tensor, w: Tensor, y: Tensor) -> None:
        if not _f32(x, w, y) or "mul_bcast" not in self._fused_fns():
            return self.fallback.mul_bcast(x, w, y)
        _bcast("mul_bcast", x, w, y)
        _rc("mul_bcast", self._fused_fns()["mul_bcast"](x.p, w.p, y.p, x.rows, x.cols))

    def mul_bcast_bwd(self, x: Tensor, w: Tensor, dy: Tensor, dx: Tensor | None,
                      dw: Tensor) -> None:
        if not _f32(x, w, dy, dx, dw) or "mul_bcast_bwd" not in self._fused_fns():
            return self.fallback.mul_bcast_bwd(x, w, dy, dx, dw)
        _bcast("mul_bcast_bwd", x, w, dy, *([] if dx is None else [dx]))
        if dw.size != w.size:
            raise KernelError(f"mul_bcast_bwd: dw {dw.shape} must be like w {w.shape}")
        _rc("mul_bcast_bwd", self._fused_fns()["mul_bcast_bwd"](x.p, w.p, dy.p, None if dx is None
                                                     else dx.p, dw.p, x.rows, x.cols))

    # ----------------------------------------------------------------- masked softmax
    def softmax_masked(self, x: Tensor, y: Tensor, scale: float = 1.0,
                       causal: bool = False) -> None:
        if not _f32(x, y) or "softmax_masked" not in self._fused_fns():
            return self.fallback.softmax_masked(x, y, scale, causal)
        G, Tq, Tk = masked_dims("softmax_masked", x, causal)
        if y.size != x.size or y.cols != Tk:
            raise KernelError(f"softmax_masked: x {x.shape}, y {y.shape} must match")
        _rc("softmax_masked", self._fused_fns()["softmax_masked"](x.p, y.p, G, Tq, Tk, float(scale),
                                                       1 if causal else 0))

    def softmax_masked_bwd(self, y: Tensor, dy: Tensor, dx: Tensor, scale: float = 1.0,
                           causal: bool = False) -> None:
        if not _f32(y, dy, dx) or "softmax_masked_bwd" not in self._fused_fns():
            return self.fallback.softmax_masked_bwd(y, dy, dx, scale, causal)
        G, Tq, Tk = masked_dims("softmax_masked_bwd", y, causal)
        if not (y.size == dy.size == dx.size and y.cols == dy.cols == dx.cols):
            raise KernelError(f"softmax_masked_bwd: y {y.shape}, dy {dy.shape}, dx {dx.shape} "
                              "must match")
        _rc("softmax_masked_bwd", self._fused_fns()["softmax_masked_bwd"](
            y.p, dy.p, dx.p, G, Tq, Tk, float(scale), 1 if causal else 0))

    # ----------------------------------------------------------------- attention
    def attention(self, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
                  scale: float | None = None, n_heads: int = 1, n_kv_heads: int = 1,
                  causal: bool = True) -> None:
        if not _f32(q, k, v, out, lse) or "attention" not in self._fused_fns():
            return self.fallback.attention(q, k, v, out, lse, scale, n_heads, n_kv_heads, causal)
        B, Tq, Tk, H, Hkv, D = check_attention("attention", q, k, v, out, lse, n_heads,
                                               n_kv_heads, causal)
        _rc("attention", self._fused_fns()["attention"](q.p, k.p, v.p, out.p, lse.p, B, Tq, Tk, H, Hkv, D,
                                             _scale(scale, D), 1 if causal else 0))

    def attention_bwd(self, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
                      dout: Tensor, dq: Tensor, dk: Tensor, dv: Tensor,
                      scale: float | None = None, n_heads: int = 1, n_kv_heads: int = 1,
                      causal: bool = True) -> None:
        if not _f32(q, k, v, out, lse, dout, dq, dk, dv) or "attention_bwd" not in self._fused_fns():
            return self.fallback.attention_bwd(q, k, v, out, lse, dout, dq, dk, dv, scale,
                                               n_heads, n_kv_heads, causal)
        B, Tq, Tk, H, Hkv, D = check_attention("attention_bwd", q, k, v, out, lse, n_heads,
                                               n_kv_heads, causal, (dout, dq, dk, dv))
        _rc("attention_bwd", self._fused_fns()["attention_bwd"](
            q.p, k.p, v.p, out.p, lse.p, dout.p, dq.p, dk.p, dv.p, B, Tq, Tk, H, Hkv, D,
            _scale(scale, D), 1 if causal else 0))

    def attention_decode(self, q: Tensor, k_cache: Tensor, v_cache: Tensor, out: Tensor,
                         n_ctx: int, scale: float | None = None, n_heads: int = 1,
                         n_kv_heads: int = 1) -> None:
        if not _f32(q, k_cache, v_cache, out) or "attention_decode" not in self._fused_fns():
            return self.fallback.attention_decode(q, k_cache, v_cache, out, n_ctx, scale,
                                                  n_heads, n_kv_heads)
        B, H, Hkv, D, mc = decode_dims("attention_decode", q, k_cache, n_ctx, n_heads,
                                       n_kv_heads)
        if v_cache.size != k_cache.size or out.size != q.size:
            raise KernelError(f"attention_decode: v_cache {v_cache.shape} like k_cache "
                              f"{k_cache.shape}, out {out.shape} like q {q.shape}")
        _rc("attention_decode", self._fused_fns()["attention_decode"](
            q.p, k_cache.p, v_cache.p, out.p, B, H, Hkv, D, mc, int(n_ctx), _scale(scale, D)))


for _name in (n[3:-4] for n in FUSED_SIGNATURES):   # the reference's docs
    getattr(CFusedKernels, _name).__doc__ = getattr(NumpyFusedKernels, _name).__doc__
