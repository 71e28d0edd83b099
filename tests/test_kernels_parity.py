"""C kernels against the NumPy reference, kernel by kernel; skipped (with the reason) only
when the C library is unavailable.

Tolerances (float32): bit-identical where both sides do the same IEEE operations in the same
order (add, mul, scale, axpy, fill, copy, relu and the *_bwd without exp, bias_add, embedding,
dropout masks, SGD, Adam/AdamW); rtol 1e-5 / atol 1e-6 where an exp/tanh/erf or a reduction
order differs (exp activations, softmax, norms, losses); GEMM within 1e-5 * sqrt(K) of NumPy.
NaN: elementwise kernels propagate it like NumPy (relu(NaN) = NaN; relu_bwd masks a NaN input
to 0 * dy; softmax/CE rows with a NaN are NaN); gemm with beta = 0 never reads C.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from qorus_core.errors import KernelError
from qorus_core.kernels import NumpyKernels, c_status, get_kernels
from qorus_core.tensor import Tensor

SHAPES = [(1, 1), (3, 5), (7, 33), (37, 129), (130, 257), (300, 701)]   # last: threaded path
EDGE = np.array([0.0, -0.0, 1e-30, -1e-30, 1e-7, -1e-7, 0.3, -0.3, 1.0, -1.0, 5.0, -5.0,
                 20.0, -20.0, 88.0, -88.0, 100.0, -100.0, 1e6, -1e6], np.float32)
FLOAT_OPS = dict(rtol=1e-5, atol=1e-6)


def rnd(shape, seed=0, scale=1.0, dtype=np.float32):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


def with_edges(shape, seed=0, scale=3.0):
    x = rnd(shape, seed, scale).reshape(-1)
    k = min(x.size, EDGE.size)
    x[:k] = EDGE[:k]
    return x.reshape(shape)


def T(a):
    return Tensor(np.array(a, copy=True))


def both(ck, nk, kernel, arrays, *scalars):
    """Run `kernel` on fresh copies for each set; return (C tensors, NumPy tensors, results)."""
    tc, tn = [T(a) for a in arrays], [T(a) for a in arrays]
    rc = getattr(ck, kernel)(*tc, *scalars)
    with np.errstate(all="ignore"):            # NumPy warns on exp overflow; C does not
        rn = getattr(nk, kernel)(*tn, *scalars)
    return tc, tn, rc, rn


# ----------------------------------------------------------------------------- gemm
GEMM_DIMS = [(1, 1, 1), (3, 5, 7), (7, 33, 37), (37, 129, 130), (130, 257, 129), (6, 16, 300),
             (128, 512, 784), (512, 784, 128), (128, 10, 256),
             (1, 77, 130), (2, 33, 9), (3, 100, 64), (4, 257, 31), (1, 2000, 515)]   # skinny


@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("mnk", GEMM_DIMS)
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (0.5, 0.0), (1.0, 1.0), (-0.7, 0.3)])
def test_gemm(ck, nk, ta, tb, mnk, alpha, beta):
    m, n, k = mnk
    a = rnd((k, m) if ta else (m, k), 1)
    b = rnd((n, k) if tb else (k, n), 2)
    c0 = rnd((m, n), 3)
    tc, tn, _, _ = both(ck, nk, "gemm", [a, b, c0], ta, tb, alpha, beta)
    ref = alpha * ((a.T if ta else a).astype(np.float64) @ (b.T if tb else b)) + beta * c0
    tol = 1e-5 * np.sqrt(k) * (abs(alpha) + abs(beta) + 1)
    np.testing.assert_allclose(tc[2].a, tn[2].a, rtol=1e-5, atol=tol)
    np.testing.assert_allclose(tc[2].a, ref, rtol=1e-5, atol=tol)


@pytest.mark.parametrize("mnk", [(7, 33, 37), (130, 257, 300)])
def test_simd_paths_and_threads(threads, nk, mnk):
    """GEMM: same result for 1-3 threads; exp kernels (SiLU, sigmoid, softmax, cross-entropy):
    portable and AVX2 bit-identical, edge values included; the exact GELU (FMA erf on the SIMD
    tiers) within decl/act.py's GELU_TOL of portable."""
    ck, (m, n, k) = threads, mnk
    a, b, x = rnd((m, k), 1), rnd((k, n), 2), with_edges((m, n), 3, 5.0)
    results, vec = [], []
    for path in ("portable", "auto"):
        ck.set_simd_path(path)
        for nt in (1, 2, 3):
            ck.set_threads(nt)
            c = T(np.zeros((m, n), np.float32))
            ck.gemm(T(a), T(b), c, False, False, 1.0, 0.0)
            results.append(c.a.copy())
        assert all(np.array_equal(results[-1], r) for r in results[-3:])
        ys = [T(np.zeros((m, n), np.float32)) for _ in range(6)]
        ck.gelu(T(x), ys[0])
        ck.silu_bwd(T(x), T(a[:, :1] * x), ys[1])
        ck.softmax(T(x), ys[2])
        loss = ck.cross_entropy(T(x), T(np.arange(m, dtype=np.int32) % n), ys[3], 0.1)
        ck.silu(T(x), ys[4])
        ck.sigmoid(T(x), ys[5])
        vec.append([y.a for y in ys] + [loss])
    assert all(np.array_equal(p, q) for p, q in zip(vec[0][1:], vec[1][1:]))
    from qorus_core.kernels.decl.act import GELU_TOL
    np.testing.assert_allclose(vec[1][0], vec[0][0], rtol=GELU_TOL[0], atol=GELU_TOL[1])
    ref = T(np.zeros((m, n), np.float32))
    nk.gemm(T(a), T(b), ref)
    for r in results:
        np.testing.assert_allclose(r, ref.a, rtol=1e-5, atol=1e-5 * np.sqrt(k))


