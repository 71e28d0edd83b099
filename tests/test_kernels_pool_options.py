"""maxpool2d's dilation and ceil_mode, avgpool2d's ceil_mode and count_include_pad, and the
adaptive pooling kernels: C vs NumPy vs PyTorch (values, argmax with NaN, ties and -inf,
gradients), the 2x2 fast path next to clipped windows, finite differences of the NumPy
reference, thread-count independence, and bad calls refused on both sets."""

from __future__ import annotations

import numpy as np
import pytest

from qorus_core.errors import KernelError
from qorus_core.kernels.decl.conv import pool_out
from qorus_core.tensor import Tensor

RNG = np.random.default_rng(0)


def T(a: np.ndarray) -> Tensor:
    return Tensor.of(np.array(a, copy=True))


def _x(shape=(3, 2, 9, 8)) -> np.ndarray:
    """Random planes with PyTorch's edge cases: an all -inf corner, NaNs, ties."""
    x = RNG.standard_normal(shape).astype(np.float32)
    x[0, 0, :3, :3] = -np.inf
    x[1, 1, 2, 4] = np.nan
    x[1, 0, 0, 1] = x[1, 0, 4, 3] = x[1, 0, 5, 3] = np.nan
    x[2, 0, 1, 1:4] = 0.5
    x[2, 1, 6:, 5:] = 0.25
    return x


# (kernel, stride, padding, dilation, ceil_mode)
MAX = [((3, 3), (2, 2), (1, 1), (2, 2), False), ((2, 2), (2, 2), (0, 0), (1, 1), True),
       ((3, 2), (2, 3), (1, 1), (1, 2), True), ((2, 3), (1, 2), (1, 1), (3, 1), True),
       ((4, 4), (3, 3), (2, 2), (1, 1), True)]
MAX_IDS = ["dilated", "2x2-ceil", "mixed", "dilated-stride1", "4x4-s3-ceil"]


def _max_run(k, x, geo, dy=None):
    size, st, pd, dl, ceil = geo
    B, C, H, W = x.shape
    Ho, Wo = (pool_out(n, size[i], st[i], pd[i], dl[i], ceil) for i, n in enumerate((H, W)))
    y, am = T(np.zeros((B, C, Ho, Wo), np.float32)), T(np.zeros((B, C, Ho, Wo), np.int32))
    k.maxpool2d(T(x), y, am, size, st, pd, dl, ceil)
    dx = T(np.full(x.shape, 5.0, np.float32))
    k.maxpool2d_bwd(T(np.ones((B, C, Ho, Wo), np.float32) if dy is None else dy), am, dx)
    return y.a, am.a, dx.a


@pytest.mark.parametrize("geo", MAX, ids=MAX_IDS)
def test_maxpool_options_c_numpy_and_torch(geo, ck, nk):
    torch = pytest.importorskip("torch")
    x = _x()
    got, ref = _max_run(ck, x, geo), _max_run(nk, x, geo)
    for name, g, r in zip(("y", "argmax", "dx"), got, ref):
        np.testing.assert_array_equal(g, r, err_msg=name)
    size, st, pd, dl, ceil = geo
    yt, it = torch.nn.functional.max_pool2d(torch.tensor(x), size, st, pd, dl, ceil_mode=ceil,
                                            return_indices=True)
    np.testing.assert_array_equal(got[0], yt.numpy())
    np.testing.assert_array_equal(got[1], it.numpy())


def test_the_2x2_fast_path_and_the_general_loop_agree(ck, nk):
    """Even planes take the 2x2 stride-2 fast path, odd ones with ceil_mode the general loop
    (clipped last windows): both match NumPy and PyTorch bit for bit."""
    torch = pytest.importorskip("torch")
    for shape in ((3, 2, 8, 8), (3, 2, 9, 7)):
        x = _x(shape)
        for ceil in (False, True):
            geo = ((2, 2), (2, 2), (0, 0), (1, 1), ceil)
            got, ref = _max_run(ck, x, geo), _max_run(nk, x, geo)
            yt, it = torch.nn.functional.max_pool2d(torch.tensor(x), 2, 2, ceil_mode=ceil,
                                                    return_indices=True)
            for g, r, t in zip(got, ref, (yt.numpy(), it.numpy(), None)):
                np.testing.assert_array_equal(g, r)
                if t is not None:
                    np.testing.assert_array_equal(g, t)


