"""Copying and indexing kernels of the strided family (csrc/strided.c): one strided copy for
transpose / permute / concat / split / slice / expand and their backward (``accumulate``),
max and gather along an axis with their backward, and the batched GEMM. The broadcasting
kernels and the packed geometry they share are in strided.py.
"""

from __future__ import annotations

import operator
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from ...errors import KernelError
from ...tensor import Tensor
from .dense import gemm_numpy
from .spec import EXACT, c_error, kernel, sizes_error
from .strided import FAMILY, MAX_DIMS, _f32, _no_overlap, _packed


# ----------------------------------------------------------------------------- strided_copy
class CopyPlan(NamedTuple):
    """A strided copy, merged: C's dims and strides, the extents reached, NumPy's view."""

    geom: np.ndarray                    # C's: d0..d5, src strides, dst strides (elements)
    p: int                              # geom's address (geom lives as long as this plan)
    total: int                          # elements copied
    src_extent: int                     # largest src index reached, past the offset
    dst_extent: int
    shape: tuple[int, ...]              # the merged shape, and the strides in bytes
    src_bytes: tuple[int, ...]
    dst_bytes: tuple[int, ...]


@lru_cache(maxsize=4096)
def copy_plan(shape: tuple, src_strides: tuple, dst_strides: tuple) -> CopyPlan | str:
    """The merged plan of a strided copy, or the error's text. Dimensions are ordered by
    dst stride (largest outside; the result does not depend on the order, dst being
    written once per element), size-1 ones dropped, and adjacent ones contiguous for both
    merged."""
    try:
        shape, ss, ds = (tuple(operator.index(v) for v in t)
                         for t in (shape, src_strides, dst_strides))
    except TypeError:
        return "shape, src_strides and dst_strides must be tuples of integers"
    if not len(shape) == len(ss) == len(ds):
        return (f"shape {shape}, src_strides {ss} and dst_strides {ds} have different "
                "lengths")
    if min(shape + ss + ds, default=0) < 0:
        return f"shape {shape}, src_strides {ss} and dst_strides {ds} must not be negative"
    total = 1
    for d in shape:
        total *= d
    if total == 0:
        return CopyPlan(*_packed([0] + [1] * (MAX_DIMS - 1) + [0] * (2 * MAX_DIMS)), 0, 0, 0,
                        (0,), (0,), (0,))
    dims = sorted(((d, s, t) for d, s, t in zip(shape, ss, ds) if d != 1),
                  key=lambda e: -e[2])
    ext = 0
    for d, _, t in sorted(dims, key=lambda e: e[2]):    # dst written once per element
        if t <= ext:
            return f"dst_strides {ds} over shape {shape} write one element twice"
        ext += (d - 1) * t
    merged: list[list[int]] = []
    for d, s, t in dims:
        if merged and merged[-1][1] == s * d and merged[-1][2] == t * d:
            merged[-1] = [merged[-1][0] * d, s, t]
        else:
            merged.append([d, s, t])
    if not merged:
        merged = [[1, 0, 0]]
    if len(merged) > MAX_DIMS:
        return f"shape {shape} needs {len(merged)} dimensions after merging, more than {MAX_DIMS}"
    pad = [[1, 0, 0]] * (MAX_DIMS - len(merged))
    full = pad + merged
    c = [e[0] for e in full] + [e[1] for e in full] + [e[2] for e in full]
    return CopyPlan(*_packed(c), total, sum((d - 1) * s for d, s, _ in merged),
                    sum((d - 1) * t for d, _, t in merged), tuple(e[0] for e in merged),
                    tuple(4 * e[1] for e in merged), tuple(4 * e[2] for e in merged))


def _copy_plan(kernel: str, shape, src_strides, dst_strides) -> CopyPlan:
    try:
        p = copy_plan(shape, src_strides, dst_strides)
    except TypeError:                  # a list (unhashable): cached by its tuple, else uncached
        try:
            p = copy_plan(tuple(shape), tuple(src_strides), tuple(dst_strides))
        except TypeError:
            p = copy_plan.__wrapped__(shape, src_strides, dst_strides)
    if p.__class__ is str:
        raise KernelError(f"{kernel}: {p}")
    return p


