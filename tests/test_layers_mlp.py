"""Every mlp.* layer: finite-difference gradients, C-vs-NumPy parity, config round trip."""

from __future__ import annotations

import numpy as np
import pytest

from qorus_core import Model, Residual, Sequential, ShapeError
from qorus_core.layer import layer_from_dict, layer_to_dict
from qorus_core.testing import check_gradients, check_kernel_parity
from qorus_layers_mlp import (
    ELU,
    GELU,
    GLU,
    Dropout,
    Flatten,
    Hardswish,
    Identity,
    LayerNorm,
    LeakyReLU,
    Linear,
    Mish,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Tanh,
)

CASES = [
    pytest.param(lambda: Linear(7, 5), (7,), id="Linear"),
    pytest.param(lambda: Linear(None, 3, bias=False), (4, 6), id="Linear-nobias-3d"),
    pytest.param(ReLU, (9,), id="ReLU"),
    pytest.param(GELU, (9,), id="GELU"),
    pytest.param(lambda: GELU("tanh"), (9,), id="GELU-tanh"),
    pytest.param(SiLU, (9,), id="SiLU"),
    pytest.param(Tanh, (9,), id="Tanh"),
    pytest.param(Sigmoid, (9,), id="Sigmoid"),
    pytest.param(Softmax, (11,), id="Softmax"),
    pytest.param(lambda: LayerNorm(13), (13,), id="LayerNorm"),
    pytest.param(lambda: Dropout(0.3, seed=4), (17,), id="Dropout"),
    pytest.param(Flatten, (3, 4), id="Flatten"),
    pytest.param(LeakyReLU, (9,), id="LeakyReLU"),
    pytest.param(lambda: LeakyReLU(-0.3), (9,), id="LeakyReLU-negative"),
    pytest.param(ELU, (9,), id="ELU"),
    pytest.param(lambda: ELU(0.4), (9,), id="ELU-alpha"),
    pytest.param(Softplus, (9,), id="Softplus"),
    pytest.param(lambda: Softplus(2.0, 1.5), (9,), id="Softplus-beta-threshold"),
    pytest.param(Mish, (9,), id="Mish"),
    pytest.param(Hardswish, (9,), id="Hardswish"),
    pytest.param(GLU, (10,), id="GLU"),
    pytest.param(lambda: GLU(1), (4, 3), id="GLU-dim1"),
    pytest.param(lambda: GLU(-2), (2, 6, 3), id="GLU-dim-2"),
    pytest.param(Identity, (3, 4), id="Identity"),
    pytest.param(lambda: LayerNorm(13, elementwise_affine=False), (13,), id="LayerNorm-no-affine"),
    pytest.param(lambda: LayerNorm(bias=False), (2, 13), id="LayerNorm-no-bias"),
    pytest.param(lambda: Sequential([Flatten(), Linear(None, 6), Residual(Sequential(
        [LayerNorm(), Linear(None, 6), GELU()])), Linear(None, 2)]), (2, 3), id="composite"),
]


@pytest.mark.parametrize("make, shape", CASES)
def test_gradients(make, shape, kernels):
    result = check_gradients(make(), shape, kernels=kernels)
    assert result.checked > 0


@pytest.mark.parametrize("make, shape", CASES)
def test_c_numpy_parity(make, shape):
    check_kernel_parity(make(), shape)


@pytest.mark.parametrize("make, shape", CASES)
def test_config_round_trip(make, shape):
    layer = make()
    again = layer_from_dict(layer_to_dict(layer))
    x = np.random.default_rng(0).standard_normal((4,) + shape).astype(np.float32)
    a = Model(layer, shape, seed=3).predict(x)
    b = Model(again, shape, seed=3).predict(x)
    np.testing.assert_array_equal(a, b)


def test_linear_matches_definition():
    m = Model(Linear(5, 3), (5,), seed=0)
    w, b = m.parameters()["weight"], m.parameters()["bias"]
    assert w.shape == (3, 5) and np.all(np.abs(w) <= 1 / np.sqrt(5))
    x = np.random.default_rng(1).standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_allclose(m.predict(x), x @ w.T + b, rtol=1e-5, atol=1e-6)


def test_dropout_train_eval_and_seed():
    m = Model(Dropout(0.5, seed=1), (1000,), seed=0)
    x = np.ones((2, 1000), np.float32)
    np.testing.assert_array_equal(m.predict(x), x)          # identity in inference
    p = m.plan(2, train=True)
    p.x.a[...] = x
    y1 = p.forward().a.copy()
    assert set(np.unique(y1)) <= {0.0, 2.0} and 0.4 < (y1 == 0).mean() < 0.6
    np.testing.assert_array_equal(p.forward().a, y1)         # same step, same mask
    m.run.step += 1
    assert not np.array_equal(p.forward().a, y1)             # next step, new mask


def test_linear_rejects_wrong_features():
    with pytest.raises(ShapeError, match=r"0 \(mlp.Linear\).*position 0.*expected 8.*got 5.*\(1, 5\)"):
        Model(Sequential([Linear(8, 4)]), (5,))
