"""Elementwise kernels over flat buffers: fill, copies, add, mul, scale, axpy, sumsq and dropout
masks (csrc/act.c, SIMD family vec), and the primitives sub, div, maximum, minimum, where, exp,
log, sqrt, abs, neg with their backwards (csrc/elementwise.c, SIMD family elementwise).
Operands of one call have the same size; out may alias an input.
"""

from __future__ import annotations

import math
import operator
from functools import partial

import numpy as np

from ...errors import KernelError
from ...tensor import Tensor
from .spec import EXACT, kernel, same_size

FAMILY = "elementwise"
_AB = [dict(a=(7, 33), b=(7, 33), out=(7, 33))]


@kernel(FAMILY, "x:out:free", check=same_size, c="qr_fill_f32(x, n, value:f32)", tol=EXACT,
        examples=[dict(x=(7, 33), value=1.5)])
def fill(self, x: Tensor, value: float) -> None:
    """x[:] = value."""
    x.w.fill(value)


# a partial overlap runs in NumPy (np.copyto buffers it); int32 copies run in C too
_COPY_WHEN = ("src.dtype == dst.dtype and (src.p == dst.p or src.p >= dst.p + 4 * dst.size "
              "or dst.p >= src.p + 4 * src.size)")


@kernel(FAMILY, "src:any dst:out:any", check=same_size, c="qr_copy_f32(src, dst, n)",
        c_when=_COPY_WHEN, replay=True, tol=EXACT, examples=[dict(src=(7, 33), dst=(33, 7))])
def copy(self, src: Tensor, dst: Tensor) -> None:
    """dst[:] = src (same size)."""
    np.copyto(dst.w, src.a.reshape(dst.shape))


def check_copy_into(kernel: str, src: Tensor, dst: Tensor, offset: int) -> int:
    """The element count of a copy_into, or KernelError (dtypes, window, overlap)."""
    n = src.size
    if src.dtype != dst.dtype or not 0 <= offset <= dst.size - n:
        raise KernelError(f"{kernel}: src {src.shape} {src.dtype} at element {offset} does not "
                          f"fit dst {dst.shape} {dst.dtype}")
    if src.p < dst.p + dst.a.nbytes and dst.p < src.p + src.a.nbytes:
        raise KernelError(f"{kernel}: src {src.shape} and dst {dst.shape} overlap")
    return n


@kernel(FAMILY, "src:any dst:out:any:free", check=check_copy_into, dims="n",
        c="qr_copy_f32(src, dst.wp + 4 * offset:ptr, n)", replay=True, tol=EXACT,
        examples=[dict(src=(3, 8), dst=(5, 8), offset=16)],
        bad=[(r"copy_into: src \(3, 8\) f32 at element 60 does not fit", dict(offset=60)),
             ("does not fit", dict(offset=-1))])
def copy_into(self, src: Tensor, dst: Tensor, offset: int) -> None:
    """dst's elements [offset, offset + src.size) = src (flat; a row window of a buffer,
    e.g. the KV-cache rows of new positions). src and dst must not overlap."""
    dst.w.reshape(-1)[offset:offset + src.size] = src.a.reshape(-1)


@kernel(FAMILY, "a b out:out", check=same_size, c="qr_add_f32(a, b, out, n)", replay=True,
        tol=EXACT, examples=_AB)
def add(self, a: Tensor, b: Tensor, out: Tensor) -> None:
    """out = a + b (same size; out may alias a or b)."""
    np.add(a.a.reshape(out.shape), b.a.reshape(out.shape), out=out.w)


@kernel(FAMILY, "a b out:out", check=same_size, c="qr_mul_f32(a, b, out, n)", replay=True,
        tol=EXACT, examples=_AB)
def mul(self, a: Tensor, b: Tensor, out: Tensor) -> None:
    """out = a * b (same size; out may alias a or b)."""
    np.multiply(a.a.reshape(out.shape), b.a.reshape(out.shape), out=out.w)


@kernel(FAMILY, "x:inout:free", check=same_size, c="qr_scale_f32(x, n, alpha:f32)", tol=EXACT,
        examples=[dict(x=(7, 33), alpha=-0.7)])
def scale(self, x: Tensor, alpha: float) -> None:
    """x *= alpha, in place."""
    X = x.w
    np.multiply(X, np.float32(alpha), out=X)


