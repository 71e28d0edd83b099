"""The strided kernels (csrc/strided.c, decl/strided*.py) on both kernel sets: each forward
against NumPy written here (odd shapes, many broadcast patterns, 0-size dims), the refusals
(shapes, bounds, overlap, indices, dtypes), no allocation after a warm-up call, and the
packed geometry C takes (the backwards: test_kernels_strided_grad.py). The C set runs with no NumPy
fallback (``c_without_fallback``), so every C result here is C's; the table tests
(test_kernel_table.py) add C-vs-NumPy parity on the declared examples.
"""

from __future__ import annotations

import numpy as np
import pytest
from strided_cases import (
    COPIES,
    PAT_IDS,
    PATTERNS,
    SETS,
    SUMS,
    UFUNCS,
    WHERES,
    T,
    _strided_ref,
    binary_inputs,
    rnd,
)

from qorus_core.errors import KernelError
from qorus_core.kernels import NumpyKernels, get_kernels
from qorus_core.kernels.decl.strided import BINARY_OPS, DIV, MAXIMUM, MINIMUM, MUL
from qorus_core.tensor import Tensor
from qorus_core.testing import c_without_fallback, trace_allocations


@pytest.fixture(params=SETS)
def k(request):
    """Each kernel set; the C one with no NumPy fallback."""
    return NumpyKernels() if request.param == "numpy" else c_without_fallback()


# ----------------------------------------------------------------------------- forward
@pytest.mark.parametrize("op", range(6), ids=BINARY_OPS)
@pytest.mark.parametrize("sa,sb,so", PATTERNS, ids=PAT_IDS)
def test_bcast_binary_is_numpys(k, op, sa, sb, so):
    a, b = rnd(sa, 1), rnd(sb, 2, 0.5, 2.0)
    out = T(np.full(so, 7.0))
    k.bcast_binary(T(a), T(b), out, op)
    with np.errstate(divide="ignore"):
        np.testing.assert_array_equal(out.a, UFUNCS[BINARY_OPS[op]](a, b))


def test_bcast_binary_nan_ties_and_aliasing(k):
    a = np.array([[1.0, np.nan, 3.0, 0.0, -0.0]], np.float32)
    b = np.array([[1.0], [np.nan], [5.0]], np.float32)
    for op in (MAXIMUM, MINIMUM):
        out = T(np.zeros((3, 5)))
        k.bcast_binary(T(a), T(b), out, op)
        np.testing.assert_array_equal(out.a, UFUNCS[BINARY_OPS[op]](a, b))
    x, y = rnd((4, 6), 3), rnd((6,), 4)
    t = T(x)
    k.bcast_binary(t, T(y), t, MUL)                       # out is a
    np.testing.assert_array_equal(t.a, x * y)
    t = T(y * np.ones((4, 1), np.float32))
    k.bcast_binary(T(x), t, t, DIV)                       # out is b
    np.testing.assert_array_equal(t.a, x / (y * np.ones((4, 1), np.float32)))


def test_zero_size_dims(k):
    """A 0-size dim: nothing to compute forward; a gradient summed over it is 0."""
    out = T(np.zeros((0, 5)))
    k.bcast_binary(T(np.zeros((0, 1))), T(np.ones(5)), out, 0)
    s = T(np.full(5, 9.0))
    k.sum_to(T(np.zeros((0, 5))), s)
    np.testing.assert_array_equal(s.a, np.zeros(5))
    da, db = T(np.full((1, 5), 3.0)), T(np.full((0, 1), 3.0))
    k.bcast_binary_bwd(T(np.ones((1, 5))), T(np.ones((0, 1))), T(np.zeros((0, 5))), da, db, MUL)
    np.testing.assert_array_equal(da.a, np.zeros((1, 5)))
    k.strided_copy(T(np.ones(4)), T(np.zeros(4)), (2, 0), 0, (2, 1), 0, (2, 1))
    k.gather_axis(T(np.ones((2, 3, 4))), T(np.zeros((2, 0, 4)), np.int32), T(np.zeros((2, 0, 4))))
    dx = T(np.ones((2, 3, 4)))
    k.gather_axis_bwd(T(np.zeros((2, 0, 4))), T(np.zeros((2, 0, 4)), np.int32), dx)
    np.testing.assert_array_equal(dx.a, 0)
    c = T(np.ones((0, 3, 4)))
    k.bmm(T(np.ones((0, 3, 2))), T(np.ones((0, 2, 4))), c)


