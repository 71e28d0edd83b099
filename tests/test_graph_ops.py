"""Every graph op in a functional graph: forward and backward equal PyTorch (rtol 1e-5) and
central finite differences, on both kernel sets, odd shapes and broadcasting."""

from __future__ import annotations

import numpy as np
import pytest
from graph_ops_cases import CASES, B, Case

from qorus_core import Input, Model


def _model(case: Case, kernels: str) -> Model:
    rng = np.random.default_rng(0)
    nodes = {}
    for name, make in case.inputs.items():
        dtype = case.dtypes.get(name, "f32")
        nodes[name] = Input(make(rng).shape[1:], name=name, dtype=dtype, grad=dtype == "f32")
    return Model(inputs=list(nodes.values()), outputs=case.build(nodes), kernels=kernels)


def _arrays(case: Case, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {k: make(rng) for k, make in case.inputs.items()}
    return {k: (v != 0) if case.dtypes.get(k) == "bool" else v for k, v in out.items()}


def _run(model: Model, x: dict[str, np.ndarray], r: np.ndarray):
    """y, and the gradients of sum(r * y) with respect to the f32 inputs."""
    p = model.plan(B, train=True)
    for k, v in x.items():
        p.inputs[k].a[...] = v
    y = p.forward().a.copy()
    p.dy.a[...] = r
    p.backward()
    return y, {k: t.a.copy() for k, t in p.dinputs.items() if t is not None}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_op_matches_pytorch(case, kernels):
    torch = pytest.importorskip("torch")
    model, x = _model(case, kernels), _arrays(case)
    r = np.random.default_rng(2).standard_normal((B, *model.output_shape)).astype(np.float32)
    y, grads = _run(model, x, r)
    tx = {k: torch.tensor(v, requires_grad=v.dtype == np.float32) for k, v in x.items()}
    ty = case.torch(torch, tx)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-5, atol=1e-6)
    (ty * torch.tensor(r)).sum().backward()
    assert grads.keys() == {k for k, v in tx.items() if v.requires_grad}
    for k, g in grads.items():
        np.testing.assert_allclose(g, tx[k].grad.numpy(), rtol=1e-5, atol=1e-6, err_msg=k)


@pytest.mark.parametrize("case", [c for c in CASES if c.fd], ids=lambda c: c.name)
def test_op_gradient_is_the_finite_difference(case, kernels):
    """Central differences of sum(r * y) in float64 arithmetic over float32 forwards (a
    smaller step where a kink, max or abs, is near). Stop-gradient's gradient is not the
    derivative by definition: the PyTorch test checks it."""
    model, x = _model(case, kernels), _arrays(case)
    rng = np.random.default_rng(3)
    r = rng.standard_normal((B, *model.output_shape)).astype(np.float32)
    _, grads = _run(model, x, r)
    eps = 1e-2 if case.smooth else 1e-3

    def loss(xx):
        return float((model.predict(xx).astype(np.float64) * r).sum())

    for k, g in grads.items():
        for i in rng.choice(x[k].size, size=min(12, x[k].size), replace=False):
            xp = {kk: v.copy() for kk, v in x.items()}
            xm = {kk: v.copy() for kk, v in x.items()}
            xp[k].reshape(-1)[i] += eps
            xm[k].reshape(-1)[i] -= eps
            num = (loss(xp) - loss(xm)) / (2 * eps)
            got = float(g.reshape(-1)[i])
            assert abs(num - got) <= 2e-2 * (1 + abs(num)), (k, i, num, got)


def test_every_registered_op_has_a_case():
    from qorus_core.ops import OPS

    covered = set()
    for case in CASES:
        model = _model(case, "numpy")
        covered |= {type(l).__name__ for l in model.net.layers.values()}
    assert set(OPS) - covered == set()
