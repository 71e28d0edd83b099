"""The strided kernels' backwards on both kernel sets: each against central finite
differences of its forward (a random linear functional, summed in float64; a wrong rule
must fail) and against PyTorch where it is installed. The forwards and refusals are in
test_kernels_strided.py."""

from __future__ import annotations

import numpy as np
import pytest
from strided_cases import (
    COPIES,
    SETS,
    SUMS,
    WHERES,
    T,
    binary_inputs,
    rnd,
)

from qorus_core.kernels import NumpyKernels
from qorus_core.kernels.decl.strided import BINARY_OPS, DIV, MUL
from qorus_core.testing import c_without_fallback


@pytest.fixture(params=SETS)
def k(request):
    """Each kernel set; the C one with no NumPy fallback."""
    return NumpyKernels() if request.param == "numpy" else c_without_fallback()


# ----------------------------------------------------------------------------- backward: FD
def fd(f, x: np.ndarray, w: np.ndarray, h: float) -> np.ndarray:
    """d/dx sum(w * f(x)) by central differences, the functional summed in float64 and the
    step taken as the float32 inputs actually differ."""
    g = np.zeros(x.size)
    for i in range(x.size):
        xp, xm = x.copy().reshape(-1), x.copy().reshape(-1)
        xp[i] += np.float32(h)
        xm[i] -= np.float32(h)
        lp = np.dot(w.reshape(-1).astype(np.float64), f(xp.reshape(x.shape)).reshape(-1))
        lm = np.dot(w.reshape(-1).astype(np.float64), f(xm.reshape(x.shape)).reshape(-1))
        g[i] = (lp - lm) / (float(xp[i]) - float(xm[i]))
    return g.reshape(x.shape)


def close(analytic, numeric) -> bool:
    return np.allclose(analytic, numeric, rtol=1e-2, atol=2e-3)


FD_PATTERNS = [((4, 1), (3,), (4, 3)), ((2, 1, 3), (4, 1), (2, 4, 3)), ((1,), (5,), (5,)),
               ((3, 4), (3, 4), (3, 4)), ((2, 3, 1, 2), (1, 3, 2, 1), (2, 3, 2, 2))]


@pytest.mark.parametrize("op", range(6), ids=BINARY_OPS)
@pytest.mark.parametrize("sa,sb,so", FD_PATTERNS, ids=[str(p) for p in FD_PATTERNS])
def test_bcast_binary_bwd_matches_finite_differences(k, op, sa, sb, so):
    a, b = binary_inputs(op, sa, sb)
    w = rnd(so, 23)

    def f(av, bv):
        y = T(np.zeros(so))
        k.bcast_binary(T(av), T(bv), y, op)
        return y.a.astype(np.float64)

    da, db = T(np.full(sa, 5.0)), T(np.full(sb, 5.0))       # overwritten, not added to
    k.bcast_binary_bwd(T(a), T(b), T(w), da, db, op)
    h = 1e-3 if op == DIV else 1e-2
    assert close(da.a, fd(lambda v: f(v, b), a, w, h)), (BINARY_OPS[op], "da")
    assert close(db.a, fd(lambda v: f(a, v), b, w, h)), (BINARY_OPS[op], "db")
    only = T(np.zeros(sb))
    k.bcast_binary_bwd(T(a), T(b), T(w), None, only, op)      # da not wanted
    np.testing.assert_allclose(only.a, db.a, rtol=1e-6, atol=1e-7)


def test_finite_differences_reject_a_wrong_rule():
    """The FD comparison is sharp enough: the gradient of mul with a and b swapped, a
    gradient not summed over the broadcast dim (its first entry), div's db without the
    minus, and where's masks swapped all fail it."""
    a, b = rnd((4, 1), 30), rnd((3,), 31, 0.5, 2.0)
    w = rnd((4, 3), 32)
    nk = NumpyKernels()

    def f(av, bv, op):
        y = T(np.zeros((4, 3)))
        nk.bcast_binary(T(av), T(bv), y, op)
        return y.a.astype(np.float64)

    num_a = fd(lambda v: f(v, b, MUL), a, w, 1e-2)
    assert close((w * b).sum(1, keepdims=True), num_a)           # the right rule passes
    assert not close((w * a).sum(1, keepdims=True), num_a)       # a, b swapped
    assert not close((w * b)[:, :1], num_a)                      # not reduced
    num_b = fd(lambda v: f(a, v, DIV), b, w, 1e-3)
    assert not close((w * a / b ** 2).sum(0), num_b)             # the sign of div's db
    cond = np.array([[1.0], [0.0], [2.0], [0.0]], np.float32)
    x, y = rnd((4, 3), 33), rnd((1, 3), 34)

    def g(xv):
        o = T(np.zeros((4, 3)))
        nk.bcast_where(T(cond), T(xv), T(y), o)
        return o.a.astype(np.float64)

    num = fd(g, x, w, 1e-2)
    assert close(w * (cond != 0), num) and not close(w * (cond == 0), num)