@pytest.mark.parametrize("sx,so", SUMS, ids=[f"{a}-{b}" for a, b in SUMS])
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (0.5, 1.0), (-2.0, 0.25)])
def test_sum_to_is_numpys(k, sx, so, alpha, beta):
    x, o = rnd(sx, 5), rnd(so, 6)
    xb = x.astype(np.float64)
    pad = (1,) * (len(sx) - len(so)) + so
    axes = tuple(i for i, (d, e) in enumerate(zip(sx, pad)) if d != e)
    want = alpha * xb.sum(axis=axes, keepdims=True).reshape(so) + beta * o
    out = T(o)
    k.sum_to(T(x), out, alpha, beta)
    np.testing.assert_allclose(out.a, want, rtol=1e-5, atol=1e-4)
    nan = T(np.full(so, np.nan))
    k.sum_to(T(x), nan)                               # beta 0 never reads out
    assert not np.isnan(nan.a).any()



@pytest.mark.parametrize("name", sorted(COPIES))
@pytest.mark.parametrize("accumulate", [False, True])
def test_strided_copy_is_the_index_formula(k, name, accumulate):
    s_shape, d_shape, shape, so, ss, do, ds = COPIES[name]
    src, dst = rnd(s_shape, 7), rnd(d_shape, 8)
    d = T(dst)
    k.strided_copy(T(src), d, shape, so, ss, do, ds, accumulate)
    if name == "big":
        want = dst + src.T if accumulate else src.T
    else:
        want = _strided_ref(src, dst, shape, so, ss, do, ds, accumulate)
    np.testing.assert_array_equal(d.a, want)