def test_gemm_nan_rank3_overlap_and_errors(ck):
    a, b = rnd((5, 7), 1), rnd((7, 9), 2)
    c = T(np.full((5, 9), np.nan, np.float32))
    ck.gemm(T(a), T(b), c)
    assert np.isfinite(c.a).all()                # beta = 0: C is never read
    a[2, 3] = np.nan
    ck.gemm(T(a), T(b), c)
    assert np.isnan(c.a[2]).all() and np.isfinite(np.delete(c.a, 2, axis=0)).all()
    a = rnd((2, 3, 8), 1)             # seen as (6, 8)
    b = rnd((8, 4), 2)
    c = T(np.zeros((2, 3, 4), np.float32))
    ck.gemm(T(a), T(b), c)
    np.testing.assert_allclose(c.a.reshape(6, 4), a.reshape(6, 8) @ b, rtol=1e-5, atol=1e-5)
    sq = T(rnd((6, 6), 3))            # C aliases A: served by the NumPy fallback
    expect = sq.a @ sq.a
    ck.gemm(sq, T(sq.a), sq)
    np.testing.assert_allclose(sq.a, expect, rtol=1e-5, atol=1e-5)
    with pytest.raises(KernelError, match=r"gemm: .*\(3, 4\).*\(5, 6\)"):
        ck.gemm(T(rnd((3, 4))), T(rnd((5, 6))), T(np.zeros((3, 6), np.float32)))
    with pytest.raises(KernelError, match="gemm"):
        ck.gemm(T(rnd((3, 4))), T(rnd((4, 6))), T(np.zeros((3, 5), np.float32)))
    with pytest.raises(KernelError, match="gemm"):
        ck.gemm(T(rnd((3, 4))), T(rnd((4, 6))), T(np.zeros((6, 3), np.float32)), True, False)