@kernel(FAMILY, "x y:inout", check=same_size, c="qr_axpy_f32(alpha:f32, x, y, n)", tol=EXACT,
        examples=[dict(alpha=0.3, x=(7, 33), y=(7, 33))])
def axpy(self, alpha: float, x: Tensor, y: Tensor) -> None:
    """y += alpha * x."""
    Y = y.w
    tmp = self.scratch("axpy", y.shape)
    np.multiply(x.a.reshape(y.shape), np.float32(alpha), out=tmp)
    np.add(Y, tmp, out=Y)


@kernel(FAMILY, "x:free", check=same_size, c="qr_sumsq_f32(x, n) -> f64", tol=(1e-5, 1e-6),
        examples=[dict(x=(37, 129))])
def sumsq(self, x: Tensor) -> float:
    """sum(x**2): the global gradient norm is the square root of this."""
    flat = x.a.reshape(-1)
    return float(np.dot(flat, flat))


# ----------------------------------------------------------------------------- randomness
def check_dropout(kernel: str, mask: Tensor, p: float, seed: int) -> tuple[int, int, float, int]:
    """(n, threshold, scale, seed32): keep an element when its 24-bit uniform >= threshold =
    ceil(p 2^24), kept values 1 / (1 - p) (0 when p = 1)."""
    if not 0.0 <= p <= 1.0:
        raise KernelError(f"{kernel}: p={p} is outside [0, 1]")
    threshold = min(int(math.ceil(p * (1 << 24))), 1 << 24)
    return mask.size, threshold, 1.0 / (1.0 - p) if p < 1.0 else 0.0, operator.index(seed) & 0xFFFFFFFF


@kernel(FAMILY, "mask:out:free", check=check_dropout, dims="n threshold keep seed32",
        c="qr_dropout_mask_f32(mask, n, threshold:u32, keep:f32, seed32:u32)", tol=EXACT,
        examples=[dict(mask=(7, 33), p=0.3, seed=5), dict(mask=(40,), p=1.0, seed=1)],
        bad=[(r"dropout_mask: p=1.5 is outside \[0, 1\]", dict(p=1.5)),
             ("outside", dict(p=float("nan")))])
def dropout_mask(self, mask: Tensor, p: float, seed: int) -> None:
    """mask[i] = 1/(1-p) if u(seed, i) >= p else 0, u a counter-based uniform in [0, 1).

    u comes from the lowbias32 hash of (i * 0x9E3779B1 + seed), top 24 bits: the same
    stream as the C kernel, so a run is identical on both kernel sets.
    """
    n, m = mask.size, mask.w.reshape(-1)
    _, threshold, keep, seed32 = check_dropout("dropout_mask", mask, p, seed)
    idx = self._kept(("drop_idx", n), lambda: np.arange(n, dtype=np.uint32))
    h = self.scratch("drop_h", (n,), np.uint32)
    t = self.scratch("drop_t", (n,), np.uint32)
    with np.errstate(over="ignore"):
        np.multiply(idx, np.uint32(0x9E3779B1), out=h)
        np.add(h, np.uint32(seed32), out=h)
        np.right_shift(h, np.uint32(16), out=t)
        np.bitwise_xor(h, t, out=h)
        np.multiply(h, np.uint32(0x7FEB352D), out=h)
        np.right_shift(h, np.uint32(15), out=t)
        np.bitwise_xor(h, t, out=h)
        np.multiply(h, np.uint32(0x846CA68B), out=h)
        np.right_shift(h, np.uint32(16), out=t)
        np.bitwise_xor(h, t, out=h)
    np.right_shift(h, np.uint32(8), out=h)
    np.greater_equal(h, np.uint32(threshold), out=m, casting="unsafe")
    np.multiply(m, np.float32(keep), out=m)


# ----------------------------------------------------------------------------- primitives
# csrc/elementwise.c. Forward: out may be an input. Backward: written (not accumulated); of two
# outputs either may be None (not wanted); an output may be dy (the NumPy implementations read
# every input before they write).
#: the primitives' C code is its own SIMD family (csrc/cpu.c), not vec's
primitive = partial(kernel, FAMILY, simd="elementwise")
_XY = [dict(x=(7, 33), y=(7, 33))]
_POS = ((7, 33), 0.25, 4.0)                # inputs of log / sqrt / div's divisor: positive
_AB2 = dict(a=(7, 33), b=(7, 33), dy=(7, 33), da=(7, 33), db=(7, 33))