def check_strided_copy(kernel: str, src: Tensor, dst: Tensor, shape, src_offset, src_strides,
                       dst_offset, dst_strides, accumulate) -> tuple[int, int, CopyPlan]:
    """(src_offset, dst_offset, the CopyPlan: d0..d5, src strides, dst strides), or
    KernelError."""
    p = _copy_plan(kernel, shape, src_strides, dst_strides)
    so, do = operator.index(src_offset), operator.index(dst_offset)
    if src.dtype != dst.dtype or (accumulate and src.dtype != "f32"):
        raise KernelError(f"{kernel}: src {src.shape} {src.dtype} and dst {dst.shape} "
                          f"{dst.dtype}: expected one dtype, f32 or i32 (f32 to accumulate)")
    if so < 0 or do < 0 or (p.total and (so + p.src_extent >= src.size
                                         or do + p.dst_extent >= dst.size)):
        raise KernelError(f"{kernel}: shape {tuple(shape)} is out of bounds: src {src.shape} "
                          f"from {so} by {tuple(src_strides)}, dst {dst.shape} from {do} by "
                          f"{tuple(dst_strides)}")
    if p.total and (src.p + 4 * so < dst.p + 4 * (do + p.dst_extent + 1)
                    and dst.p + 4 * do < src.p + 4 * (so + p.src_extent + 1)):
        raise KernelError(f"{kernel}: src {src.shape} and dst {dst.shape} overlap")
    return so, do, p


_I32 = lambda shape: lambda rng: rng.integers(-1000, 1000, shape).astype(np.int32)  # noqa: E731


@kernel(FAMILY, "src:any:free dst:out:any:free", check=check_strided_copy,
        dims="soff doff plan",
        c="qr_strided_copy_f32(src.p + 4 * soff:ptr, dst.wp + 4 * doff:ptr, plan.p:ptr, "
          "accumulate:bool)", tol=EXACT,
        examples=[dict(src=(4, 5), dst=(5, 4), shape=(5, 4), src_offset=0, src_strides=(1, 5),
                       dst_offset=0, dst_strides=(4, 1)),
                  dict(src=(3, 4), dst=(5, 4), shape=(3, 4), src_offset=0, src_strides=(4, 1),
                       dst_offset=8, dst_strides=(4, 1)),
                  dict(src=(6, 8), dst=(2, 3), shape=(2, 3), src_offset=10,
                       src_strides=(16, 2), dst_offset=0, dst_strides=(3, 1)),
                  dict(src=(1, 4), dst=(3, 4), shape=(3, 4), src_offset=0, src_strides=(0, 1),
                       dst_offset=0, dst_strides=(4, 1)),
                  dict(src=(5, 4), dst=(3, 4), shape=(3, 4), src_offset=4, src_strides=(4, 1),
                       dst_offset=0, dst_strides=(4, 1), accumulate=True),
                  dict(src=(2, 3, 4), dst=(4, 2, 3), shape=(4, 2, 3), src_offset=0,
                       src_strides=(1, 12, 4), dst_offset=0, dst_strides=(6, 3, 1)),
                  dict(src=_I32((2, 3, 4)), dst=_I32((4, 2, 3)), shape=(4, 2, 3),
                       src_offset=0, src_strides=(1, 12, 4), dst_offset=0,
                       dst_strides=(6, 3, 1)),
                  dict(src=(3, 70, 9), dst=(3, 9, 70), shape=(3, 9, 70), src_offset=0,
                       src_strides=(630, 1, 9), dst_offset=0, dst_strides=(630, 70, 1),
                       accumulate=True),
                  dict(src=(2, 3, 4, 5, 6), dst=(6, 5, 4, 3, 2), shape=(6, 5, 4, 3, 2),
                       src_offset=0, src_strides=(1, 6, 30, 120, 360), dst_offset=0,
                       dst_strides=(120, 24, 6, 2, 1))],
        bad=[(r"strided_copy: shape \(5, 4\) is out of bounds: src \(4, 5\) from 0 by "
              r"\(1, 5\), dst \(5, 4\) from 1 by", dict(dst_offset=1)),
             (r"out of bounds", dict(src_offset=-1)),
             (r"out of bounds", dict(src_strides=(1, 6))),
             (r"must not be negative", dict(src_strides=(-1, 5))),
             (r"write one element twice", dict(dst_strides=(1, 1))),
             (r"write one element twice", dict(dst_strides=(0, 1))),
             (r"different lengths", dict(dst_strides=(4, 1, 1))),
             (r"expected one dtype", dict(src=_I32((4, 5)))),
             (r"expected one dtype, f32 or i32 \(f32 to accumulate\)",
              dict(src=_I32((4, 5)), dst=_I32((5, 4)), accumulate=True)),
             (r"needs 7 dimensions after merging, more than 6",
              dict(shape=(2,) * 7, src_strides=(1, 2, 4, 8, 16, 32, 64),
                   dst_strides=(64, 32, 16, 8, 4, 2, 1)))])
