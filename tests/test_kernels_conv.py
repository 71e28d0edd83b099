"""Conv2d, pooling and BatchNorm2d kernels: C vs NumPy on odd shapes and every geometry knob,
finite-difference gradients of the NumPy reference, edge values, thread-count independence
and argument checks (a bad call raises KernelError, never crashes)."""

from __future__ import annotations

import numpy as np
import pytest

from qorus_core.errors import KernelError
from qorus_core.kernels.decl.conv import out_size
from qorus_core.tensor import Tensor

RNG = np.random.default_rng(0)

# (B, C, H, W, K, (R, S), stride, padding, dilation, groups)
CONVS = [
    (2, 3, 7, 5, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    (3, 4, 9, 7, 6, (3, 2), (2, 1), (1, 1), (1, 2), 2),
    (1, 6, 6, 6, 6, (3, 3), (1, 1), (1, 1), (1, 1), 6),     # depthwise
    (2, 5, 5, 4, 3, (1, 1), (1, 1), (0, 0), (1, 1), 1),     # 1x1: x is its own im2col
    (2, 2, 11, 13, 5, (5, 3), (3, 2), (2, 0), (2, 1), 1),
    (17, 1, 6, 5, 2, (2, 2), (1, 1), (0, 1), (1, 1), 1),    # more images than weight chunks
    (3, 512, 3, 2, 512, (3, 3), (1, 1), (1, 1), (1, 1), 1),  # big weight: one chunk
]
IDS = ["3x3", "groups-dilation-stride", "depthwise", "1x1", "wide-stride", "17-images",
       "big-weight"]


def T(a: np.ndarray) -> Tensor:
    return Tensor.of(np.array(a, copy=True))


def _conv_case(case):
    B, C, H, W, K, (R, S), st, pd, dl, G = case
    Ho, Wo = out_size(H, R, st[0], pd[0], dl[0]), out_size(W, S, st[1], pd[1], dl[1])
    x = RNG.standard_normal((B, C, H, W)).astype(np.float32)
    w = RNG.standard_normal((K, C // G, R, S)).astype(np.float32)
    b = RNG.standard_normal(K).astype(np.float32)
    dy = RNG.standard_normal((B, K, Ho, Wo)).astype(np.float32)
    return x, w, b, dy, dict(stride=st, padding=pd, dilation=dl, groups=G)


def _conv_run(k, x, w, b, dy, geo, with_dx=True, with_db=True):
    y = T(np.zeros(dy.shape, np.float32))
    k.conv2d(T(x), T(w), T(b) if with_db else None, y, **geo)
    dx = T(np.full(x.shape, 7.0, np.float32)) if with_dx else None   # dx is written, not added
    dw, db = T(np.ones_like(w)), T(np.ones_like(b))                  # dw, db are added into
    k.conv2d_bwd(T(x), T(w), T(dy), dx, dw, db if with_db else None, **geo)
    return y.a, None if dx is None else dx.a, dw.a, db.a


@pytest.mark.parametrize("case", CONVS, ids=IDS)
def test_conv2d_c_matches_numpy(case, ck, nk):
    x, w, b, dy, geo = _conv_case(case)
    for with_dx, with_db in ((True, True), (False, False)):
        got = _conv_run(ck, x, w, b, dy, geo, with_dx, with_db)
        ref = _conv_run(nk, x, w, b, dy, geo, with_dx, with_db)
        for name, g, r in zip(("y", "dx", "dw", "db"), got, ref):
            if r is not None:
                np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4, err_msg=name)


def test_conv2d_matches_torch(nk):
    torch = pytest.importorskip("torch")
    x, w, b, dy, geo = _conv_case(CONVS[1])
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = torch.nn.functional.conv2d(xt, wt, bt, geo["stride"], geo["padding"], geo["dilation"],
                                    geo["groups"])
    yt.backward(torch.tensor(dy))
    y, dx, dw, db = _conv_run(nk, x, w, b, dy, geo)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dw - 1, wt.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(db - 1, bt.grad.numpy(), rtol=1e-4, atol=1e-4)


def _fd_check(f, arrays: dict, grads: dict, r: np.ndarray, eps: float = 1e-2, n: int = 8):
    """Central differences in float64 of L = sum(f() * r) against analytic gradients."""
    rng = np.random.default_rng(1)
    for name, a in arrays.items():
        flat = a.reshape(-1)
        for i in rng.choice(flat.size, size=min(n, flat.size), replace=False):
            orig = flat[i]
            flat[i] = orig + eps
            lp = float(np.sum(f().astype(np.float64) * r))
            flat[i] = orig - eps
            lm = float(np.sum(f().astype(np.float64) * r))
            flat[i] = orig
            num, got = (lp - lm) / (2 * eps), float(grads[name].reshape(-1)[i])
            assert abs(num - got) <= 2e-3 + 2e-2 * abs(num), (name, i, num, got)


def test_conv2d_gradients_finite_differences(nk):
    x, w, b, dy, geo = _conv_case(CONVS[1])
    _, dx, dw, db = _conv_run(nk, x, w, b, dy, geo)

    def f():
        y = T(np.zeros(dy.shape, np.float32))
        nk.conv2d(T(x), T(w), T(b), y, **geo)
        return y.a

    _fd_check(f, {"x": x, "w": w, "b": b}, {"x": dx, "w": dw - 1, "b": db - 1}, dy)


POOLS = [((2, 2), (2, 2), (0, 0)), ((3, 2), (2, 2), (1, 1)), ((3, 3), (1, 2), (1, 0))]


def _pool_run(k, x, size, st, pd, dy):
    B, C, H, W = x.shape
    Ho, Wo = out_size(H, size[0], st[0], pd[0]), out_size(W, size[1], st[1], pd[1])
    y, am, ya = (T(np.zeros((B, C, Ho, Wo), dt)) for dt in (np.float32, np.int32, np.float32))
    k.maxpool2d(T(x), y, am, size, st, pd)
    dx, dxa = T(np.full(x.shape, 5.0, np.float32)), T(np.full(x.shape, 5.0, np.float32))
    k.maxpool2d_bwd(T(dy), am, dx)
    k.avgpool2d(T(x), ya, size, st, pd)
    k.avgpool2d_bwd(T(dy), dxa, size, st, pd)
    return y.a, am.a, dx.a, ya.a, dxa.a


@pytest.mark.parametrize("geo", POOLS, ids=["2x2", "3x2-pad", "3x3-stride12"])
def test_pooling_c_matches_numpy_and_torch(geo, ck, nk):
    size, st, pd = geo
    x = RNG.standard_normal((3, 2, 7, 9)).astype(np.float32)
    x[0, 0, :3, :3] = -np.inf          # an all -inf window: its first position wins
    x[1, 1, 2, 4] = np.nan             # NaN wins and propagates
    x[1, 0, 0, 1] = np.nan             # at each position of a 2x2 window, and a later NaN
    x[1, 0, 2, 3] = x[1, 0, 3, 3] = np.nan   # of the same window takes the index
    x[2, 0, 1, 1:3] = 0.5              # ties: the first maximum
    Ho, Wo = out_size(7, size[0], st[0], pd[0]), out_size(9, size[1], st[1], pd[1])
    dy = RNG.standard_normal((3, 2, Ho, Wo)).astype(np.float32)
    got, ref = _pool_run(ck, x, size, st, pd, dy), _pool_run(nk, x, size, st, pd, dy)
    for name, g, r in zip(("max", "argmax", "max dx", "avg", "avg dx"), got, ref):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6, err_msg=name)
    torch = pytest.importorskip("torch")
    xt = torch.tensor(x)
    yt, it = torch.nn.functional.max_pool2d(xt, size, st, pd, return_indices=True)
    np.testing.assert_array_equal(got[0], yt.numpy())
    np.testing.assert_array_equal(got[1], it.numpy())
    ya = torch.nn.functional.avg_pool2d(xt, size, st, pd)
    np.testing.assert_allclose(got[3], ya.numpy(), rtol=1e-5, atol=1e-6)


def test_pool_gradients_finite_differences(nk):
    size, st, pd = POOLS[1]
    x = RNG.standard_normal((2, 2, 6, 7)).astype(np.float32)
    Ho, Wo = out_size(6, 3, 2, 1), out_size(7, 2, 2, 1)
    dy = RNG.standard_normal((2, 2, Ho, Wo)).astype(np.float32)
    _, _, dxm, _, dxa = _pool_run(nk, x, size, st, pd, dy)

    def fa():
        return _pool_run(nk, x, size, st, pd, dy)[3]

    _fd_check(fa, {"x": x}, {"x": dxa}, dy, n=16)
    x = (np.arange(x.size, dtype=np.float32) * 0.37 % 5).reshape(x.shape)  # distinct maxima
    _, _, dxm, _, _ = _pool_run(nk, x, size, st, pd, dy)

    def fm():
        return _pool_run(nk, x, size, st, pd, dy)[0]

    _fd_check(fm, {"x": x}, {"x": dxm}, dy, eps=1e-3, n=16)


def _bn_run(k, x, g, b, dy, train, rm0=0.5, rv0=2.0, with_dx=True):
    C = x.shape[1]
    y, m, r = T(np.zeros_like(x)), T(np.zeros(C, np.float32)), T(np.zeros(C, np.float32))
    rm, rv = T(np.full(C, rm0, np.float32)), T(np.full(C, rv0, np.float32))
    k.batchnorm2d(T(x), T(g), T(b), y, m, r, rm, rv, 1e-5, 0.1, train)
    dx = T(np.zeros_like(x)) if with_dx else None
    dg, db = T(np.ones(C, np.float32)), T(np.ones(C, np.float32))
    k.batchnorm2d_bwd(T(x), T(g), m, r, T(dy), dx, dg, db)
    return y.a, m.a, r.a, rm.a, rv.a, None if dx is None else dx.a, dg.a, db.a


@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (1, 5, 3, 1), (7, 2, 1, 1)])
@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_c_matches_numpy(shape, train, ck, nk):
    x = (RNG.standard_normal(shape) * 3 + 1).astype(np.float32)
    g = RNG.uniform(0.5, 1.5, shape[1]).astype(np.float32)
    b = RNG.standard_normal(shape[1]).astype(np.float32)
    dy = RNG.standard_normal(shape).astype(np.float32)
    for with_dx in (True, False):
        got = _bn_run(ck, x, g, b, dy, train, with_dx=with_dx)
        ref = _bn_run(nk, x, g, b, dy, train, with_dx=with_dx)
        for name, u, v in zip(("y", "mean", "rstd", "running_mean", "running_var", "dx", "dg", "db"),
                              got, ref):
            if v is not None:
                np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-4, err_msg=name)