AVG = [((3, 3), (2, 2), (1, 1), True, True), ((3, 2), (2, 2), (1, 1), False, False),
       ((3, 3), (2, 2), (1, 1), True, False), ((4, 4), (3, 3), (2, 1), True, True),
       ((2, 2), (2, 2), (0, 0), True, False)]
AVG_IDS = ["ceil", "no-pad-count", "ceil-no-pad-count", "4x4-s3-ceil", "2x2-ceil"]


def _avg_run(k, x, geo, dy):
    size, st, pd, ceil, inc = geo
    y = T(np.zeros(dy.shape, np.float32))
    k.avgpool2d(T(x), y, size, st, pd, ceil, inc)
    dx = T(np.full(x.shape, 5.0, np.float32))
    k.avgpool2d_bwd(T(dy), dx, size, st, pd, ceil, inc)
    return y.a, dx.a


def _avg_case(geo, shape=(2, 3, 9, 8)):
    size, st, pd, ceil, _ = geo
    Ho, Wo = (pool_out(n, size[i], st[i], pd[i], 1, ceil) for i, n in enumerate(shape[2:]))
    x = RNG.standard_normal(shape).astype(np.float32)
    return x, RNG.standard_normal(shape[:2] + (Ho, Wo)).astype(np.float32)


@pytest.mark.parametrize("geo", AVG, ids=AVG_IDS)
def test_avgpool_options_c_numpy_and_torch(geo, ck, nk):
    torch = pytest.importorskip("torch")
    x, dy = _avg_case(geo)
    got, ref = _avg_run(ck, x, geo, dy), _avg_run(nk, x, geo, dy)
    for name, g, r in zip(("y", "dx"), got, ref):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6, err_msg=name)
    size, st, pd, ceil, inc = geo
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.avg_pool2d(xt, size, st, pd, ceil_mode=ceil, count_include_pad=inc)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(got[0], yt.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1], xt.grad.numpy(), rtol=1e-5, atol=1e-6)


# (input shape, output size)
ADAPTIVE = [((2, 3, 7, 5), (3, 2)), ((2, 2, 9, 6), (4, 6)), ((1, 2, 3, 4), (5, 7)),
            ((3, 2, 1, 9), (1, 4)), ((2, 2, 8, 8), (1, 1))]
ADAPTIVE_IDS = ["shrink", "mixed", "grow", "row", "global"]


def _adaptive_run(k, x, out, dy):
    B, C = x.shape[:2]
    y, ym = T(np.zeros((B, C) + out, np.float32)), T(np.zeros((B, C) + out, np.float32))
    am = T(np.zeros((B, C) + out, np.int32))
    k.adaptive_avgpool2d(T(x), y)
    dx, dxm = T(np.full(x.shape, 5.0, np.float32)), T(np.full(x.shape, 5.0, np.float32))
    k.adaptive_avgpool2d_bwd(T(dy), dx)
    k.adaptive_maxpool2d(T(x), ym, am)
    k.maxpool2d_bwd(T(dy), am, dxm)
    return y.a, dx.a, ym.a, am.a, dxm.a


@pytest.mark.parametrize("shape,out", ADAPTIVE, ids=ADAPTIVE_IDS)
def test_adaptive_c_numpy_and_torch(shape, out, ck, nk):
    torch = pytest.importorskip("torch")
    x = RNG.standard_normal(shape).astype(np.float32)
    if shape[2] > 2 and shape[3] > 3:
        x[0, 0, 1, 1] = x[0, 0, 2, 3] = np.nan
        x[0, 1, :2, :] = 0.75                       # ties
        x[-1, -1, -2:, -3:] = -np.inf
    dy = RNG.standard_normal(shape[:2] + out).astype(np.float32)
    got, ref = _adaptive_run(ck, x, out, dy), _adaptive_run(nk, x, out, dy)
    for name, g, r in zip(("avg", "avg dx", "max", "argmax", "max dx"), got, ref):
        if name.startswith("avg"):
            np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(g, r, err_msg=name)
    xt = torch.tensor(x, requires_grad=True)
    ya = torch.nn.functional.adaptive_avg_pool2d(xt, out)
    ya.backward(torch.tensor(dy))
    np.testing.assert_allclose(got[0], ya.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1], xt.grad.numpy(), rtol=1e-5, atol=1e-6)
    ym, im = torch.nn.functional.adaptive_max_pool2d(torch.tensor(x), out, return_indices=True)
    np.testing.assert_array_equal(got[2], ym.numpy())
    np.testing.assert_array_equal(got[3], im.numpy())


