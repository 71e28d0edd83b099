"""State buffers (b.state), tied parameters (b.tie), external weights and per-shape plans."""

from __future__ import annotations

import numpy as np
import pytest

from qorus_core import Composite, Layer, Model, Spec
from qorus_core.errors import CheckpointError, ConfigError
from qorus_core.layer import layer_from_dict
from qorus_core.tensor import Tensor
from qorus_core.testing import check_gradients


class RunningMean(Layer):
    """Identity that keeps a persistent running mean of its input columns and a
    non-persistent call counter: a miniature BatchNorm / KV cache."""

    def build(self, x: Spec, b) -> Spec:
        b.state("running_mean", (x.shape[-1],))
        b.state("calls", (x.shape[0], 1), persistent=False)
        return x

    def forward(self, x, ctx):
        ctx.running_mean.a[...] = 0.5 * ctx.running_mean.a + 0.5 * x.a.reshape(-1, x.cols).mean(0)
        ctx.calls.a[...] += 1
        ctx.y.a[...] = x.a
        return ctx.y

    def backward(self, dy, ctx):
        if ctx.dx is not None:
            ctx.dx.a[...] = dy.a
        return ctx.dx


class TiedPair(Composite):
    """Two square Linear layers sharing one weight: y = (x W^T) W^T."""

    def __init__(self, dim: int = 5) -> None:
        self.dim = dim

    def build(self, x, b):
        lin = {"type": "mlp.Linear", "out_features": self.dim, "bias": False}
        h = b.call(layer_from_dict(lin), x, "first")
        y = b.call(layer_from_dict(lin), h, "second")
        b.tie("second.weight", "first.weight")
        return y


def test_tied_parameters_share_memory_and_sum_gradients(kernels):
    m = Model(TiedPair(5), (5,), kernels=kernels)
    assert list(m.parameters()) == ["first.weight"] and m.num_parameters == 25
    assert check_gradients(TiedPair(5), (5,), batch=3, kernels=kernels).checked > 0
    w = m.parameters()["first.weight"]
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_allclose(m.predict(x), x @ w.T @ w.T, rtol=1e-5, atol=1e-6)


def test_tied_alias_in_a_state_dict_must_equal_its_target(kernels):
    m = Model(TiedPair(3), (3,), kernels=kernels)
    sd = m.state_dict()
    assert set(sd) == {"first.weight"}
    m.load_state_dict({**sd, "second.weight": sd["first.weight"]})   # PyTorch lists both
    with pytest.raises(CheckpointError, match="second.weight is tied to first.weight"):
        m.load_state_dict({**sd, "second.weight": sd["first.weight"] + 1})


def test_tie_to_a_missing_or_differently_shaped_parameter_is_an_error():
    class Bad(Composite):
        def build(self, x, b):
            y = b.call(layer_from_dict({"type": "mlp.Linear", "out_features": 4}), x, "a")
            b.tie("a.weight", "nowhere.weight")
            return y

    with pytest.raises(ConfigError, match="no parameter named 'nowhere.weight'"):
        Model(Bad(), (3,))


def test_state_buffers_persist_across_calls_and_plans(kernels):
    net = layer_from_dict({"type": "qorus_core.containers:Sequential", "layers": [
        {"type": "tests.test_model_state:RunningMean"}]}, allow_import=True)   # trusted: ours
    m = Model(net, (3,), kernels=kernels)
    assert set(m.state_dict()) == {"0.running_mean"}          # persistent only
    x = np.ones((2, 3), np.float32)
    m.predict(x)
    m.predict(x)
    np.testing.assert_allclose(m.buffers()["0.running_mean"], 0.75)
    assert m.buffers()["0.calls"].shape == (2, 1) and m.buffers()["0.calls"][0, 0] == 2
    m.predict(np.ones((5, 3), np.float32))    # another batch: its own counter, same running mean
    assert m.buffers()["0.calls"].shape == (5, 1) and m.buffers()["0.calls"][0, 0] == 1
    np.testing.assert_allclose(m.buffers()["0.running_mean"], 0.875)
    sd = m.state_dict()
    fresh = Model(net, (3,), kernels=kernels)
    fresh.load_state_dict(sd)
    np.testing.assert_allclose(fresh.buffers()["0.running_mean"], 0.875)


def test_plan_for_another_input_shape():
    net = layer_from_dict({"type": "mlp.Linear", "out_features": 2})
    m = Model(net, (4, 3))
    p = m.plan(1, shape=(7, 3))
    assert p.x.shape == (1, 7, 3) and p.y.shape == (1, 7, 2)
    assert m.plan(1, shape=(7, 3)) is p and m.plan(1) is not p


def test_external_weights_serve_inference_only(kernels):
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    net = layer_from_dict({"type": "mlp.Linear", "out_features": 2, "bias": False})
    m = Model(net, (3,), kernels=kernels, external_params={"weight": Tensor.of(w)})
    assert m.num_parameters == 6 and m.state_dict() == {}
    x = np.ones((1, 3), np.float32)
    np.testing.assert_allclose(m.predict(x), x @ w.T)
    with pytest.raises(ConfigError, match="inference only"):
        m.plan(1, train=True)
    with pytest.raises(ConfigError, match="unknown parameters"):
        Model(net, (3,), external_params={"nope": Tensor.of(w)})


class Counter(Layer):
    """Identity with a 0-d persistent counter (like BatchNorm's num_batches_tracked)."""

    def build(self, x: Spec, b) -> Spec:
        b.state("count", ())
        return x

    def forward(self, x, ctx):
        ctx.count.a[0] += 1
        ctx.y.a[...] = x.a
        return ctx.y

    def backward(self, dy, ctx):
        return None


def test_zero_d_state_survives_other_plans_and_loads_from_a_0d_value():
    m = Model(Counter(), (2,))
    m.predict(np.zeros((1, 2), np.float32))
    m.predict(np.zeros((3, 2), np.float32))          # another plan: same counter
    assert m.buffers()["count"].tolist() == [2.0]
    m.load_state_dict({"count": np.array(7.0)})     # PyTorch stores counters 0-d
    assert m.buffers()["count"].tolist() == [7.0]


def test_ctx_view_is_made_once_and_checks_its_window():
    from qorus_core.errors import ShapeError as Bad
    from qorus_core.layer import LayerCtx

    ctx = LayerCtx("blk", 0, False)
    t = Tensor.of(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    heads = ctx.view(t, (2, 3, 2, 2))
    assert ctx.view(t, (2, 3, 2, 2)) is heads and np.shares_memory(heads.a, t.a)
    rows = ctx.view(t, (4,), offset=8)                     # a window: elements 8..11
    assert rows.a.tolist() == [8.0, 9.0, 10.0, 11.0]
    with pytest.raises(Bad, match="blk: a view of \\(8,\\) at element 20 does not fit"):
        ctx.view(t, (8,), offset=20)