@pytest.mark.parametrize("sx,so", SUMS[:9], ids=[f"{a}-{b}" for a, b in SUMS[:9]])
def test_sum_to_is_the_adjoint_of_broadcasting(k, sx, so):
    """sum_to is the backward of a broadcast: <broadcast(v), w> = <v, sum_to(w)>, checked by
    FD of the broadcast done with bcast_binary (add of 0)."""
    v, w = rnd(so, 40), rnd(sx, 41)

    def bcast(vv):
        y = T(np.zeros(sx))
        k.bcast_binary(T(vv), T(np.zeros(sx)), y, 0)
        return y.a.astype(np.float64)

    g = T(np.zeros(so))
    k.sum_to(T(w), g)
    assert close(g.a, fd(bcast, v, w, 1e-2))


def test_max_axis_bwd_and_gather_bwd_match_finite_differences(k):
    rng = np.random.default_rng(50)
    x = (rng.permutation(60).astype(np.float32) / 4).reshape(3, 5, 4)   # no ties
    w = rnd((3, 4), 51)

    def fmax(xv):
        out, idx = T(np.zeros((3, 4))), T(np.zeros((3, 4)), np.int32)
        k.max_axis(T(xv), out, idx)
        return out.a.astype(np.float64)

    out, idx = T(np.zeros((3, 4))), T(np.zeros((3, 4)), np.int32)
    k.max_axis(T(x), out, idx)
    dx = T(np.full((3, 5, 4), 9.0))
    k.max_axis_bwd(T(w), idx, dx)
    assert close(dx.a, fd(fmax, x, w, 1e-2))
    gi = rng.integers(0, 5, (3, 7, 4)).astype(np.int32)                 # repeats accumulate
    wg = rnd((3, 7, 4), 52)

    def fgather(xv):
        o = T(np.zeros((3, 7, 4)))
        k.gather_axis(T(xv), T(gi, np.int32), o)
        return o.a.astype(np.float64)

    dx = T(np.full((3, 5, 4), 9.0))
    k.gather_axis_bwd(T(wg), T(gi, np.int32), dx)
    assert close(dx.a, fd(fgather, x, wg, 1e-2))


@pytest.mark.parametrize("cdt", [np.float32, np.int32])
@pytest.mark.parametrize("sc,sa,sb,so", WHERES[:4], ids=[str(w[0]) for w in WHERES[:4]])
def test_bcast_where_bwd_matches_finite_differences(k, cdt, sc, sa, sb, so):
    cond = np.random.default_rng(60).integers(-1, 2, sc).astype(cdt)
    a, b, w = rnd(sa, 61), rnd(sb, 62), rnd(so, 63)

    def f(av, bv):
        y = T(np.zeros(so))
        k.bcast_where(T(cond, cdt), T(av), T(bv), y)
        return y.a.astype(np.float64)

    da, db = T(np.full(sa, 3.0)), T(np.full(sb, 3.0))
    k.bcast_where_bwd(T(cond, cdt), T(w), da, db)
    assert close(da.a, fd(lambda v: f(v, b), a, w, 1e-2))
    assert close(db.a, fd(lambda v: f(a, v), b, w, 1e-2))


@pytest.mark.parametrize("name", ["transpose", "permute3", "concat-cols", "slice-step",
                                  "expand", "split", "six"])
def test_strided_copy_accumulate_is_its_backward(k, name):
    """The backward of y = copy(x) (dst fully written) is dx += copy back with the strides
    swapped (accumulate; an expand's backward sums over the broadcast dim, the job of
    sum_to, so it is checked as dy summed there), against FD of the forward."""
    s_shape, d_shape, shape, so, ss, do, ds = COPIES[name]
    x = rnd(s_shape, 70)
    w = rnd(d_shape, 71)
    base = rnd(d_shape, 72)

    def f(xv):
        y = T(base)
        k.strided_copy(T(xv), y, shape, so, ss, do, ds)
        return y.a.astype(np.float64)

    num = fd(f, x, w, 1e-2)
    dx = T(np.full(s_shape, 1.5))
    if name == "expand":
        g = T(np.zeros(shape))
        k.strided_copy(T(w), g, shape, do, ds, 0, (4, 1))
        k.sum_to(g, dx, 1.0, 1.0)
    else:
        k.strided_copy(T(w), dx, shape, do, ds, so, ss, accumulate=True)
    assert close(dx.a - 1.5, num)


