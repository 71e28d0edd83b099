"""conv_transpose2d / conv_transpose2d_bwd kernels: C vs NumPy and PyTorch on odd geometries
(output padding, groups, dilation, 1x1, more images than weight chunks), finite differences
of the NumPy reference, thread-count independence, and bad calls refused."""

from __future__ import annotations

import numpy as np
import pytest

from qorus_core.errors import KernelError
from qorus_core.tensor import Tensor

RNG = np.random.default_rng(0)

# (B, Cin, H, W, Cout, (R, S), stride, padding, output_padding, dilation, groups)
CASES = [
    (2, 3, 4, 5, 4, (3, 3), (1, 1), (1, 1), (0, 0), (1, 1), 1),
    (3, 4, 3, 4, 6, (3, 2), (2, 3), (1, 0), (1, 2), (1, 2), 2),
    (2, 5, 4, 3, 3, (1, 1), (1, 1), (0, 0), (0, 0), (1, 1), 1),      # 1x1: no col2im
    (19, 2, 3, 3, 3, (4, 4), (2, 2), (1, 1), (0, 1), (1, 1), 1),     # more images than chunks
    (2, 6, 3, 3, 6, (3, 3), (1, 1), (1, 1), (0, 0), (1, 1), 6),      # depthwise
]
IDS = ["3x3", "everything", "1x1", "19-images", "depthwise"]


def T(a: np.ndarray) -> Tensor:
    return Tensor.of(np.array(a, copy=True))


def _case(case):
    B, Cin, H, W, Cout, (R, S), st, pd, op, dl, G = case
    Ho = (H - 1) * st[0] - 2 * pd[0] + dl[0] * (R - 1) + op[0] + 1
    Wo = (W - 1) * st[1] - 2 * pd[1] + dl[1] * (S - 1) + op[1] + 1
    x = RNG.standard_normal((B, Cin, H, W)).astype(np.float32)
    w = RNG.standard_normal((Cin, Cout // G, R, S)).astype(np.float32)
    b = RNG.standard_normal(Cout).astype(np.float32)
    dy = RNG.standard_normal((B, Cout, Ho, Wo)).astype(np.float32)
    return x, w, b, dy, dict(stride=st, padding=pd, dilation=dl, groups=G), op


def _run(k, x, w, b, dy, geo, with_dx=True):
    y = T(np.full(dy.shape, 3.0, np.float32))                       # y is written
    k.conv_transpose2d(T(x), T(w), T(b), y, **geo)
    dx = T(np.full(x.shape, 7.0, np.float32)) if with_dx else None
    dw, db = T(np.ones_like(w)), T(np.ones_like(b))                  # dw, db are added into
    k.conv_transpose2d_bwd(T(x), T(w), T(dy), dx, dw, db, **geo)
    return y.a, None if dx is None else dx.a, dw.a, db.a


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_c_matches_numpy_and_torch(case, ck, nk):
    x, w, b, dy, geo, op = _case(case)
    for with_dx in (True, False):
        got, ref = _run(ck, x, w, b, dy, geo, with_dx), _run(nk, x, w, b, dy, geo, with_dx)
        for name, g, r in zip(("y", "dx", "dw", "db"), got, ref):
            if r is not None:
                np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4, err_msg=name)
    torch = pytest.importorskip("torch")
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = torch.nn.functional.conv_transpose2d(xt, wt, bt, geo["stride"], geo["padding"], op,
                                              geo["groups"], geo["dilation"])
    yt.backward(torch.tensor(dy))
    y, dx, dw, db = got if with_dx else _run(ck, x, w, b, dy, geo)
    for g, want in ((y, yt.detach()), (dx, xt.grad), (dw - 1, wt.grad), (db - 1, bt.grad)):
        np.testing.assert_allclose(g, want.numpy(), rtol=1e-4, atol=1e-4)


def test_gradients_finite_differences(nk):
    x, w, b, dy, geo, _ = _case(CASES[1])
    _, dx, dw, db = _run(nk, x, w, b, dy, geo)
    rng = np.random.default_rng(1)

    def loss() -> float:
        y = T(np.zeros(dy.shape, np.float32))
        nk.conv_transpose2d(T(x), T(w), T(b), y, **geo)
        return float(np.sum(y.a.astype(np.float64) * dy))

    for a, g in ((x, dx), (w, dw - 1), (b, db - 1)):
        flat = a.reshape(-1)
        for i in rng.choice(flat.size, size=min(8, flat.size), replace=False):
            orig = flat[i]
            flat[i] = orig + 1e-2
            lp = loss()
            flat[i] = orig - 1e-2
            lm = loss()
            flat[i] = orig
            num = (lp - lm) / 2e-2
            assert abs(num - g.reshape(-1)[i]) <= 2e-3 + 2e-2 * abs(num)


def test_results_do_not_depend_on_the_thread_count(threads):
    x, w, b, dy, geo, _ = _case(CASES[3])
    runs = []
    for n in (1, 2, 3):
        threads.set_threads(n)
        runs.append(_run(threads, x, w, b, dy, geo))
    for other in runs[1:]:
        for a, b_ in zip(runs[0], other):
            np.testing.assert_array_equal(a, b_)


def test_bad_calls_raise_kernel_errors(ck, nk):
    x, w = T(np.zeros((2, 4, 3, 3), np.float32)), T(np.zeros((4, 2, 3, 3), np.float32))
    for k in (ck, nk):
        with pytest.raises(KernelError, match="do not fit a transposed convolution"):
            k.conv_transpose2d(x, w, None, T(np.zeros((2, 2, 9, 9), np.float32)), stride=(2, 2))
        with pytest.raises(KernelError, match="bias"):
            k.conv_transpose2d(x, w, T(np.zeros(3, np.float32)),
                               T(np.zeros((2, 2, 5, 5), np.float32)))
        with pytest.raises(KernelError, match="dw"):
            k.conv_transpose2d_bwd(x, w, T(np.zeros((2, 2, 5, 5), np.float32)), None,
                                   T(np.zeros((4, 2, 3, 2), np.float32)), None)