def test_batchnorm_matches_torch_and_finite_differences(nk):
    torch = pytest.importorskip("torch")
    x = (RNG.standard_normal((4, 3, 5, 6)) * 2 - 1).astype(np.float32)
    g, b = RNG.uniform(0.5, 1.5, 3).astype(np.float32), RNG.standard_normal(3).astype(np.float32)
    dy = RNG.standard_normal(x.shape).astype(np.float32)
    bn = torch.nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(g))
        bn.bias.copy_(torch.tensor(b))
        bn.running_mean.fill_(0.5)
        bn.running_var.fill_(2.0)
    xt = torch.tensor(x, requires_grad=True)
    yt = bn(xt)
    yt.backward(torch.tensor(dy))
    y, _, _, rm, rv, dx, dg, db = _bn_run(nk, x, g, b, dy, True)
    for got, want in ((y, yt.detach()), (rm, bn.running_mean), (rv, bn.running_var),
                      (dx, xt.grad), (dg - 1, bn.weight.grad), (db - 1, bn.bias.grad)):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-4)
    bn.eval()
    ye = _bn_run(nk, x, g, b, dy, False, rm0=0.5, rv0=2.0)[0]
    with torch.no_grad():
        bn.running_mean.fill_(0.5)
        bn.running_var.fill_(2.0)
        np.testing.assert_allclose(ye, bn(torch.tensor(x)).numpy(), rtol=1e-5, atol=1e-5)

    def f():
        return _bn_run(nk, x, g, b, dy, True)[0]

    _fd_check(f, {"x": x, "g": g, "b": b}, {"x": dx, "g": dg - 1, "b": db - 1}, dy)