# ----------------------------------------------------------------------------- PyTorch
@pytest.mark.parametrize("op", range(6), ids=BINARY_OPS)
def test_bcast_binary_bwd_is_torchs_with_ties(k, op):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(80)
    a = rng.integers(-2, 3, (4, 1, 3)).astype(np.float32)     # ties for maximum / minimum
    b = rng.integers(-2, 3, (5, 3)).astype(np.float32)
    if op == DIV:
        b = np.where(b == 0, 3.0, b).astype(np.float32)
    w = rnd((4, 5, 3), 81)
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    fn = {0: torch.add, 1: torch.sub, 2: torch.mul, 3: torch.div, 4: torch.maximum,
          5: torch.minimum}[op]
    y = fn(ta, tb)
    y.backward(torch.tensor(w))
    out = T(np.zeros((4, 5, 3)))
    k.bcast_binary(T(a), T(b), out, op)
    np.testing.assert_allclose(out.a, y.detach().numpy(), rtol=1e-6)
    da, db = T(np.zeros(a.shape)), T(np.zeros(b.shape))
    k.bcast_binary_bwd(T(a), T(b), T(w), da, db, op)
    np.testing.assert_allclose(da.a, ta.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(db.a, tb.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_reductions_gathers_where_and_bmm_are_torchs(k):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(90)
    x = rnd((4, 5, 6), 91)
    out = T(np.zeros((5, 1)))
    k.sum_to(T(x), out)
    np.testing.assert_allclose(out.a, torch.tensor(x).sum_to_size(5, 1).numpy(), rtol=1e-5,
                               atol=1e-6)
    xm = rng.integers(-3, 4, (3, 6, 4)).astype(np.float32)
    xm[0, 2, 1] = xm[0, 4, 1] = np.nan
    vals, idx = T(np.zeros((3, 4))), T(np.zeros((3, 4)), np.int32)
    k.max_axis(T(xm), vals, idx)
    tv, ti = torch.max(torch.tensor(xm), 1)
    np.testing.assert_array_equal(vals.a, tv.numpy())
    assert idx.a[0, 1] == ti.numpy()[0, 1] == 2                        # the first NaN
    txm = torch.tensor(np.nan_to_num(xm, nan=9.0) + rng.random(xm.shape).astype(np.float32),
                       requires_grad=True)
    tv, ti = torch.max(txm, 1)
    dy = rnd((3, 4), 92)
    tv.backward(torch.tensor(dy))
    dx = T(np.zeros((3, 6, 4)))
    k.max_axis_bwd(T(dy), T(ti.numpy().astype(np.int32), np.int32), dx)
    np.testing.assert_array_equal(dx.a, txm.grad.numpy())
    gi = rng.integers(0, 5, (3, 8, 4))
    tx = torch.tensor(x[:3, :, :4].copy(), requires_grad=True)
    tg = torch.gather(tx, 1, torch.tensor(gi))
    dg = rnd((3, 8, 4), 93)
    tg.backward(torch.tensor(dg))
    o = T(np.zeros((3, 8, 4)))
    k.gather_axis(T(tx.detach().numpy()), T(gi, np.int32), o)
    np.testing.assert_array_equal(o.a, tg.detach().numpy())
    dx = T(np.zeros((3, 5, 4)))
    k.gather_axis_bwd(T(dg), T(gi, np.int32), dx)
    np.testing.assert_allclose(dx.a, tx.grad.numpy(), rtol=1e-6, atol=1e-6)
    cond = rng.integers(0, 2, (4, 1, 6)).astype(np.int32)
    a, b = rnd((5, 1), 94), rnd((4, 5, 6), 95)
    tA, tB = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    ty = torch.where(torch.tensor(cond != 0), tA, tB)
    g = rnd((4, 5, 6), 96)
    ty.backward(torch.tensor(g))
    y = T(np.zeros((4, 5, 6)))
    k.bcast_where(T(cond, np.int32), T(a), T(b), y)
    np.testing.assert_array_equal(y.a, ty.detach().numpy())
    da, db = T(np.zeros(a.shape)), T(np.zeros(b.shape))
    k.bcast_where_bwd(T(cond, np.int32), T(g), da, db)
    np.testing.assert_allclose(da.a, tA.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(db.a, tB.grad.numpy(), rtol=1e-5, atol=1e-6)
    A, B = rnd((6, 7, 9), 97), rnd((6, 9, 5), 98)
    c = T(np.zeros((6, 7, 5)))
    k.bmm(T(A), T(B), c)
    np.testing.assert_allclose(c.a, torch.bmm(torch.tensor(A), torch.tensor(B)).numpy(),
                               rtol=1e-5, atol=1e-5)
    xt = torch.tensor(rnd((2, 3, 4), 99), requires_grad=True)    # permute and its backward
    yt = xt.permute(2, 0, 1).contiguous()
    gy = rnd((4, 2, 3), 100)
    yt.backward(torch.tensor(gy))
    y = T(np.zeros((4, 2, 3)))
    k.strided_copy(T(xt.detach().numpy()), y, (4, 2, 3), 0, (1, 12, 4), 0, (6, 3, 1))
    np.testing.assert_array_equal(y.a, yt.detach().numpy())
    gx = T(np.zeros((2, 3, 4)))
    k.strided_copy(T(gy), gx, (4, 2, 3), 0, (6, 3, 1), 0, (1, 12, 4), accumulate=True)
    np.testing.assert_array_equal(gx.a, xt.grad.numpy())