def test_strided_copy_int32_and_transposes(k):
    rng = np.random.default_rng(9)
    src = rng.integers(-2**31, 2**31 - 1, (3, 4, 5), dtype=np.int64).astype(np.int32)
    d = T(np.zeros((5, 3, 4)), np.int32)
    k.strided_copy(T(src, np.int32), d, (5, 3, 4), 0, (1, 20, 5), 0, (12, 4, 1))
    np.testing.assert_array_equal(d.a, src.transpose(2, 0, 1))
    for seed in range(6):                       # random permutations of up to 6 dims
        r = np.random.default_rng(seed)
        shape = tuple(int(v) for v in r.integers(1, 5, r.integers(1, 7)))
        x = rnd(shape, seed)
        perm = tuple(int(v) for v in r.permutation(len(shape)))
        y = np.ascontiguousarray(x.transpose(perm))
        st = [int(v) // 4 for v in x.strides]
        d = T(np.zeros(y.shape))
        k.strided_copy(T(x), d, y.shape, 0, tuple(st[p] for p in perm), 0,
                       tuple(int(v) // 4 for v in y.strides))
        np.testing.assert_array_equal(d.a, y)


def test_strided_copy_concat_then_split_roundtrip(k):
    """concat of three pieces along axis 1 of (2, *, 3), then the split back."""
    parts = [rnd((2, w, 3), w) for w in (1, 4, 2)]
    cat = T(np.zeros((2, 7, 3)))
    off = 0
    for p in parts:
        k.strided_copy(T(p), cat, p.shape, 0, (p.shape[1] * 3, 3, 1), off * 3, (21, 3, 1))
        off += p.shape[1]
    np.testing.assert_array_equal(cat.a, np.concatenate(parts, axis=1))
    off = 0
    for p in parts:
        back = T(np.zeros(p.shape))
        k.strided_copy(cat, back, p.shape, off * 3, (21, 3, 1), 0, (p.shape[1] * 3, 3, 1))
        np.testing.assert_array_equal(back.a, p)
        off += p.shape[1]


@pytest.mark.parametrize("shape", [(3, 5, 4), (6, 7, 1), (1, 9, 33), (5, 1, 3), (2, 300, 3)])
def test_max_axis_is_torch_max_dim(k, shape):
    rng = np.random.default_rng(10)
    x = rng.integers(-3, 4, shape).astype(np.float32)     # ties: the first index wins
    x[rng.random(shape) < 0.05] = np.nan                   # NaN wins, the first one
    out, idx = T(np.zeros((shape[0], shape[2]))), T(np.zeros(shape[0] * shape[2]), np.int32)
    k.max_axis(T(x), out, idx)
    np.testing.assert_array_equal(out.a, np.max(x, axis=1))
    np.testing.assert_array_equal(idx.a.reshape(out.shape), np.argmax(x, axis=1))


def test_gather_axis_is_take_along_axis(k):
    rng = np.random.default_rng(11)
    for outer, n, m, inner in [(3, 5, 6, 4), (1, 10, 4, 1), (2, 300, 2, 3), (4, 1, 7, 5)]:
        x = rnd((outer, n, inner), n)
        idx = rng.integers(0, n, (outer, m, inner)).astype(np.int32)
        out = T(np.zeros(idx.shape))
        k.gather_axis(T(x), T(idx, np.int32), out)
        np.testing.assert_array_equal(out.a, np.take_along_axis(x, idx, axis=1))



@pytest.mark.parametrize("cdt", [np.float32, np.int32])
@pytest.mark.parametrize("sc,sa,sb,so", WHERES, ids=[str(w[0]) for w in WHERES])
def test_bcast_where_is_numpys(k, cdt, sc, sa, sb, so):
    rng = np.random.default_rng(12)
    cond = rng.integers(-1, 2, sc).astype(cdt)
    if cdt == np.float32:
        cond[rng.random(sc) < 0.1] = np.nan                 # NaN counts as nonzero
    a, b = rnd(sa, 13), rnd(sb, 14)
    out = T(np.zeros(so))
    k.bcast_where(T(cond, cdt), T(a), T(b), out)
    np.testing.assert_array_equal(out.a, np.where(cond != 0, a, b))


@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("batch,m,n,kk", [(2, 3, 4, 5), (5, 17, 13, 9), (3, 1, 7, 4),
                                          (1, 40, 30, 20), (64, 8, 8, 8)])
def test_bmm_is_matmul(k, ta, tb, batch, m, n, kk):
    a = rnd((batch, kk, m) if ta else (batch, m, kk), 15)
    b = rnd((batch, n, kk) if tb else (batch, kk, n), 16)
    c0 = rnd((batch, m, n), 17)
    A = a.transpose(0, 2, 1) if ta else a
    B = b.transpose(0, 2, 1) if tb else b
    c = T(c0)
    k.bmm(T(a), T(b), c, ta, tb, 0.5, 0.25)
    want = 0.5 * np.matmul(A.astype(np.float64), B) + 0.25 * c0
    np.testing.assert_allclose(c.a, want, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- refusals
def refused(k, fn, *args, match: str) -> str:
    with pytest.raises(KernelError, match=match) as exc:
        fn(*args)
    return str(exc.value)


def test_shapes_that_do_not_broadcast_are_refused(k):
    msg = refused(k, k.bcast_binary, T(np.zeros((3, 4))), T(np.zeros((5,))), T(np.zeros((3, 4))),
                  0, match="do not broadcast")
    assert "a (3, 4)" in msg and "b (5,)" in msg and "bcast_binary" in msg
    refused(k, k.bcast_binary, T(np.zeros((3, 1))), T(np.zeros((1, 4))), T(np.zeros((3, 5))),
            0, match=r"a \(3, 1\), b \(1, 4\), out \(3, 5\) do not broadcast")
    refused(k, k.sum_to, T(np.zeros((4, 5))), T(np.zeros((4,))),
            match=r"sum_to: x \(4, 5\), out \(4,\) do not fit")
    refused(k, k.bcast_where, T(np.zeros((2, 1))), T(np.zeros(3)), T(np.zeros((4, 1))),
            T(np.zeros((2, 3))), match=r"cond \(2, 1\), a \(3,\), b \(4, 1\), out \(2, 3\)")
    refused(k, k.bcast_binary_bwd, None, None, T(np.zeros((2, 3))), T(np.zeros((3, 1))), None,
            0, match=r"dy \(2, 3\), da \(3, 1\) do not broadcast")
    refused(k, k.bmm, T(np.zeros((2, 3, 4))), T(np.zeros((3, 4, 5))), T(np.zeros((2, 3, 5))),
            match=r"bmm: op\(A\) is 2 x 3x4")
    refused(k, k.bcast_binary, T(np.zeros(3)), T(np.zeros(3)), T(np.zeros(3)), -1,
            match=r"op -1 is not one of 0..5")


def test_out_of_bounds_and_overlapping_copies_are_refused(k):
    src, dst = T(np.zeros(20)), T(np.zeros(20))
    refused(k, k.strided_copy, src, dst, (4, 5), 1, (5, 1), 0, (5, 1), match="out of bounds")
    refused(k, k.strided_copy, src, dst, (4, 5), 0, (5, 1), 0, (6, 1), match="out of bounds")
    refused(k, k.strided_copy, src, dst, (2,), -1, (1,), 0, (1,), match="out of bounds")
    refused(k, k.strided_copy, src, dst, (3, 3), 0, (3, 1), 0, (1, 1), match="twice")
    refused(k, k.strided_copy, src, dst, (2,), 0, (-1,), 0, (1,), match="negative")
    refused(k, k.strided_copy, src, dst, [2, 2], 0, [2, 1], 0, (2, 1, 1), match="lengths")
    arena = np.zeros(40, np.float32)
    a, b = Tensor(arena[0:20]), Tensor(arena[10:30])
    refused(k, k.strided_copy, a, b, (20,), 0, (1,), 0, (1,),
            match=r"src \(20,\) and dst \(20,\) overlap")
    one = Tensor(arena)                 # disjoint windows of one buffer: allowed
    k.strided_copy(one, one, (10,), 0, (1,), 20, (1,))
    k.strided_copy(src, dst, [4, 5], 0, [5, 1], 0, [5, 1])   # lists are taken too
    out = Tensor(arena[0:12].reshape(3, 4))
    part = Tensor(arena[4:8])                                  # inside out, broadcast
    refused(k, k.bcast_binary, T(np.zeros((3, 4))), part, out, 0,
            match=r"out \(3, 4\) overlaps b \(4,\)")
    dy = Tensor(arena[20:32].reshape(3, 4))
    refused(k, k.bcast_binary_bwd, None, None, dy, Tensor(arena[20:24]), None, 0,
            match="da .4,. overlaps dy")
    refused(k, k.bcast_binary_bwd, None, None, dy, Tensor(arena[0:12].reshape(3, 4)),
            Tensor(arena[8:12]), 0, match="da .3, 4. and db .4,. overlap")
    refused(k, k.sum_to, Tensor(arena[0:12].reshape(3, 4)), Tensor(arena[8:12]),
            match="overlap")
    x = Tensor(arena[0:24].reshape(2, 3, 4))
    refused(k, k.max_axis, x, Tensor(arena[0:8]), T(np.zeros(8), np.int32), match="overlaps x")


def test_indices_out_of_range_are_refused(k):
    x = T(rnd((2, 5, 3), 1))
    for bad in (5, -1, 2**31 - 1):
        idx = np.zeros((2, 4, 3), np.int32)
        idx[1, 2, 0] = bad
        refused(k, k.gather_axis, x, T(idx, np.int32), T(np.zeros((2, 4, 3))),
                match=rf"gather_axis: index out of range: {bad} is outside \[0, 5\)")
        dx = T(np.full((2, 5, 3), 4.0))
        refused(k, k.gather_axis_bwd, T(np.zeros((2, 4, 3))), T(idx, np.int32), dx,
                match=rf"index out of range: {bad} is outside")
        np.testing.assert_array_equal(dx.a, 4.0)                # nothing written
        mi = np.zeros(6, np.int32)
        mi[3] = bad
        dx = T(np.full((2, 5, 3), 4.0))
        refused(k, k.max_axis_bwd, T(np.zeros((2, 3))), T(mi, np.int32), dx,
                match=rf"max_axis_bwd: index out of range: {bad} is outside")
        np.testing.assert_array_equal(dx.a, 4.0)


@pytest.mark.parametrize("which", SETS)
def test_wrong_dtypes_are_refused_alike(which):
    """On the C set too (an f32 operand given as int32 goes to the NumPy fallback, whose
    check refuses it with the same message)."""
    kk = get_kernels(which)
    i = T(np.zeros((2, 3)), np.int32)
    f = T(np.zeros((2, 3)))
    refused(kk, kk.bcast_binary, i, f, f, 0, match=r"a \(2, 3\) is i32, expected f32")
    refused(kk, kk.bcast_binary_bwd, f, f, f, f, i, 2, match=r"db \(2, 3\) is i32, expected f32")
    refused(kk, kk.sum_to, f, i, match=r"out \(2, 3\) is i32, expected f32")
    refused(kk, kk.bcast_where, f, f, i, f, match=r"b \(2, 3\) is i32, expected f32")
    refused(kk, kk.bcast_where_bwd, i, f, i, None, match=r"da \(2, 3\) is i32, expected f32")
    refused(kk, kk.strided_copy, i, f, (6,), 0, (1,), 0, (1,), match="expected one dtype")
    refused(kk, kk.strided_copy, i, T(np.zeros(6), np.int32), (6,), 0, (1,), 0, (1,), True,
            match=r"f32 to accumulate")
    refused(kk, kk.max_axis, T(np.zeros((2, 1, 3))), f, f, match="expected f32, f32, i32")
    refused(kk, kk.gather_axis, T(np.zeros((2, 3, 1))), T(np.zeros((2, 2, 1))),
            T(np.zeros((2, 2, 1))), match="expected f32, i32, f32")
    refused(kk, kk.bmm, T(np.zeros((1, 2, 2)), np.int32), T(np.zeros((1, 2, 2))),
            T(np.zeros((1, 2, 2))), match=r"a \(1, 2, 2\) is i32")


# ----------------------------------------------------------------------------- allocations
def _calls(k):
    t = lambda *s: Tensor(np.ones(s, np.float32))  # noqa: E731
    i32 = lambda *s: Tensor(np.zeros(s, np.int32))  # noqa: E731
    a, b, o = t(7, 1, 5), t(1, 3, 5), t(7, 3, 5)
    da, db, dy = t(7, 1, 5), t(1, 3, 5), t(7, 3, 5)
    x3, mo, mi = t(3, 5, 4), t(3, 4), i32(3, 4)
    gi, go = i32(3, 6, 4), t(3, 6, 4)
    cond = i32(7, 1, 5)
    A, B, C = t(4, 3, 5), t(4, 5, 2), t(4, 3, 2)
    src, dst = t(4, 5), t(5, 4)
    return {
        "bcast_binary": lambda: [k.bcast_binary(a, b, o, op) for op in range(6)],
        "bcast_binary_bwd": lambda: [k.bcast_binary_bwd(a, b, dy, da, db, op) for op in range(6)],
        "sum_to": lambda: (k.sum_to(o, db), k.sum_to(o, da, 0.5, 0.5)),
        "strided_copy": lambda: (k.strided_copy(src, dst, (5, 4), 0, (1, 5), 0, (4, 1)),
                                 k.strided_copy(src, dst, (5, 4), 0, (1, 5), 0, (4, 1), True)),
        "max_axis": lambda: k.max_axis(x3, mo, mi),
        "max_axis_bwd": lambda: k.max_axis_bwd(mo, mi, x3),
        "gather_axis": lambda: k.gather_axis(x3, gi, go),
        "gather_axis_bwd": lambda: k.gather_axis_bwd(go, gi, x3),
        "bcast_where": lambda: k.bcast_where(cond, a, b, o),
        "bcast_where_bwd": lambda: k.bcast_where_bwd(cond, dy, da, db),
        "bmm": lambda: (k.bmm(A, B, C), k.bmm(A, B, C, beta=0.5, alpha=2.0)),
    }


@pytest.mark.parametrize("name", sorted(_calls(NumpyKernels())))
def test_a_call_allocates_nothing_after_a_warm_up(k, name):
    fn = _calls(k)[name]
    fn()
    trace = trace_allocations(fn, repeat=3)
    assert trace.array_bytes == 0, (name, trace.where)


def test_lists_of_a_copy_are_cached_too(k):
    """strided_copy with lists (unhashable) is planned by their tuples, cached: no array
    after a warm-up, the result the tuples'."""
    src, got, want = T(rnd((4, 5), 130)), T(np.zeros((5, 4))), T(np.zeros((5, 4)))
    k.strided_copy(src, want, (5, 4), 0, (1, 5), 0, (4, 1))
    fn = lambda: k.strided_copy(src, got, [5, 4], 0, [1, 5], 0, [4, 1])  # noqa: E731
    fn()
    assert trace_allocations(fn, repeat=3).array_bytes == 0
    np.testing.assert_array_equal(got.a, want.a)


# ----------------------------------------------------------------------------- C geometry
def test_the_geometry_is_one_cached_read_only_array():
    """C takes a call's merged geometry as one pointer to an int64 array (d0..d5, then each
    operand's strides), made once per geometry and held by its cache entry."""
    from qorus_core.kernels.decl import strided as S
    from qorus_core.kernels.decl import strided_index as SI
    g = S.geometry((7, 3, 5), ((7, 1, 5), (1, 3, 5)), True)
    assert S.geometry((7, 3, 5), ((7, 1, 5), (1, 3, 5)), True) is g
    assert g.geom.dtype == np.int64 and g.geom.flags.c_contiguous and not g.geom.flags.writeable
    assert g.p == g.geom.ctypes.data
    assert g.geom.tolist() == [1, 1, 1, 7, 3, 5] + [0, 0, 0, 5, 0, 1] + [0, 0, 0, 0, 5, 1]
    p = SI.copy_plan((5, 4), (1, 5), (4, 1))
    assert SI.copy_plan((5, 4), (1, 5), (4, 1)) is p and not p.geom.flags.writeable
    assert p.p == p.geom.ctypes.data
    assert p.geom.tolist() == [1, 1, 1, 1, 5, 4] + [0, 0, 0, 0, 1, 5] + [0, 0, 0, 0, 4, 1]
    assert SI.copy_plan((0, 4), (1, 5), (4, 1)).geom.tolist()[:6] == [0, 1, 1, 1, 1, 1]


@pytest.mark.skipif("c" not in SETS, reason="C kernel library unavailable")
def test_the_c_geometry_kernels_take_one_pointer_and_refuse_null():
    """Each broadcasting kernel and the copy: its tensors, its scalars and one geometry
    pointer; a NULL geometry is QR_EARG (-1), nothing touched."""
    import ctypes
    ck = get_kernels("c")
    o = T(np.full(4, 3.0))
    # symbol: (the arguments before the geometry, those after it)
    calls = {"qr_bcast_binary_f32": ([o.wp] * 3 + [0], []),
             "qr_bcast_binary_bwd_f32": ([o.wp] * 5 + [0], []),
             "qr_sum_to_f32": ([o.wp] * 2, [1.0, 0.0]),
             "qr_strided_copy_f32": ([o.wp] * 2, [0]),
             "qr_bcast_where_f32": ([o.wp] * 4 + [0], []),
             "qr_bcast_where_bwd_f32": ([o.wp] * 4 + [0], [])}
    for name, (before, after) in calls.items():
        fn = getattr(ck, "_" + name)
        assert len(fn.argtypes) == len(before) + 1 + len(after), (name, fn.argtypes)
        assert fn.argtypes[len(before)] is ctypes.c_void_p, name     # the geometry
        assert fn(*before, None, *after) == -1, name
    np.testing.assert_array_equal(o.a, 3.0)


def test_results_do_not_depend_on_the_thread_count(threads):
    """The C kernels split large calls over threads (elementwise work, the copy, the axis
    kernels, the batch of a bmm of small products): the same bits on 1 thread and on 4."""
    ck = threads
    rng = np.random.default_rng(110)
    big = rnd((300, 1, 700), 111), rnd((1, 3, 700), 112)
    x3 = rng.integers(-50, 50, (64, 40, 70)).astype(np.float32)
    gi = rng.integers(0, 40, (64, 30, 70)).astype(np.int32)
    A, B = rnd((512, 16, 12), 113), rnd((512, 12, 16), 114)
    cond = (rng.random((300, 3, 1)) < 0.5).astype(np.float32)

    def run():
        out = []
        o = T(np.zeros((300, 3, 700)))
        ck.bcast_binary(T(big[0]), T(big[1]), o, MUL)
        out.append(o.a)
        da, db = T(np.zeros((300, 3, 700))), T(np.zeros((300, 3, 700)))
        ck.bcast_binary_bwd(T(o.a), T(o.a * 2), T(o.a), da, db, DIV)
        out += [da.a, db.a]
        w = T(np.zeros((300, 3, 700)))
        ck.bcast_where(T(cond), T(big[0]), T(big[1]), w)
        out.append(w.a)
        t = T(np.zeros((700, 900)))
        ck.strided_copy(T(o.a), t, (700, 900), 0, (1, 700), 0, (900, 1))
        out.append(t.a)
        m, i = T(np.zeros((64, 70))), T(np.zeros((64, 70)), np.int32)
        ck.max_axis(T(x3), m, i)
        dx = T(np.zeros((64, 40, 70)))
        ck.max_axis_bwd(m, i, dx)
        g = T(np.zeros((64, 30, 70)))
        ck.gather_axis(T(x3), T(gi, np.int32), g)
        gx = T(np.zeros((64, 40, 70)))
        ck.gather_axis_bwd(g, T(gi, np.int32), gx)
        c = T(np.zeros((512, 16, 16)))
        ck.bmm(T(A), T(B), c)
        return out + [m.a, i.a, dx.a, g.a, gx.a, c.a]

    ck.set_threads(1)
    one = run()
    ck.set_threads(4)
    for a, b in zip(one, run()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif("c" not in SETS, reason="C kernel library unavailable")
@pytest.mark.parametrize("op", range(6), ids=BINARY_OPS)
def test_reduced_gradients_c_matches_numpy(op):
    """Every broadcast pattern, the gradients summed to each input's shape: C (summing in
    double) and NumPy (pairwise in float32) within float tolerance."""
    ck, nk = c_without_fallback(), NumpyKernels()
    for sa, sb, so in PATTERNS[:-1]:
        a, b = binary_inputs(op, sa, sb)
        a = np.where(np.random.default_rng(1).random(sa) < 0.2, 0.0, a).astype(np.float32)
        dy = rnd(so, 3)
        got = []
        for kk in (ck, nk):
            da, db = T(np.zeros(sa)), T(np.zeros(sb))
            kk.bcast_binary_bwd(T(a), T(b), T(dy), da, db, op)
            got.append((da.a, db.a))
        for c, n in zip(*got):
            np.testing.assert_allclose(c, n, rtol=1e-5, atol=1e-5, err_msg=str((sa, sb)))


def test_a_bmm_whose_output_overlaps_an_input_runs_in_numpy():
    """As gemm: the C set hands such a call to NumPy (which buffers it), same result."""
    kk = get_kernels(SETS[-1])
    arena = rnd(60, 120)
    a0 = arena[0:24].reshape(2, 3, 4).copy()
    b = rnd((2, 4, 3), 121)
    c = Tensor(arena[6:24].reshape(2, 3, 3))                 # inside a
    kk.bmm(Tensor(arena[0:24].reshape(2, 3, 4)), T(b), c)
    np.testing.assert_allclose(c.a, np.matmul(a0, b), rtol=1e-5, atol=1e-5)