def strided_copy(self, src: Tensor, dst: Tensor, shape: tuple[int, ...], src_offset: int,
                 src_strides: tuple[int, ...], dst_offset: int, dst_strides: tuple[int, ...],
                 accumulate: bool = False) -> None:
    """For every index i of ``shape``: dst.flat[dst_offset + sum(i * dst_strides)] =
    src.flat[src_offset + sum(i * src_strides)] (+= when accumulate). Strides in elements,
    >= 0 (0 on src: a broadcast); dst strides must reach each element once. src and dst of
    one dtype, f32 or i32 (f32 to accumulate), within bounds, not overlapping. Transpose,
    permute, concat, split, slice, expand, and their backward (accumulate)."""
    D = dst.w
    p = _copy_plan("strided_copy", shape, src_strides, dst_strides)
    if not p.total:
        return
    S = src.a
    sv = np.ndarray(p.shape, S.dtype, buffer=S, offset=4 * src_offset, strides=p.src_bytes)
    dv = np.ndarray(p.shape, D.dtype, buffer=D, offset=4 * dst_offset, strides=p.dst_bytes)
    if accumulate:
        np.add(dv, sv, out=dv)
    else:
        np.copyto(dv, sv)


# ----------------------------------------------------------------------------- max / gather
def bad_index(kernel: str, idx: Tensor, n: int) -> KernelError | None:
    """The error for an index outside [0, n), or None when every index is inside."""
    if not idx.size:
        return None
    lo, hi = int(idx.a.min()), int(idx.a.max())
    if lo < 0 or hi >= n:
        return KernelError(f"{kernel}: index out of range: {lo if lo < 0 else hi} is outside "
                           f"[0, {n}) (idx {idx.shape})")
    return None


def _index_error(which: int, axis_of: int):
    """on_error: the message of bad_index where C said an index is out of range (rc -2)."""
    def on_error(kernel: str, rc: int, *args) -> KernelError:
        err = bad_index(kernel, args[1], args[which].shape[axis_of]) if rc == -2 else None
        return err or c_error(kernel, rc)
    return on_error


def _three(kernel: str, **tensors) -> None:
    for name, t in tensors.items():
        if len(t.shape) != 3:
            raise KernelError(f"{kernel}: {name} {t.shape} must be 3-D (outer, n, inner)")


def check_max_axis(kernel: str, x: Tensor, out: Tensor, idx: Tensor) -> tuple[int, int, int]:
    """(outer, n, inner) of x, or KernelError."""
    _three(kernel, x=x)
    outer, n, inner = x.shape
    if out.size != outer * inner or idx.size != outer * inner:
        raise sizes_error(kernel, f"do not fit: out and idx need {outer * inner} values",
                          x=x, out=out, idx=idx)
    if x.dtype != "f32" or out.dtype != "f32" or idx.dtype != "i32":
        raise KernelError(f"{kernel}: x {x.dtype}, out {out.dtype}, idx {idx.dtype}: expected "
                          "f32, f32, i32")
    if n == 0 and out.size:
        raise KernelError(f"{kernel}: x {x.shape}: the max of nothing")
    _no_overlap(kernel, -1, {"out": out, "idx": idx}, {"x": x})
    return outer, n, inner


_MAX_NAN = lambda rng: np.where(rng.random((4, 6, 5)) < 0.1, np.nan,  # noqa: E731
                                rng.integers(-2, 3, (4, 6, 5))).astype(np.float32)


@kernel(FAMILY, "x out:out idx:out:i32", check=check_max_axis, dims="outer n inner",
        c="qr_max_axis_f32(x, out, idx, outer, n, inner)", tol=EXACT,
        examples=[dict(x=(3, 5, 4), out=(3, 4), idx=((12,), 0, 100)),
                  dict(x=_MAX_NAN, out=(4, 5), idx=((4, 5), 0, 1)),
                  dict(x=(6, 7, 1), out=(6,), idx=((6, 1), 0, 1)),
                  dict(x=(1, 9, 33), out=(33,), idx=((33,), 0, 1)),
                  dict(x=(5, 1, 3), out=(5, 3), idx=((5, 3), 3, 4))],
        bad=[(r"max_axis: x \(3, 5, 4\), out \(3, 5\), idx \(12,\) do not fit: out and idx "
              r"need 12 values", dict(out=(3, 5))),
             (r"x \(3, 20\) must be 3-D", dict(x=(3, 20)))])