@primitive("a b out:out", check=same_size, c="qr_sub_f32(a, b, out, n)", tol=EXACT,
        examples=_AB)
def sub(self, a: Tensor, b: Tensor, out: Tensor) -> None:
    """out = a - b (same size; out may alias a or b)."""
    np.subtract(a.a.reshape(out.shape), b.a.reshape(out.shape), out=out.w)


@primitive("dy da:out? db:out?", check=same_size, c="qr_sub_bwd_f32(dy, da, db, n)",
        tol=EXACT, examples=[dict(dy=(7, 33), da=(7, 33), db=(7, 33)),
                             dict(dy=(9,), da=None, db=(9,))])
def sub_bwd(self, dy: Tensor, da: Tensor | None, db: Tensor | None) -> None:
    """da = dy, db = -dy (either None: not wanted)."""
    g = dy.a.reshape(-1)
    DA, DB = _outs(da, db)
    if DB is not None:                  # first: da may be dy
        t = self.scratch("sub_t", g.shape)
        np.negative(g, out=t)
    if DA is not None:
        np.copyto(DA, g)
    if DB is not None:
        np.copyto(DB, t)


@primitive("a b out:out", check=same_size, c="qr_div_f32(a, b, out, n)", tol=EXACT,
        examples=[dict(a=(7, 33), b=_POS, out=(7, 33))])
def div(self, a: Tensor, b: Tensor, out: Tensor) -> None:
    """out = a / b (IEEE: x / 0 is +-inf, 0 / 0 NaN; out may alias a or b)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(a.a.reshape(out.shape), b.a.reshape(out.shape), out=out.w)


@primitive("a b dy da:out? db:out?", check=same_size,
        c="qr_div_bwd_f32(a, b, dy, da, db, n)", tol=EXACT,
        examples=[{**_AB2, "b": _POS}, {**_AB2, "b": _POS, "da": None}])
def div_bwd(self, a: Tensor, b: Tensor, dy: Tensor, da: Tensor | None, db: Tensor | None) -> None:
    """da = dy / b, db = -(dy / b * a) / b (either None: not wanted)."""
    A, B, G = a.a.reshape(-1), b.a.reshape(-1), dy.a.reshape(-1)
    _outs(da, db)                       # both writeable before anything is computed
    t = self.scratch("div_t", A.shape)
    u = self.scratch("div_u", A.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(G, B, out=t)
        np.multiply(t, A, out=u)
        np.divide(u, B, out=u)
    np.negative(u, out=u)
    DA, DB = _outs(da, db)
    if DA is not None:
        np.copyto(DA, t)
    if DB is not None:
        np.copyto(DB, u)


def _outs(*ts: Tensor | None) -> list[np.ndarray | None]:
    """The flat output views of optional outputs, all taken before any is written (a
    read-only one is refused with nothing changed)."""
    return [None if t is None else t.w.reshape(-1) for t in ts]


def _minmax_weights(self, a: Tensor, b: Tensor, wins) -> tuple[np.ndarray, np.ndarray]:
    """(wa, wb): 1 where a (b) wins by ``wins`` (np.greater / np.less), 0.5 on a tie, else 0."""
    A, B = a.a.reshape(-1), b.a.reshape(-1)
    m = self.scratch("mm_m", A.shape, np.bool_)
    wa, wb = self.scratch("mm_wa", A.shape), self.scratch("mm_wb", A.shape)
    half = self.scratch("mm_half", A.shape)
    np.equal(A, B, out=m)
    np.multiply(m, np.float32(0.5), out=half)
    wins(A, B, out=m)
    np.add(half, m, out=wa)
    wins(B, A, out=m)
    np.add(half, m, out=wb)
    return wa, wb


def _weighted(self, dy: Tensor, wa: np.ndarray, wb: np.ndarray, da: Tensor | None,
              db: Tensor | None) -> None:
    """da = dy * wa, db = dy * wb, both computed before either is written (they may be dy)."""
    G = dy.a.reshape(-1)
    DA, DB = _outs(da, db)
    ta, tb = self.scratch("mm_ta", G.shape), self.scratch("mm_tb", G.shape)
    np.multiply(G, wa, out=ta)
    np.multiply(G, wb, out=tb)
    if DA is not None:
        np.copyto(DA, ta)
    if DB is not None:
        np.copyto(DB, tb)


_TIES = dict(a=lambda rng: rng.integers(-2, 3, (7, 33)).astype(np.float32),
             b=lambda rng: rng.integers(-2, 3, (7, 33)).astype(np.float32))


@primitive("a b out:out", check=same_size, c="qr_maximum_f32(a, b, out, n)", tol=EXACT,
        examples=[*_AB, {**_AB[0], **_TIES}])
def maximum(self, a: Tensor, b: Tensor, out: Tensor) -> None:
    """out = max(a, b) as NumPy's (NaN wins; out may alias a or b)."""
    np.maximum(a.a.reshape(out.shape), b.a.reshape(out.shape), out=out.w)


