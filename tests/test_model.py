"""Model: validation, config round trip, memory report, allocation-free hot path."""

from __future__ import annotations

import numpy as np
import pytest

from qorus_core import ConfigError, Model, QorusError, Sequential, ShapeError
from qorus_core.testing import trace_allocations
from qorus_layers_mlp import GELU, Dropout, LayerNorm, Linear, ReLU


def mlp():
    return Sequential([Linear(20, 32), LayerNorm(), GELU(), Dropout(0.1), Linear(None, 5)])


def test_predict_validates_shape_and_dtype():
    m = Model(mlp(), (20,))
    with pytest.raises(ShapeError, match=r"expected shape \(N, 20\), got \(4, 21\)"):
        m.predict(np.zeros((4, 21)))
    with pytest.raises(ShapeError, match="dtype"):
        m.predict(np.array([["a"] * 20]))
    assert m.predict(np.zeros((3, 20), np.float64)).shape == (3, 5)   # numeric inputs are cast


def test_compile_error_names_layer_position_and_shapes():
    net = Sequential([Linear(20, 32), ReLU(), Linear(31, 5)])
    with pytest.raises(ShapeError) as info:
        Model(net, (20,))
    msg = str(info.value)
    assert "2 (mlp.Linear)" in msg and "position 2" in msg and "31" in msg and "(1, 32)" in msg
    assert isinstance(info.value, QorusError)


def test_not_a_layer():
    with pytest.raises(ConfigError):
        Model(Sequential([object()]), (3,))


def test_config_round_trip_gives_same_model():
    m = Model(mlp(), (20,), seed=5)
    again = Model.from_config(m.get_config())
    x = np.random.default_rng(0).standard_normal((7, 20))
    np.testing.assert_array_equal(m.predict(x), again.predict(x))


def test_params_and_grads_are_contiguous_regions():
    m = Model(mlp(), (20,))
    m.reserve_optimizer_state(2)
    params = m.parameters()
    base = m.params.a.ctypes.data
    for name, v in params.items():
        assert base <= v.ctypes.data < base + m.params.a.nbytes, name
    assert m.grads.a.ctypes.data == base + m.params.a.nbytes
    report = m.memory_report()
    assert report["params"] == report["grads"] and report["optimizer_state"] == 2 * report["params"]


def test_forward_backward_allocate_no_arrays(kernels):
    m = Model(mlp(), (20,), kernels=kernels)
    train = m.plan(16, train=True)
    infer = m.plan(16, train=False)
    train.x.a[...] = 0.5

    def step():
        m.zero_grad()
        train.forward()
        train.dy.a[...] = 1.0
        train.backward()
        m.run.step += 1
        infer.forward()

    step()                     # warm-up: NumPy kernels fill their scratch cache here
    trace = trace_allocations(step, repeat=5)
    assert trace.array_bytes == 0, trace.where


@pytest.mark.parametrize("first", ["mlp.Linear", "mlp.LayerNorm", "llm.RMSNorm"])
def test_first_layer_with_params_needs_no_input_gradient(first, kernels):
    """The model input carries no gradient, so the first layer's backward gets dx=None and
    must still produce its parameter gradients (the same as when dx is wanted)."""
    from qorus_core import layer_from_dict

    cfg = {"type": first, "out_features": 6} if first == "mlp.Linear" else {"type": first}
    grads = []
    for input_grad in (False, True):
        m = Model(Sequential([layer_from_dict(cfg), Linear(None, 3)]), (6,), kernels=kernels)
        p = m.plan(4, train=True, input_grad=input_grad)
        assert (p.dx is None) is (not input_grad)
        p.x.a[...] = np.arange(24, dtype=np.float32).reshape(4, 6) / 7
        p.forward()
        m.zero_grad()
        p.dy.a[...] = 1.0
        p.backward()
        grads.append(m.gradients())
    for name in grads[0]:
        np.testing.assert_array_equal(grads[0][name], grads[1][name], err_msg=name)


def test_trace_allocations_sees_an_array_left_behind():
    kept = []
    trace = trace_allocations(lambda: kept.append(np.ones(4096, np.float32)), repeat=2)
    assert trace.array_bytes >= 2 * 4096 * 4 and trace.where
    assert trace_allocations(lambda: np.ones(4096, np.float32)).array_bytes == 0  # freed again
