"""groupnorm / groupnorm_bwd kernels: C vs NumPy vs PyTorch over group counts from one
(LayerNorm-like) to C (InstanceNorm-like), with and without affine, with and without dx;
finite differences of the NumPy reference; thread-count independence; bad calls refused."""

from __future__ import annotations

import numpy as np
import pytest

from qorus_core.errors import KernelError
from qorus_core.tensor import Tensor

RNG = np.random.default_rng(0)

# (x shape, groups)
CASES = [((4, 6, 5, 3), 2), ((3, 4, 7), 1), ((2, 6, 3, 3), 6), ((5, 6), 3),
         ((1, 32, 20, 1), 8), ((9, 8, 17), 4)]
IDS = ["2-groups", "one-group", "instance", "BC", "one-image", "odd-length"]


def T(a) -> Tensor:
    return None if a is None else Tensor.of(np.array(a, copy=True))


def _run(k, x, w, b, dy, G, with_dx=True, affine=True):
    B = x.shape[0]
    y, m, r = T(np.zeros_like(x)), T(np.zeros((B, G), np.float32)), T(np.zeros((B, G), np.float32))
    k.groupnorm(T(x), T(w) if affine else None, T(b) if affine else None, y, m, r, G, 1e-5)
    dx = T(np.full(x.shape, 3.0, np.float32)) if with_dx else None       # written
    dw, db = (T(np.ones_like(w)), T(np.ones_like(b))) if affine else (None, None)   # added to
    k.groupnorm_bwd(T(x), T(w) if affine else None, m, r, T(dy), dx, dw, db, G)
    return [y.a, m.a, r.a] + [None if t is None else t.a for t in (dx, dw, db)]


def _case(shape):
    x = (RNG.standard_normal(shape) * 2 + 0.5).astype(np.float32)
    w = RNG.uniform(0.5, 1.5, shape[1]).astype(np.float32)
    b = RNG.standard_normal(shape[1]).astype(np.float32)
    return x, w, b, RNG.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("shape,G", CASES, ids=IDS)
def test_c_matches_numpy_and_torch(shape, G, ck, nk):
    torch = pytest.importorskip("torch")
    x, w, b, dy = _case(shape)
    for with_dx, affine in ((True, True), (False, True), (True, False)):
        got, ref = _run(ck, x, w, b, dy, G, with_dx, affine), _run(nk, x, w, b, dy, G, with_dx,
                                                                   affine)
        for name, g, r in zip(("y", "mean", "rstd", "dx", "dw", "db"), got, ref):
            assert (g is None) == (r is None), name
            if r is not None:
                np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4, err_msg=name)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = torch.nn.functional.group_norm(xt, G, wt, bt, 1e-5)
    yt.backward(torch.tensor(dy))
    y, _, _, dx, dw, db = _run(ck, x, w, b, dy, G)
    for name, got, want in (("y", y, yt.detach()), ("dx", dx, xt.grad),
                            ("dw", dw - 1, wt.grad), ("db", db - 1, bt.grad)):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-4, err_msg=name)


def test_gradients_finite_differences(nk):
    x, w, b, dy = _case((3, 6, 4))
    _, _, _, dx, dw, db = _run(nk, x, w, b, dy, 3)
    rng = np.random.default_rng(1)
    for a, grad in ((x, dx), (w, dw - 1), (b, db - 1)):
        flat = a.reshape(-1)
        for i in rng.choice(flat.size, size=min(10, flat.size), replace=False):
            orig, eps = flat[i], 1e-2
            flat[i] = orig + eps
            lp = float(np.sum(_run(nk, x, w, b, dy, 3)[0].astype(np.float64) * dy))
            flat[i] = orig - eps
            lm = float(np.sum(_run(nk, x, w, b, dy, 3)[0].astype(np.float64) * dy))
            flat[i] = orig
            num, got = (lp - lm) / (2 * eps), float(grad.reshape(-1)[i])
            assert abs(num - got) <= 2e-3 + 2e-2 * abs(num), (i, num, got)


def test_results_do_not_depend_on_the_thread_count(threads):
    x, w, b, dy = _case((17, 12, 9, 5))
    runs = []
    for n in (1, 2, 3):
        threads.set_threads(n)
        runs.append(_run(threads, x, w, b, dy, 4))
    for other in runs[1:]:
        for a, b_ in zip(runs[0], other):
            np.testing.assert_array_equal(a, b_)


def test_bad_calls_raise_kernel_errors(ck, nk):
    x, y = T(np.zeros((2, 6, 3), np.float32)), T(np.zeros((2, 6, 3), np.float32))
    s = T(np.zeros((2, 2), np.float32))
    for k in (ck, nk):
        with pytest.raises(KernelError, match="multiple of num_groups=4"):
            k.groupnorm(x, None, None, y, s, s, 4)
        with pytest.raises(KernelError, match="per image and group"):
            k.groupnorm(x, None, None, y, s, s, 3)
        with pytest.raises(KernelError, match="per channel"):
            k.groupnorm(x, T(np.zeros(4, np.float32)), None, y, s, s, 2)
        with pytest.raises(KernelError, match="eps"):
            k.groupnorm(x, None, None, y, s, s, 2, 0.0)
        with pytest.raises(KernelError, match="do not fit"):
            k.groupnorm_bwd(x, None, s, s, T(np.zeros((2, 6, 4), np.float32)), y, None, None, 2)