# ----------------------------------------------------------------------------- elementwise
@pytest.mark.parametrize("shape", SHAPES)
def test_elementwise_exact(ck, nk, shape):
    a, b = with_edges(shape, 1), rnd(shape, 2)
    for kernel, arrays, scalars, out in [
        ("add", [a, b, np.zeros(shape, np.float32)], (), 2),
        ("mul", [a, b, np.zeros(shape, np.float32)], (), 2),
        ("relu", [a, np.zeros(shape, np.float32)], (), 1),
        ("relu_bwd", [a, b, np.zeros(shape, np.float32)], (), 2),
        ("sigmoid_bwd", [a, b, np.zeros(shape, np.float32)], (), 2),
        ("tanh_bwd", [a, b, np.zeros(shape, np.float32)], (), 2),
        ("copy", [a, np.zeros(shape, np.float32)], (), 1),
    ]:
        tc, tn, _, _ = both(ck, nk, kernel, arrays, *scalars)
        np.testing.assert_array_equal(tc[out].a, tn[out].a, err_msg=kernel)
    for alpha in (0.0, -1.5, 3.25):
        outs = []
        for k in (ck, nk):
            x, y, f = T(a), T(b), T(b)
            k.scale(x, alpha)
            k.axpy(alpha, T(a), y)
            k.fill(f, alpha)
            outs.append(np.concatenate([x.a.ravel(), y.a.ravel(), f.a.ravel()]))
        np.testing.assert_array_equal(*outs)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kernel,extra", [("gelu", (False,)), ("gelu", (True,)), ("sigmoid", ()),
                                          ("silu", ()), ("tanh", ())])
def test_activations(ck, nk, shape, kernel, extra):
    x = with_edges(shape, 4)
    tc, tn, _, _ = both(ck, nk, kernel, [x, np.zeros(shape, np.float32)], *extra)
    np.testing.assert_allclose(tc[1].a, tn[1].a, **FLOAT_OPS)
    dy = rnd(shape, 5)
    bwd = kernel + "_bwd"
    first = tn[1].a if kernel in ("sigmoid", "tanh") else x    # these take y, others x
    tc, tn, _, _ = both(ck, nk, bwd, [first, dy, np.zeros(shape, np.float32)], *extra)
    # tanh-GELU backward: 1 - tanh^2 cancels for |x| > 3 and is scaled by ~x^3 (both sides use
    # the same formula; one ulp of tanh there is ~1e-6 absolute)
    tol = dict(rtol=1e-5, atol=2e-5) if extra == (True,) else FLOAT_OPS
    np.testing.assert_allclose(tc[2].a, tn[2].a, **tol)


def _gelu_ref(x: np.ndarray, approximate: bool) -> tuple[np.ndarray, np.ndarray]:
    """GELU and its derivative in float64 (math.erf / math.tanh): the accuracy oracle."""
    out = []
    for v in x.astype(np.float64):
        if approximate:
            c = math.sqrt(2.0 / math.pi)
            th = math.tanh(c * (v + 0.044715 * v ** 3))
            out.append((0.5 * v * (1 + th),
                        0.5 * (1 + th) + 0.5 * v * (1 - th * th) * c * (1 + 3 * 0.044715 * v * v)))
        else:
            cdf = 0.5 * (1 + math.erf(v / math.sqrt(2.0)))
            out.append((v * cdf, cdf + v * math.exp(-0.5 * v * v) / math.sqrt(2 * math.pi)))
    y, g = np.array(out).T
    return y, g


GELU_X = np.concatenate([np.linspace(-9, 9, 3001), [0.9219, 0.921875 * math.sqrt(2), 3.92 * math.sqrt(2),
                                                    1e-30, -1e-30, 1e-7, -1e-7, 30.0, -30.0]])