def max_axis(self, x: Tensor, out: Tensor, idx: Tensor) -> None:
    """out[o, i] = max_j x[o, j, i], idx[o, i] = the first j reaching it (int32); x is
    (outer, n, inner), n >= 1; out and idx have outer * inner elements (any shape). NaN wins:
    the max is NaN and idx the first NaN's (torch.max(dim))."""
    O, I = out.w, idx.w
    outer, n, inner = x.shape
    if not O.size:
        return
    X = x.a
    t = self.scratch("max_axis", (outer, inner), np.intp)
    np.max(X, axis=1, out=O.reshape(outer, inner))
    np.argmax(X, axis=1, out=t)
    np.copyto(I.reshape(outer, inner), t, casting="unsafe")


def check_max_axis_bwd(kernel: str, dy: Tensor, idx: Tensor, dx: Tensor) -> tuple[int, int, int]:
    """(outer, n, inner) of dx, or KernelError (indices: by the kernel)."""
    _three(kernel, dx=dx)
    outer, n, inner = dx.shape
    if dy.size != outer * inner or idx.size != outer * inner:
        raise sizes_error(kernel, f"do not fit: dy and idx need {outer * inner} values",
                          dy=dy, idx=idx, dx=dx)
    if dy.dtype != "f32" or dx.dtype != "f32" or idx.dtype != "i32":
        raise KernelError(f"{kernel}: dy {dy.dtype}, idx {idx.dtype}, dx {dx.dtype}: expected "
                          "f32, i32, f32")
    _no_overlap(kernel, -1, {"dx": dx}, {"dy": dy, "idx": idx})
    return outer, n, inner


@kernel(FAMILY, "dy idx:i32 dx:out", check=check_max_axis_bwd, dims="outer n inner",
        c="qr_max_axis_bwd_f32(dy, idx, dx, outer, n, inner)", on_error=_index_error(2, 1),
        tol=EXACT,
        examples=[dict(dy=(3, 4), idx=((3, 4), 0, 5), dx=(3, 5, 4)),
                  dict(dy=(7,), idx=((7,), 0, 9), dx=(7, 9, 1)),
                  dict(dy=(40,), idx=((40,), 0, 3), dx=(1, 3, 40))],
        bad=[(r"max_axis_bwd: index out of range: 5 is outside \[0, 5\) \(idx \(3, 4\)\)",
              dict(idx=((3, 4), 5, 6))),
             (r"index out of range: -1 is outside", dict(idx=((3, 4), -1, 0)))])
def max_axis_bwd(self, dy: Tensor, idx: Tensor, dx: Tensor) -> None:
    """dx (outer, n, inner) overwritten: 0, except dx[o, idx[o, i], i] = dy[o, i] (dy and
    idx: outer * inner elements; max_axis's idx). An index outside [0, n): KernelError."""
    DX = dx.w
    outer, n, inner = dx.shape
    err = bad_index("max_axis_bwd", idx, n)
    if err:
        raise err
    f = self.scratch("max_bwd_f", (outer, inner), np.intp)
    base = self._kept(("max_bwd_base", outer, n, inner), lambda: (
        np.arange(outer, dtype=np.intp)[:, None] * (n * inner) + np.arange(inner, dtype=np.intp)))
    np.multiply(idx.a.reshape(outer, inner), inner, out=f)
    np.add(f, base, out=f)
    DX.fill(0)
    np.put(DX.reshape(-1), f.reshape(-1), dy.a.reshape(-1))