def _fd(f, x: np.ndarray, grad: np.ndarray, r: np.ndarray, eps: float, n: int = 16):
    rng = np.random.default_rng(1)
    flat = x.reshape(-1)
    for i in rng.choice(flat.size, size=min(n, flat.size), replace=False):
        orig = flat[i]
        flat[i] = orig + eps
        lp = float(np.sum(f().astype(np.float64) * r))
        flat[i] = orig - eps
        lm = float(np.sum(f().astype(np.float64) * r))
        flat[i] = orig
        num, got = (lp - lm) / (2 * eps), float(grad.reshape(-1)[i])
        assert abs(num - got) <= 2e-3 + 2e-2 * abs(num), (i, num, got)


def test_gradients_finite_differences(nk):
    x = (np.arange(2 * 2 * 9 * 8, dtype=np.float32) * 0.37 % 5).reshape(2, 2, 9, 8)  # distinct
    geo = MAX[2]
    y, _, _ = _max_run(nk, x, geo)
    dy = RNG.standard_normal(y.shape).astype(np.float32)
    _fd(lambda: _max_run(nk, x, geo)[0], x, _max_run(nk, x, geo, dy)[2], dy, 1e-3)
    ageo = AVG[2]
    xa, dya = _avg_case(ageo)
    _fd(lambda: _avg_run(nk, xa, ageo, dya)[0], xa, _avg_run(nk, xa, ageo, dya)[1], dya, 1e-2)
    out = (4, 3)
    dyd = RNG.standard_normal((2, 2) + out).astype(np.float32)
    grads = _adaptive_run(nk, x, out, dyd)
    _fd(lambda: _adaptive_run(nk, x, out, dyd)[0], x, grads[1], dyd, 1e-2)
    _fd(lambda: _adaptive_run(nk, x, out, dyd)[2], x, grads[4], dyd, 1e-3)


def test_results_do_not_depend_on_the_thread_count(threads):
    x = RNG.standard_normal((17, 3, 9, 8)).astype(np.float32)
    ageo = AVG[2]
    _, dya = _avg_case(ageo, x.shape)
    dyd = RNG.standard_normal((17, 3, 4, 3)).astype(np.float32)
    runs = []
    for n in (1, 2, 3):
        threads.set_threads(n)
        runs.append([*_max_run(threads, x, MAX[0]), *_avg_run(threads, x, ageo, dya),
                     *_adaptive_run(threads, x, (4, 3), dyd)])
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            np.testing.assert_array_equal(a, b)


def test_bad_calls_raise_kernel_errors(ck, nk):
    x = T(np.zeros((2, 3, 2, 6), np.float32))
    for k in (ck, nk):
        with pytest.raises(KernelError, match="holds padding only"):
            k.maxpool2d(x, T(np.zeros((2, 3, 1, 3), np.float32)),
                        T(np.zeros((2, 3, 1, 3), np.int32)), (2, 2), (1, 2), (1, 0), (3, 1))
        with pytest.raises(KernelError, match=r"must be \(2, 3, 2, 3\)"):       # ceil: 2 rows
            k.avgpool2d(x, T(np.zeros((2, 3, 1, 3), np.float32)), (2, 2), (2, 2), (1, 0), True)
        with pytest.raises(KernelError, match="dilation"):
            k.maxpool2d(x, T(np.zeros((2, 3, 1, 3), np.float32)),
                        T(np.zeros((2, 3, 1, 3), np.int32)), (2, 2), (2, 2), (0, 0), (0, 1))
        with pytest.raises(KernelError, match="planes not empty"):
            k.adaptive_avgpool2d(x, T(np.zeros((2, 3, 0, 2), np.float32)))
        with pytest.raises(KernelError, match="int32"):
            k.adaptive_maxpool2d(x, T(np.zeros((2, 3, 2, 2), np.float32)),
                                 T(np.zeros((2, 3, 2, 2), np.float32)))