@pytest.mark.parametrize("approximate", [False, True])
def test_gelu_accuracy(threads, nk, approximate):
    """GELU forward and backward of both sets (C: portable and SIMD, the tanh form bit-identical;
    the exact one is held to its own bound in tests/test_gelu_accuracy.py) against
    float64 math.erf / math.tanh. Bound |err| <= 2e-6 |ref| + 1e-7 |x| (forward) and
    2e-6 |ref| + 1e-7 (1 + x^2) (backward): erf is within 1.35 ulp, and 1 + erf(x) cancels
    for x < 0 (one ulp of erf near -1 is 6e-8, then scaled by x / 2). tanh-GELU backward:
    1 - tanh^2 also cancels (x^3 scaling), so 4e-7 (1 + |x|^3) there."""
    x = GELU_X.astype(np.float32)
    y_ref, g_ref = _gelu_ref(x, approximate)
    dy = np.ones_like(x)
    xd = np.abs(x.astype(np.float64))
    fwd_tol = 2e-6 * np.abs(y_ref) + 1e-7 * xd
    bwd_tol = 2e-6 * np.abs(g_ref) + (4e-7 * (1 + xd ** 3) if approximate else 1e-7 * (1 + xd * xd))
    got = []
    for ks, path in ((threads, "portable"), (threads, "auto"), (nk, None)):
        if path:
            ks.set_simd_path(path)
        y, dx = T(np.zeros_like(x)), T(np.zeros_like(x))
        ks.gelu(T(x), y, approximate)
        ks.gelu_bwd(T(x), T(dy), dx, approximate)
        for got_, ref, tol in ((y.a, y_ref, fwd_tol), (dx.a, g_ref, bwd_tol)):
            assert (np.abs(got_ - ref) <= tol).all(), (ks.name, path, np.max(np.abs(got_ - ref) / tol))
        got.append((y.a, dx.a))
    if approximate:
        assert np.array_equal(got[0][0], got[1][0]) and np.array_equal(got[0][1], got[1][1])


def test_gelu_edges(ck, nk):
    """0 and -0 give +-0, +-inf give inf / NaN (inf * 0, as torch), NaN propagates forward and
    backward, huge |x| saturate (x or -0), for both sets and both forms."""
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e6, -1e6, 1e30, -1e30], np.float32)
    for ks in (ck, nk):
        for approximate in (False, True):
            y, dx = T(np.zeros_like(x)), T(np.zeros_like(x))
            with np.errstate(all="ignore"):
                ks.gelu(T(x), y, approximate)
                ks.gelu_bwd(T(x), T(np.ones_like(x)), dx, approximate)
            np.testing.assert_array_equal(y.a[[0, 1, 2, 5, 7]], x[[0, 1, 2, 5, 7]])
            assert np.signbit(y.a[1]) and np.isnan(y.a[3]) and np.isnan(y.a[4])
            assert y.a[6] == 0.0 and y.a[8] == 0.0, (ks.name, approximate, y.a)
            np.testing.assert_array_equal(dx.a[[0, 1, 5, 6]], [0.5, 0.5, 1.0, 0.0])
            assert np.isnan(dx.a[4]), (ks.name, approximate)


def test_numpy_erf_ulp(nk):
    """The reference erf (the formula of the C kernels) is within 1.5 ulp of math.erf on a
    dense grid, tiny and saturated values included."""
    x = np.concatenate([np.linspace(0, 6, 60001), np.geomspace(1e-30, 1, 2001)]).astype(np.float32)
    x = np.concatenate([x, -x])
    e = np.empty_like(x)
    nk._erf(x, e)
    ref = np.array([math.erf(v) for v in x.astype(np.float64)])
    ulp = np.abs(e - ref) / np.spacing(np.abs(ref).astype(np.float32))
    assert ulp.max() <= 1.5, (ulp.max(), x[np.argmax(ulp)])


def test_nan_and_inf_propagation(ck, nk):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0], np.float32)
    for kernel, extra in [("relu", ()), ("gelu", (False,)), ("gelu", (True,)), ("sigmoid", ()),
                          ("silu", ()), ("tanh", ())]:
        tc, tn, _, _ = both(ck, nk, kernel, [x, np.zeros_like(x)], *extra)
        assert np.isnan(tc[1].a[0]), kernel                         # NaN in, NaN out
        np.testing.assert_allclose(tc[1].a[1:], tn[1].a[1:], err_msg=kernel, **FLOAT_OPS)
    dx = T(np.zeros_like(x))
    ck.relu_bwd(T(x), T(np.ones_like(x)), dx)                       # NaN input: masked
    np.testing.assert_array_equal(dx.a, [0, 1, 0, 0, 0, 1])


def test_in_place(ck, nk):
    x = with_edges((37, 129), 6)
    for kernel in ("relu", "sigmoid", "silu", "tanh", "gelu", "softmax"):
        tc, yn = T(x), T(x)
        getattr(ck, kernel)(tc, tc)
        with np.errstate(all="ignore"):
            getattr(nk, kernel)(T(x), yn)
        np.testing.assert_allclose(tc.a, yn.a, err_msg=kernel, **FLOAT_OPS)
    a, b = T(x), T(rnd(x.shape, 7))
    expect = a.a + b.a
    ck.add(a, b, a)
    np.testing.assert_array_equal(a.a, expect)