def check_gather_axis(kernel: str, x: Tensor, idx: Tensor, y: Tensor,
                      names=("x", "idx", "out")) -> tuple[int, int, int, int]:
    """(outer, n, m, inner): x (outer, n, inner), idx and y (outer, m, inner); or KernelError."""
    _three(kernel, **{names[0]: x, names[1]: idx})
    outer, n, inner = x.shape
    m = idx.shape[1]
    if idx.shape[0] != outer or idx.shape[2] != inner or y.shape != idx.shape:
        raise sizes_error(kernel, f"do not fit: {names[1]} and {names[2]} must be ({outer}, m, "
                          f"{inner})", **dict(zip(names, (x, idx, y))))
    if x.dtype != "f32" or y.dtype != "f32" or idx.dtype != "i32":
        raise KernelError(f"{kernel}: {names[0]} {x.dtype}, {names[1]} {idx.dtype}, {names[2]} "
                          f"{y.dtype}: expected f32, i32, f32")
    return outer, n, m, inner


def _gather_index(self, idx: Tensor, outer: int, n: int, m: int, inner: int) -> np.ndarray:
    """Flat indices o n inner + idx[o, j, i] inner + i into x, in a cached array."""
    f = self.scratch("gather_f", (outer, m, inner), np.intp)
    base = self._kept(("gather_base", outer, n, m, inner), lambda: (
        np.arange(outer, dtype=np.intp)[:, None, None] * (n * inner)
        + np.zeros((1, m, 1), np.intp) + np.arange(inner, dtype=np.intp)))
    np.multiply(idx.a, inner, out=f)
    np.add(f, base, out=f)
    return f.reshape(-1)


def _check_gather(kernel: str, x: Tensor, idx: Tensor, out: Tensor) -> tuple[int, ...]:
    dims = check_gather_axis(kernel, x, idx, out)
    _no_overlap(kernel, -1, {"out": out}, {"x": x, "idx": idx})
    return dims


@kernel(FAMILY, "x idx:i32 out:out", check=_check_gather, dims="outer n m inner",
        c="qr_gather_axis_f32(x, idx, out, outer, n, m, inner)", on_error=_index_error(0, 1),
        tol=EXACT,
        examples=[dict(x=(3, 5, 4), idx=((3, 6, 4), 0, 5), out=(3, 6, 4)),
                  dict(x=(1, 10, 1), idx=((1, 4, 1), 0, 10), out=(1, 4, 1)),
                  dict(x=(2, 300, 3), idx=((2, 2, 3), 0, 300), out=(2, 2, 3))],
        bad=[(r"gather_axis: index out of range: [56] is outside \[0, 5\) \(idx \(3, 6, 4\)\)",
              dict(idx=((3, 6, 4), 5, 7))),
             (r"index out of range: -\d is outside", dict(idx=((3, 6, 4), -3, 0))),
             (r"gather_axis: x \(3, 5, 4\), idx \(3, 6, 2\), out \(3, 6, 4\) do not fit",
              dict(idx=((3, 6, 2), 0, 5)))])
def gather_axis(self, x: Tensor, idx: Tensor, out: Tensor) -> None:
    """out[o, j, i] = x[o, idx[o, j, i], i] (torch.gather along the middle axis): x (outer,
    n, inner), idx int32 and out (outer, m, inner). An index outside [0, n): KernelError."""
    O = out.w
    outer, n, inner = x.shape
    err = bad_index("gather_axis", idx, n)
    if err:
        raise err
    f = _gather_index(self, idx, outer, n, idx.shape[1], inner)
    np.take(x.a.reshape(-1), f, out=O.reshape(-1))


def _check_gather_bwd(kernel: str, dy: Tensor, idx: Tensor, dx: Tensor) -> tuple[int, ...]:
    dims = check_gather_axis(kernel, dx, idx, dy, ("dx", "idx", "dy"))
    _no_overlap(kernel, -1, {"dx": dx}, {"dy": dy, "idx": idx})
    return dims


@kernel(FAMILY, "dy idx:i32 dx:out", check=_check_gather_bwd, dims="outer n m inner",
        c="qr_gather_axis_bwd_f32(dy, idx, dx, outer, n, m, inner)",
        on_error=_index_error(2, 1), tol=EXACT,
        examples=[dict(dy=(3, 6, 4), idx=((3, 6, 4), 0, 5), dx=(3, 5, 4)),
                  dict(dy=(1, 40, 1), idx=((1, 40, 1), 0, 3), dx=(1, 3, 1)),
                  dict(dy=(2, 7, 65), idx=((2, 7, 65), 0, 2), dx=(2, 2, 65))],
        bad=[(r"gather_axis_bwd: index out of range: [56] is outside \[0, 5\)",
              dict(idx=((3, 6, 4), 5, 7)))])
