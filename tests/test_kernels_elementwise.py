"""The elementwise primitives (csrc/elementwise.c, decl/elementwise.py): each backward against
central finite differences of its forward, on both kernel sets; the semantics the table's
C-vs-NumPy parity cannot show by itself (ties, NaN, special values, aliasing).

Finite differences run the float32 forward at x +- h (h = 1e-3), so they agree with the
analytic gradient to about 1e-4 relative; inputs stay away from kinks (|x| > 0.1 for abs,
|a - b| > 0.1 for maximum / minimum) and from the poles of div / log (> 0.5).
"""

from __future__ import annotations

import numpy as np
import pytest

from qorus_core.kernels import get_kernels
from qorus_core.tensor import Tensor

N = 12
H = 1e-3


def T(a) -> Tensor:
    return Tensor(np.array(a, dtype=np.float32, copy=True))


def inputs(kind: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "pos":
        return rng.uniform(0.5, 3.0, N).astype(np.float32)
    x = rng.uniform(0.1, 2.0, N) * rng.choice([-1.0, 1.0], N)   # away from 0
    return x.astype(np.float32)


def fd(f, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """d/dx sum(w * f(x)) by central differences of the float32 forward."""
    g = np.zeros(x.size)
    for i in range(x.size):
        xp, xm = x.copy(), x.copy()
        xp[i] += H
        xm[i] -= H
        g[i] = (np.dot(w, f(xp).astype(np.float64)) - np.dot(w, f(xm).astype(np.float64))) / (2 * H)
    return g


def close(analytic: np.ndarray, numeric: np.ndarray) -> None:
    np.testing.assert_allclose(analytic, numeric, rtol=2e-2, atol=2e-3)


UNARY = {   # name: (input kind, backward's first operand: "x" or "y")
    "exp": ("any", "y"), "log": ("pos", "x"), "sqrt": ("pos", "y"), "abs": ("any", "x"),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_backward_matches_finite_differences(kernels, name):
    k = get_kernels(kernels)
    kind, first = UNARY[name]
    x, w = inputs(kind, 1), np.random.default_rng(2).standard_normal(N).astype(np.float32)

    def f(v):
        y = T(np.zeros(N))
        getattr(k, name)(T(v), y)
        return y.a

    dx = T(np.zeros(N))
    getattr(k, name + "_bwd")(T(f(x) if first == "y" else x), T(w), dx)
    close(dx.a, fd(f, x, w))


def test_neg_backward(kernels):
    k = get_kernels(kernels)
    x, w = inputs("any", 3), np.random.default_rng(4).standard_normal(N).astype(np.float32)

    def f(v):
        y = T(np.zeros(N))
        k.neg(T(v), y)
        return y.a

    dx = T(np.zeros(N))
    k.neg_bwd(T(w), dx)
    close(dx.a, fd(f, x, w))


BINARY = {"sub": "any", "div": "pos", "maximum": "any", "minimum": "any"}


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_backward_matches_finite_differences(kernels, name):
    k = get_kernels(kernels)
    a, b = inputs("any", 5), inputs(BINARY[name], 6)
    if name in ("maximum", "minimum"):
        b = np.where(np.abs(a - b) < 0.1, a + 0.5, b).astype(np.float32)   # no ties
    w = np.random.default_rng(7).standard_normal(N).astype(np.float32)

    def f(av, bv):
        y = T(np.zeros(N))
        getattr(k, name)(T(av), T(bv), y)
        return y.a

    da, db = T(np.zeros(N)), T(np.zeros(N))
    if name == "sub":
        k.sub_bwd(T(w), da, db)
    else:
        getattr(k, name + "_bwd")(T(a), T(b), T(w), da, db)
    close(da.a, fd(lambda v: f(v, b), a, w))
    close(db.a, fd(lambda v: f(a, v), b, w))


def test_where_backward_matches_finite_differences(kernels):
    k = get_kernels(kernels)
    cond = np.array([1, 0, 0, 1, np.nan, 0, 2, 0, -1, 0, 1, 0], np.float32)  # NaN: nonzero
    a, b = inputs("any", 8), inputs("any", 9)
    w = np.random.default_rng(10).standard_normal(N).astype(np.float32)

    def f(av, bv):
        y = T(np.zeros(N))
        k.where(T(cond), T(av), T(bv), y)
        return y.a

    np.testing.assert_array_equal(f(a, b), np.where(cond != 0, a, b))
    da, db = T(np.zeros(N)), T(np.zeros(N))
    k.where_bwd(T(cond), T(w), da, db)
    close(da.a, fd(lambda v: f(v, b), a, w))
    close(db.a, fd(lambda v: f(a, v), b, w))


def test_ties_nan_and_special_values(kernels):
    """maximum / minimum as NumPy (NaN wins); a tie splits the gradient; log / sqrt / div at
    their special points; the same bits on both sets (the table's parity covers random
    inputs, this the edges)."""
    k = get_kernels(kernels)
    a = np.array([1.0, 2.0, np.nan, 3.0, -1.0, 0.0], np.float32)
    b = np.array([1.0, 5.0, 1.0, np.nan, -1.0, -0.0], np.float32)
    for name, ref in (("maximum", np.maximum(a, b)), ("minimum", np.minimum(a, b))):
        y = T(np.zeros(6))
        getattr(k, name)(T(a), T(b), y)
        np.testing.assert_array_equal(y.a, ref)
        da, db = T(np.zeros(6)), T(np.zeros(6))
        getattr(k, name + "_bwd")(T(a), T(b), T(np.full(6, 2.0)), da, db)
        assert da.a[0] == db.a[0] == 1.0 and da.a[4] == db.a[4] == 1.0   # ties: dy / 2 each
        assert da.a[1] + db.a[1] == 2.0
    x = np.array([0.0, -1.0, np.inf, np.nan, 1.0, 1e-40], np.float32)
    y = T(np.zeros(6))
    k.log(T(x), y)
    assert y.a[0] == -np.inf and np.isnan(y.a[1]) and y.a[2] == np.inf and np.isnan(y.a[3])
    assert y.a[4] == 0.0 and y.a[5] == pytest.approx(np.log(1e-40), rel=1e-6)   # subnormal
    k.sqrt(T(x), y)
    assert y.a[0] == 0.0 and np.isnan(y.a[1]) and y.a[2] == np.inf
    k.div(T(np.array([1, -1, 0, 1, 2, 3], np.float32)), T(np.zeros(6)), y)
    assert y.a[0] == np.inf and y.a[1] == -np.inf and np.isnan(y.a[2])
    k.exp(T(np.array([0.0, -np.inf, np.inf, 100.0, -200.0, np.nan], np.float32)), y)
    assert y.a[0] == 1.0 and y.a[1] == 0.0 and y.a[2] == np.inf and y.a[3] == np.inf
    assert y.a[4] == 0.0 and np.isnan(y.a[5])


def test_outputs_may_alias_inputs(kernels):
    """out = an input, and a backward output = dy: the same results as separate buffers."""
    k = get_kernels(kernels)
    a, b = inputs("any", 11), inputs("pos", 12)
    want = T(np.zeros(N))
    k.div(T(a), T(b), want)
    t = T(a)
    k.div(t, T(b), t)
    np.testing.assert_array_equal(t.a, want.a)
    for name in ("maximum_bwd", "div_bwd", "minimum_bwd"):
        da, db = T(np.zeros(N)), T(np.zeros(N))
        getattr(k, name)(T(a), T(b), T(b), da, db)            # dy = b
        dy = T(b)
        getattr(k, name)(T(a), T(b), dy, dy, T(np.zeros(N)))   # da is dy
        np.testing.assert_array_equal(dy.a, da.a, err_msg=name)
        dy = T(b)
        getattr(k, name)(T(a), T(b), dy, T(np.zeros(N)), dy)   # db is dy
        np.testing.assert_array_equal(dy.a, db.a, err_msg=name)
    dy = T(a)
    k.sub_bwd(dy, None, dy)
    np.testing.assert_array_equal(dy.a, -a)
    c = T((np.arange(N) % 2).astype(np.float32))
    out = T(a)
    k.where(c, out, T(b), out)
    np.testing.assert_array_equal(out.a, np.where(c.a != 0, a, b))