# ----------------------------------------------------------------------------- bias / col_sum
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("beta", [0.0, 1.0, 0.5])
def test_bias_add_col_sum(ck, nk, shape, beta):
    y, bias = rnd(shape, 1), rnd(shape[1:], 2)
    tc, tn, _, _ = both(ck, nk, "bias_add", [y, bias])
    np.testing.assert_array_equal(tc[0].a, tn[0].a)
    tc, tn, _, _ = both(ck, nk, "col_sum", [y, rnd(shape[1:], 3)], beta)
    np.testing.assert_allclose(tc[1].a, tn[1].a, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n", [1, 5, 4097, 300_001])
def test_sumsq(ck, nk, n):
    x = rnd((n,), 8, 3.0)
    ref = float(np.sum(x.astype(np.float64) ** 2))
    assert ck.sumsq(T(x)) == pytest.approx(ref, rel=1e-6)
    assert ck.sumsq(T(x)) == pytest.approx(nk.sumsq(T(x)), rel=1e-5)
    assert np.isnan(ck.sumsq(T(np.where(np.arange(n) == n // 2, np.nan, x))))   # NaN in, NaN out


def test_reductions_reproducible_across_threads(threads):
    ck = threads
    x, t = rnd((700, 513), 9, 2.0), np.random.default_rng(1).integers(0, 513, 700, np.int32)
    seen = []
    for nt in (1, 2, 3):
        ck.set_threads(nt)
        cs = T(np.zeros(513, np.float32))
        ck.col_sum(T(x), cs)
        d = T(np.zeros_like(x))
        loss = ck.cross_entropy(T(x), T(t), d, 0.1)
        seen.append((ck.sumsq(T(x)), cs.a.copy(), loss, d.a.copy(), ck.mse(T(x), T(x * 0.5), None)))
    for s in seen[1:]:
        assert s[0] == seen[0][0] and s[2] == seen[0][2] and s[4] == seen[0][4]
        np.testing.assert_array_equal(s[1], seen[0][1])
        np.testing.assert_array_equal(s[3], seen[0][3])


# ----------------------------------------------------------------------------- row-wise
@pytest.mark.parametrize("shape", SHAPES)
def test_softmax(ck, nk, shape):
    x = with_edges(shape, 10, 5.0)
    tc, tn, _, _ = both(ck, nk, "softmax", [x, np.zeros(shape, np.float32)])
    np.testing.assert_allclose(tc[1].a, tn[1].a, **FLOAT_OPS)
    dy = rnd(shape, 11)
    tc, tn, _, _ = both(ck, nk, "softmax_bwd", [tn[1].a, dy, np.zeros(shape, np.float32)])
    np.testing.assert_allclose(tc[2].a, tn[2].a, rtol=1e-5, atol=1e-5)
    x[0, 0], y = np.nan, T(np.zeros(shape, np.float32))
    ck.softmax(T(x), y)
    assert np.isnan(y.a[0]).all() and np.isfinite(y.a[1:]).all()


@pytest.mark.parametrize("shape", SHAPES)
def test_layernorm(ck, nk, shape):
    r, n = shape
    x = rnd(shape, 12, 4.0) + 3.0
    g, b = rnd((n,), 13) + 1.0, rnd((n,), 14)
    z, zr = np.zeros(shape, np.float32), np.zeros(r, np.float32)
    tc, tn, _, _ = both(ck, nk, "layernorm", [x, g, b, z, zr, zr], 1e-5)
    for i in (3, 4, 5):                       # y, mean, rstd
        np.testing.assert_allclose(tc[i].a, tn[i].a, rtol=1e-5, atol=1e-5)
    dy = rnd(shape, 15)
    dg0, db0 = rnd((n,), 16), rnd((n,), 17)   # accumulated into
    tc, tn, _, _ = both(ck, nk, "layernorm_bwd", [x, g, tn[4].a, tn[5].a, dy, z, dg0, db0])
    for i in (5, 6, 7):                       # dx, dgamma, dbeta
        np.testing.assert_allclose(tc[i].a, tn[i].a, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", SHAPES)
def test_rmsnorm(ck, nk, shape):
    r, n = shape
    x, w = rnd(shape, 40, 3.0), rnd((n,), 41) + 1.0
    tc, tn, _, _ = both(ck, nk, "rmsnorm", [x, w, np.zeros(shape, np.float32),
                                            np.zeros(r, np.float32)], 1e-6)
    for i in (2, 3):
        np.testing.assert_allclose(tc[i].a, tn[i].a, rtol=1e-5, atol=1e-6)
    dy, dw0 = rnd(shape, 42), rnd((n,), 43)
    rstd = tn[3].a
    tc, tn, _, _ = both(ck, nk, "rmsnorm_bwd", [x, w, rstd, dy, np.zeros(shape, np.float32), dw0])
    np.testing.assert_allclose(tc[4].a, tn[4].a, rtol=1e-4, atol=1e-5)      # dx
    np.testing.assert_allclose(tc[5].a, tn[5].a, rtol=1e-4, atol=1e-4)      # dweight (+=)
    dw = T(dw0)
    ck.rmsnorm_bwd(T(x), T(w), T(rstd), T(dy), None, dw)                     # no dx
    np.testing.assert_allclose(dw.a, tc[5].a, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("n,vocab,dim", [(1, 1, 1), (7, 5, 33), (300, 50, 300), (64, 1000, 4096)])
def test_embedding(ck, nk, n, vocab, dim):
    ids = np.random.default_rng(44).integers(0, vocab, n).astype(np.int32)   # with repeats
    w = rnd((vocab, dim), 45)
    tc, tn, _, _ = both(ck, nk, "embedding", [ids, w, np.zeros((n, dim), np.float32)])
    np.testing.assert_array_equal(tc[2].a, tn[2].a)
    tc, tn, _, _ = both(ck, nk, "embedding_bwd", [ids, rnd((n, dim), 46), rnd((vocab, dim), 47)])
    np.testing.assert_array_equal(tc[2].a, tn[2].a)        # same accumulation order
    bad = ids.copy()
    bad[-1] = vocab
    with pytest.raises(KernelError, match=rf"embedding: token id {vocab} outside \[0, {vocab}\)"):
        ck.embedding(T(bad), T(w), T(np.zeros((n, dim), np.float32)))
    bad[-1] = -1
    with pytest.raises(KernelError, match="embedding_bwd: token id -1"):
        ck.embedding_bwd(T(bad), T(rnd((n, dim), 46)), T(w))


# ----------------------------------------------------------------------------- randomness
@pytest.mark.parametrize("n", [1, 7, 1000, 200_001])
@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.999, 1.0])
@pytest.mark.parametrize("seed", [0, 12345, 2**32 + 5, -3])
def test_dropout_mask_bit_identical(ck, nk, n, p, seed):
    tc, tn, _, _ = both(ck, nk, "dropout_mask", [np.zeros(n, np.float32)], p, seed)
    np.testing.assert_array_equal(tc[0].a, tn[0].a)
    if n > 1000 and 0 < p < 1:
        assert abs((tc[0].a == 0).mean() - p) < 0.01


# ----------------------------------------------------------------------------- losses
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (7, 33), (128, 10), (130, 257), (600, 300)])
@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("with_grad", [True, False])
def test_cross_entropy(ck, nk, shape, eps, with_grad):
    n, c = shape
    x = rnd(shape, 18, 4.0)
    x[0, 0] = 1e4 if c > 1 else x[0, 0]       # a huge logit: log-sum-exp stays finite
    t = np.random.default_rng(19).integers(0, c, n).astype(np.int32)
    d = np.zeros(shape, np.float32)
    tc, tn = [T(x), T(t), T(d)], [T(x), T(t), T(d)]
    lc = ck.cross_entropy(tc[0], tc[1], tc[2] if with_grad else None, eps)
    ln = nk.cross_entropy(tn[0], tn[1], tn[2] if with_grad else None, eps)
    x64 = x.astype(np.float64)
    lse = np.log(np.exp(x64 - x64.max(1, keepdims=True)).sum(1)) + x64.max(1)
    ref = np.mean((1 - eps) * (lse - x64[np.arange(n), t]) + eps * (lse - x64.mean(1)))
    assert lc == pytest.approx(ref, rel=1e-5, abs=1e-5)
    assert lc == pytest.approx(ln, rel=1e-4, abs=1e-4)
    if with_grad:
        np.testing.assert_allclose(tc[2].a, tn[2].a, rtol=1e-5, atol=1e-7)
    dl = T(x)                                  # dlogits may alias logits
    assert ck.cross_entropy(dl, T(t), dl, eps) == pytest.approx(lc, rel=1e-12)


def test_cross_entropy_errors_and_nan(ck):
    x = T(rnd((4, 3)))
    for match, t, d, eps in [(r"target class out of range \[0, 3\)", [0, 1, 3, 0], None, 0.0),
                             ("target class out of range", [0, -1, 2, 0], None, 0.0),
                             ("3 targets", [0, 1, 2], None, 0.0),
                             ("dlogits", [0, 0, 0, 0], T(np.zeros((4, 2), np.float32)), 0.0),
                             ("label_smoothing", [0, 0, 0, 0], None, 1.5)]:
        with pytest.raises(KernelError, match="cross_entropy: .*" + match):
            ck.cross_entropy(x, T(np.array(t, np.int32)), d, eps)
    x.a[1, 1] = np.nan
    assert np.isnan(ck.cross_entropy(x, T(np.zeros(4, np.int32)), None))


@pytest.mark.parametrize("shape", SHAPES)
def test_mse(ck, nk, shape):
    p, t = rnd(shape, 20), rnd(shape, 21)
    for grad in (True, False):
        dc, dn = T(np.zeros(shape, np.float32)), T(np.zeros(shape, np.float32))
        lc = ck.mse(T(p), T(t), dc if grad else None)
        ln = nk.mse(T(p), T(t), dn if grad else None)
        assert lc == pytest.approx(float(np.mean((p.astype(np.float64) - t) ** 2)), rel=1e-6)
        assert lc == pytest.approx(ln, rel=1e-5)
        np.testing.assert_array_equal(dc.a, dn.a)
    with pytest.raises(KernelError, match="mse"):
        ck.mse(T(p), T(np.zeros(p.size + 1, np.float32)), None)


def test_count_correct(ck, nk):
    x = rnd((130, 7), 22)
    x[0] = [1, 3, 3, 0, 0, 0, 0]               # tie: the first maximum wins
    x[1, 4] = np.nan                           # NaN is the maximum (numpy.argmax)
    t = np.random.default_rng(23).integers(0, 7, 130).astype(np.int32)
    t[0], t[1] = 1, 4
    assert ck.count_correct(T(x), T(t)) == nk.count_correct(T(x), T(t))
    assert ck.count_correct(T(x), T(np.argmax(x, axis=1).astype(np.int32))) == 130
    pytest.raises(KernelError, ck.count_correct, T(x), T(t[:5])).match("count_correct")


# ----------------------------------------------------------------------------- optimizers
@pytest.mark.parametrize("n", [1, 33, 200_003])
@pytest.mark.parametrize("cfg", [
    dict(momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False),
    dict(momentum=0.9, dampening=0.0, weight_decay=1e-2, nesterov=False),
    dict(momentum=0.9, dampening=0.1, weight_decay=0.0, nesterov=False),
    dict(momentum=0.8, dampening=0.0, weight_decay=5e-4, nesterov=True)])
def test_sgd_bit_identical(ck, nk, n, cfg):
    sets = [[T(rnd((n,), 24)), T(np.zeros(n, np.float32))] for _ in range(2)]
    for step in range(4):
        g = rnd((n,), 25 + step)
        for kern, (p, buf) in zip((ck, nk), sets):
            kern.sgd_step(p, T(g), buf, 0.05, first=step == 0, **cfg)
    np.testing.assert_array_equal(sets[0][0].a, sets[1][0].a)
    np.testing.assert_array_equal(sets[0][1].a, sets[1][1].a)


@pytest.mark.parametrize("n", [1, 33, 200_003])
@pytest.mark.parametrize("decoupled,wd", [(False, 0.0), (False, 1e-2), (True, 0.0), (True, 1e-2)])
def test_adam_bit_identical(ck, nk, n, decoupled, wd):
    sets = [[T(rnd((n,), 30))] + [T(np.zeros(n, np.float32)) for _ in range(2)] for _ in range(2)]
    for step in range(1, 6):
        g = rnd((n,), 31 + step, 0.1)
        for kern, (p, m, v) in zip((ck, nk), sets):
            kern.adam_step(p, T(g), m, v, 1e-3, 0.9, 0.999, 1e-8, wd, step, decoupled)
    for a, b in zip(*sets):
        np.testing.assert_array_equal(a.a, b.a)


# ----------------------------------------------------------------------------- errors
# Bad arguments (a misfit operand, a read-only output, out-of-range scalars) are derived from
# the kernel table for every kernel, on both sets: tests/test_kernel_table.py.


# ----------------------------------------------------------------------------- binding
def test_binding_surface(threads, tmp_path):
    ck = threads
    reference = {k for k in dir(NumpyKernels) if not k.startswith("_") and k != "name"}
    from qorus_core.kernels.c import CKernels
    defined = {k for cls in CKernels.__mro__ for k in vars(cls)}
    assert reference <= defined, f"not defined by CKernels: {sorted(reference - defined)}"
    with pytest.raises(AttributeError):   # nothing reaches NumPy unseen through a lookup
        _ = ck.no_such_kernel
    assert ck.native <= reference and {"gemm", "cross_entropy", "adam_step"} <= ck.native
    assert ck.name == "c" and ck.library_path.endswith(".so")
    assert isinstance(ck.fallback, NumpyKernels)   # explicit delegation of what C cannot serve
    feats = ck.cpu_features()
    assert {"sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw"} <= set(feats)
    assert ck.simd_path == "portable" or (feats["avx2"] and feats["fma"])
    i = T(np.arange(6, dtype=np.int32))        # non-float32 operands use the fallback
    ck.fill(i, 7)
    assert (i.a == 7).all()
    assert ck.set_threads(1) == 1 and ck.threads == 1
    assert ck.set_threads(3) == 3 and ck.set_threads(0) >= 1   # 0: back to the default
    with pytest.raises(OSError, match="not found"):
        CKernels(path=str(tmp_path / "libqorus.so"))


def test_concurrent_python_threads(ck):
    """ctypes releases the GIL: concurrent calls stay correct (a busy pool runs them inline)."""
    from concurrent.futures import ThreadPoolExecutor

    a, b, x = rnd((130, 300), 50), rnd((300, 257), 51), rnd((400, 513), 52)

    def work(i):
        c = T(np.zeros((130, 257), np.float32))
        ck.gemm(T(a), T(b), c)
        t = T(np.full(400, i, np.int32))
        return c.a.copy(), ck.sumsq(T(x)), ck.cross_entropy(T(x), t, None)

    serial = [work(i) for i in range(8)]
    with ThreadPoolExecutor(4) as ex:
        for got, want in zip(ex.map(work, range(8)), serial):
            np.testing.assert_array_equal(got[0], want[0])
            assert got[1] == want[1] and got[2] == want[2]


# ----------------------------------------------------------------------------- dispatch
def test_dispatch_env(monkeypatch):
    monkeypatch.setenv("QORUS_KERNELS", "numpy")
    assert isinstance(get_kernels(), NumpyKernels)
    monkeypatch.setenv("QORUS_KERNELS", "fortran")
    with pytest.raises(KernelError, match="QORUS_KERNELS"):
        get_kernels()
    for which in ("c", "auto"):                 # "c" without the library: KernelError
        monkeypatch.setenv("QORUS_KERNELS", which)
        if c_status()[0] or which == "auto":
            assert get_kernels().name == ("c" if c_status()[0] else "numpy")
        else:
            pytest.raises(KernelError, get_kernels).match("unavailable")