@primitive("a b dy da:out? db:out?", check=same_size,
        c="qr_maximum_bwd_f32(a, b, dy, da, db, n)", tol=EXACT,
        examples=[_AB2, {**_AB2, **_TIES, "db": None}])
def maximum_bwd(self, a: Tensor, b: Tensor, dy: Tensor, da: Tensor | None,
                db: Tensor | None) -> None:
    """da = dy where a > b, db = dy where b > a; a tie gives dy / 2 to each (PyTorch's)."""
    _weighted(self, dy, *_minmax_weights(self, a, b, np.greater), da, db)


@primitive("a b out:out", check=same_size, c="qr_minimum_f32(a, b, out, n)", tol=EXACT,
        examples=[*_AB, {**_AB[0], **_TIES}])
def minimum(self, a: Tensor, b: Tensor, out: Tensor) -> None:
    """out = min(a, b) as NumPy's (NaN wins; out may alias a or b)."""
    np.minimum(a.a.reshape(out.shape), b.a.reshape(out.shape), out=out.w)


@primitive("a b dy da:out? db:out?", check=same_size,
        c="qr_minimum_bwd_f32(a, b, dy, da, db, n)", tol=EXACT,
        examples=[_AB2, {**_AB2, **_TIES, "da": None}])
def minimum_bwd(self, a: Tensor, b: Tensor, dy: Tensor, da: Tensor | None,
                db: Tensor | None) -> None:
    """da = dy where a < b, db = dy where b < a; a tie gives dy / 2 to each (PyTorch's)."""
    _weighted(self, dy, *_minmax_weights(self, a, b, np.less), da, db)


_COND = lambda rng: (rng.random((7, 33)) < 0.5).astype(np.float32)  # noqa: E731


@primitive("cond a b out:out", check=same_size, c="qr_where_f32(cond, a, b, out, n)",
        tol=EXACT, examples=[dict(cond=_COND, a=(7, 33), b=(7, 33), out=(7, 33))])
def where(self, cond: Tensor, a: Tensor, b: Tensor, out: Tensor) -> None:
    """out = a where cond != 0 (NaN counts as nonzero), else b; cond a float32 mask; out may
    alias a or b."""
    m = self.scratch("where_m", (cond.size,), np.bool_)
    n = self.scratch("where_n", (cond.size,), np.bool_)
    np.not_equal(cond.a.reshape(-1), np.float32(0), out=m)
    np.logical_not(m, out=n)
    O = out.w.reshape(-1)
    np.copyto(O, b.a.reshape(-1), where=n)   # where out is a: its cond lanes stay a
    np.copyto(O, a.a.reshape(-1), where=m)


@primitive("cond dy da:out? db:out?", check=same_size,
        c="qr_where_bwd_f32(cond, dy, da, db, n)", tol=EXACT,
        examples=[dict(cond=_COND, dy=(7, 33), da=(7, 33), db=(7, 33)),
                  dict(cond=_COND, dy=(7, 33), da=None, db=(7, 33))])
def where_bwd(self, cond: Tensor, dy: Tensor, da: Tensor | None, db: Tensor | None) -> None:
    """da = dy where cond != 0, else 0; db = dy where cond == 0, else 0 (dy * mask: a NaN dy
    stays NaN in both)."""
    wa = self.scratch("where_wa", (cond.size,))
    wb = self.scratch("where_wb", (cond.size,))
    np.not_equal(cond.a.reshape(-1), np.float32(0), out=wa, casting="unsafe")
    np.subtract(np.float32(1.0), wa, out=wb)
    _weighted(self, dy, wa, wb, da, db)