def test_results_do_not_depend_on_the_thread_count(threads):
    ck = threads
    x, w, b, dy, geo = _conv_case(CONVS[5])
    xb = (RNG.standard_normal((17, 3, 9, 8))).astype(np.float32)
    runs = []
    for n in (1, 2, 3):
        ck.set_threads(n)
        conv = _conv_run(ck, x, w, b, dy, geo)
        bn = _bn_run(ck, xb, np.ones(3, np.float32), np.zeros(3, np.float32), xb * 0.5, True)
        pool = _pool_run(ck, xb, (3, 3), (2, 2), (1, 1), np.ones((17, 3, 5, 4), np.float32))
        runs.append([*conv, *bn, *pool])
    for other in runs[1:]:
        for a, b_ in zip(runs[0], other):
            np.testing.assert_array_equal(a, b_)


def test_bad_calls_raise_kernel_errors(ck, nk):
    x = T(np.zeros((2, 4, 6, 6), np.float32))
    for k in (ck, nk):
        with pytest.raises(KernelError, match="groups"):
            k.conv2d(x, T(np.zeros((4, 3, 3, 3), np.float32)), None,
                     T(np.zeros((2, 4, 4, 4), np.float32)), groups=2)
        with pytest.raises(KernelError, match="output"):
            k.conv2d(x, T(np.zeros((4, 4, 3, 3), np.float32)), None,
                     T(np.zeros((2, 4, 6, 6), np.float32)))
        with pytest.raises(KernelError, match="does not fit"):
            k.conv2d(x, T(np.zeros((4, 4, 9, 9), np.float32)), None,
                     T(np.zeros((2, 4, 1, 1), np.float32)))
        with pytest.raises(KernelError, match="4-D"):
            k.maxpool2d(T(np.zeros((2, 36), np.float32)), T(np.zeros((2, 9), np.float32)),
                        T(np.zeros((2, 9), np.int32)), (2, 2), (2, 2))
        with pytest.raises(KernelError, match="half"):
            k.avgpool2d(x, T(np.zeros((2, 4, 4, 4), np.float32)), (2, 2), (2, 2), (2, 2))
        with pytest.raises(KernelError, match="argmax index"):
            k.maxpool2d_bwd(T(np.ones((2, 4, 3, 3), np.float32)),
                            T(np.full((2, 4, 3, 3), 36, np.int32)), x)
        with pytest.raises(KernelError, match="per channel"):
            c4 = T(np.zeros(4, np.float32))
            k.batchnorm2d(x, c4, T(np.zeros(3, np.float32)), T(np.zeros((2, 4, 6, 6), np.float32)),
                          c4, c4, c4, c4)