def gather_axis_bwd(self, dy: Tensor, idx: Tensor, dx: Tensor) -> None:
    """dx (outer, n, inner) overwritten: 0, then dx[o, idx[o, j, i], i] += dy[o, j, i] in
    order (repeated indices accumulate); dy and idx (outer, m, inner)."""
    DX = dx.w
    outer, n, inner = dx.shape
    err = bad_index("gather_axis_bwd", idx, n)
    if err:
        raise err
    f = _gather_index(self, idx, outer, n, idx.shape[1], inner)
    DX.fill(0)
    np.add.at(DX.reshape(-1), f, dy.a.reshape(-1))


# ----------------------------------------------------------------------------- bmm
def check_bmm(kernel: str, a: Tensor, b: Tensor, c: Tensor, trans_a, trans_b, alpha,
              beta) -> tuple[int, int, int, int]:
    """(batch, M, N, K) of ``op(A[i]) [M, K] @ op(B[i]) [K, N] -> C[i] [M, N]``, or KernelError."""
    if len(a.shape) != 3 or len(b.shape) != 3 or len(c.shape) != 3:
        raise sizes_error(kernel, "must be 3-D (batch, rows, cols)", a=a, b=b, c=c)
    _f32(kernel, a=a, b=b, c=c)
    batch, ra, ca = a.shape
    _, rb, cb = b.shape
    m, k = (ca, ra) if trans_a else (ra, ca)
    kb, n = (cb, rb) if trans_b else (rb, cb)
    if b.shape[0] != batch or c.shape != (batch, m, n) or kb != k:
        raise KernelError(f"{kernel}: op(A) is {batch} x {m}x{k} (A {a.shape}, trans_a="
                          f"{bool(trans_a)}), op(B) is {b.shape[0]} x {kb}x{n} (B {b.shape}, "
                          f"trans_b={bool(trans_b)}), C is {c.shape}: expected C "
                          f"({batch}, {m}, {n}) and matching inner dimensions")
    return batch, m, n, k


# C must not overlap A or B (NumPy's matmul buffers such a call: it runs there), as gemm's
_NO_OVERLAP = ("(c.p >= a.p + 4 * a.size or a.p >= c.p + 4 * c.size) and "
               "(c.p >= b.p + 4 * b.size or b.p >= c.p + 4 * c.size)")


@kernel(FAMILY, "a b c:inout", check=check_bmm, dims="batch m n k", simd="gemm",
        c="qr_bmm_f32(trans_a:bool, trans_b:bool, batch, m, n, k, alpha:f32, a, b, beta:f32, c)",
        c_when=_NO_OVERLAP, tol=(1e-5, 1e-5),
        examples=[dict(a=(2, 3, 5), b=(2, 5, 4), c=(2, 3, 4)),
                  dict(a=(3, 5, 17), b=(3, 13, 5), c=(3, 17, 13), trans_a=True, trans_b=True,
                       alpha=0.5, beta=0.3),
                  dict(a=(4, 9, 7), b=(4, 9, 7), c=(4, 9, 9), trans_b=True, beta=1.0),
                  dict(a=(2, 8, 6), b=(2, 8, 3), c=(2, 6, 3), trans_a=True),
                  dict(a=(2, 4, 0), b=(2, 0, 3), c=(2, 4, 3), beta=0.5),
                  dict(a=(16, 12, 8), b=(16, 8, 10), c=(16, 12, 10), alpha=-1.0)],
        bad=[(r"bmm: op\(A\) is 2 x 3x5 .*op\(B\) is 3 x 5x4", dict(b=(3, 5, 4))),
             (r"bmm: a \(3, 5\), b \(2, 5, 4\), c \(2, 3, 4\) must be 3-D", dict(a=(3, 5)))])
def bmm(self, a: Tensor, b: Tensor, c: Tensor, trans_a: bool = False, trans_b: bool = False,
        alpha: float = 1.0, beta: float = 0.0) -> None:
    """C[i] = alpha * op(A[i]) @ op(B[i]) + beta * C[i] for each of the batch: A (B, M, K)
    (or (B, K, M) if trans_a), B (B, K, N) (or (B, N, K) if trans_b), C (B, M, N); one batch
    size for all (no broadcast). beta == 0 never reads C."""
    C = c.w
    A = a.a.transpose(0, 2, 1) if trans_a else a.a
    B = b.a.transpose(0, 2, 1) if trans_b else b.a
    gemm_numpy(self, A, B, C, alpha, beta, "bmm")