@primitive("x y:out", check=same_size, c="qr_exp_f32(x, y, n)", tol=(2e-7, 0.0),
        examples=[dict(x=((7, 33), -20.0, 20.0), y=(7, 33))])
def exp(self, x: Tensor, y: Tensor) -> None:
    """y = exp(x) (~1 ulp; overflows to inf above ~88.7)."""
    with np.errstate(over="ignore"):
        np.exp(x.a.reshape(y.shape), out=y.w)


@primitive("y dy dx:out", check=same_size, c="qr_exp_bwd_f32(y, dy, dx, n)", tol=EXACT,
        examples=[dict(y=_POS, dy=(7, 33), dx=(7, 33))])
def exp_bwd(self, y: Tensor, dy: Tensor, dx: Tensor) -> None:
    """dx = dy * y, y = exp(x) (the forward's output)."""
    np.multiply(dy.a.reshape(dx.shape), y.a.reshape(dx.shape), out=dx.w)


@primitive("x y:out", check=same_size, c="qr_log_f32(x, y, n)", tol=(2e-7, 1e-7),
        examples=[dict(x=_POS, y=(7, 33)), dict(x=((40,), 1e-30, 1e30), y=(40,))])
def log(self, x: Tensor, y: Tensor) -> None:
    """y = log(x) (~1 ulp; log 0 = -inf, log of a negative = NaN)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        np.log(x.a.reshape(y.shape), out=y.w)


@primitive("x dy dx:out", check=same_size, c="qr_log_bwd_f32(x, dy, dx, n)", tol=EXACT,
        examples=[dict(x=_POS, dy=(7, 33), dx=(7, 33))])
def log_bwd(self, x: Tensor, dy: Tensor, dx: Tensor) -> None:
    """dx = dy / x."""
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(dy.a.reshape(dx.shape), x.a.reshape(dx.shape), out=dx.w)


@primitive("x y:out", check=same_size, c="qr_sqrt_f32(x, y, n)", tol=EXACT,
        examples=[dict(x=_POS, y=(7, 33))])
def sqrt(self, x: Tensor, y: Tensor) -> None:
    """y = sqrt(x), correctly rounded (NaN for x < 0)."""
    with np.errstate(invalid="ignore"):
        np.sqrt(x.a.reshape(y.shape), out=y.w)


@primitive("y dy dx:out", check=same_size, c="qr_sqrt_bwd_f32(y, dy, dx, n)", tol=EXACT,
        examples=[dict(y=_POS, dy=(7, 33), dx=(7, 33))])
def sqrt_bwd(self, y: Tensor, dy: Tensor, dx: Tensor) -> None:
    """dx = dy / (2 y), y = sqrt(x) (the forward's output)."""
    t = self.scratch("sqrt_t", dx.shape)
    Y = y.a.reshape(dx.shape)
    np.add(Y, Y, out=t)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(dy.a.reshape(dx.shape), t, out=dx.w)


@primitive("x y:out", check=same_size, c="qr_abs_f32(x, y, n)", tol=EXACT,
        examples=_XY)
def abs(self, x: Tensor, y: Tensor) -> None:
    """y = |x|."""
    np.abs(x.a.reshape(y.shape), out=y.w)


@primitive("x dy dx:out", check=same_size, c="qr_abs_bwd_f32(x, dy, dx, n)", tol=EXACT,
        examples=[dict(x=(7, 33), dy=(7, 33), dx=(7, 33))])
def abs_bwd(self, x: Tensor, dy: Tensor, dx: Tensor) -> None:
    """dx = dy * sign(x), sign(0) = 0 (PyTorch's subgradient)."""
    s = self.scratch("abs_s", dx.shape)
    np.sign(x.a.reshape(dx.shape), out=s)
    np.multiply(dy.a.reshape(dx.shape), s, out=dx.w)


@primitive("x y:out", check=same_size, c="qr_neg_f32(x, y, n)", tol=EXACT, examples=_XY)
def neg(self, x: Tensor, y: Tensor) -> None:
    """y = -x."""
    np.negative(x.a.reshape(y.shape), out=y.w)


@primitive("dy dx:out", check=same_size, c="qr_neg_bwd_f32(dy, dx, n)", tol=EXACT,
        examples=[dict(dy=(7, 33), dx=(7, 33))])
def neg_bwd(self, dy: Tensor, dx: Tensor) -> None:
    """dx = -dy."""
    np.negative(dy.a.reshape(dx.shape), out=dx.w)
