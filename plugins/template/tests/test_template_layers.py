"""The checks every Qorus layer package should run: gradients, C-vs-NumPy parity, config round
trip, a training step, and discovery through the installed entry point."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qorus_core import Model, Sequential, layer_from_dict, layer_to_dict
from qorus_core.errors import ConfigError, ShapeError
from qorus_core.testing import c_available, check_gradients, check_kernel_parity, trace_allocations
from qorus_layers_template import PReLU, ResidualMLP

CASES = [
    (PReLU(), (6,)),
    (PReLU(num_parameters=4, init=-0.5), (3, 4)),     # rank 3 input: (batch, 3, 4)
    (ResidualMLP(hidden=8), (5,)),
    (ResidualMLP(hidden=3, norm=False, init=0.1), (4,)),
]
IDS = ["prelu", "prelu-rank3", "residual-mlp", "residual-mlp-no-norm"]
DISTRIBUTION = "qorus-layers-template"    # yours after renaming
NAMESPACE = "tpl"


@pytest.mark.parametrize("layer,shape", CASES, ids=IDS)
def test_gradients_match_finite_differences(layer, shape):
    # Central differences (step 1e-2) are wrong where a step crosses PReLU's kink at 0; the
    # seed picks inputs and weights where none does (seed 0 crosses one in the last case).
    result = check_gradients(layer, input_shape=shape, seed=1)
    assert result.checked > 0 and "input" in result.errors


@pytest.mark.parametrize("layer,shape", CASES, ids=IDS)
def test_c_and_numpy_kernels_agree(layer, shape):
    check_kernel_parity(layer, input_shape=shape)    # skips itself without the C library


@pytest.mark.parametrize("layer,shape", CASES, ids=IDS)
def test_config_round_trip(layer, shape):
    d = json.loads(json.dumps(layer_to_dict(layer)))   # what a TOML/JSON model file holds
    again = layer_from_dict(d)
    assert type(again) is type(layer) and again.get_config() == layer.get_config()
    x = np.random.default_rng(0).standard_normal((2,) + shape).astype(np.float32)
    a, b = Model(layer, shape, seed=3), Model(again, shape, seed=3)
    np.testing.assert_array_equal(a.predict(x), b.predict(x))


def test_prelu_matches_its_formula_and_pytorch_names():
    model = Model(PReLU(init=0.25), (3,), seed=0)
    assert list(model.parameters()) == ["weight"]            # nn.PReLU(3).state_dict() keys
    model.load_state_dict({"weight": np.array([0.1, 0.2, 0.3], np.float32)})
    x = np.array([[-1.0, 2.0, -3.0], [4.0, -5.0, 0.5]], np.float32)
    expected = np.where(x > 0, x, x * np.array([0.1, 0.2, 0.3], np.float32))
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-6)


def test_residual_mlp_parameter_names():
    model = Model(Sequential([ResidualMLP(hidden=16)]), (8,))
    assert sorted(model.parameters()) == [
        "0.act.weight", "0.down.bias", "0.down.weight", "0.norm.bias", "0.norm.weight",
        "0.up.bias", "0.up.weight"]


def test_bad_configs_are_errors():
    with pytest.raises(ConfigError):
        PReLU(num_parameters=0)
    with pytest.raises(ConfigError):
        ResidualMLP(hidden=0)
    with pytest.raises(ShapeError, match="expected last dimension 4"):
        Model(PReLU(num_parameters=4), (5,))


def test_a_few_training_steps_lower_the_loss():
    from qorus_core.train import AdamW, CrossEntropyLoss, Trainer

    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 8)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int32)
    net = Sequential([ResidualMLP(hidden=16), PReLU(), layer_from_dict(
        {"type": "mlp.Linear", "out_features": 2})])
    trainer = Trainer(Model(net, (8,), seed=0), CrossEntropyLoss(), AdamW(lr=1e-2),
                      batch_size=32, epochs=5, progress=False)
    history = trainer.fit(x, y)
    assert history[-1]["loss"] < history[0]["loss"]


@pytest.mark.parametrize("kernels", ["numpy"] + (["c"] if c_available() else []))
def test_training_step_allocates_no_arrays(kernels):
    # forward and backward write only into planned views: after a warm-up step, a training
    # step (and an inference call) leaves no NumPy array behind
    from qorus_core.train import AdamW

    model = Model(Sequential([PReLU(), ResidualMLP(hidden=8)]), (3, 4), seed=0, kernels=kernels)
    opt = AdamW(lr=1e-3).bind(model)          # before the plans: binding drops them
    train, infer = model.plan(5, train=True, input_grad=True), model.plan(5, train=False)
    train.x.a[...] = np.random.default_rng(0).standard_normal(train.x.shape)
    infer.x.a[...] = train.x.a

    def step():
        model.zero_grad()
        train.forward()
        train.dy.a[...] = 1.0
        train.backward()
        opt.step()
        infer.forward()

    step()
    trace = trace_allocations(step, repeat=3)
    assert trace.array_bytes == 0, trace.where


def test_installed_entry_point_is_discovered(monkeypatch):
    from importlib import metadata

    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{DISTRIBUTION} is not installed (pip install -e plugins/template)")
    eps = {ep.name: ep.value for ep in dist.entry_points if ep.group == "qorus"}
    assert eps == {NAMESPACE: f"{PReLU.__module__.rsplit('.', 1)[0]}.plugin"}

    from qorus_core.registry import Registry

    monkeypatch.delenv("QORUS_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    registry = Registry(autoload=True)
    for cls in (PReLU, ResidualMLP):
        entry = registry.entry("layer", f"{NAMESPACE}.{cls.__name__}")
        assert entry.obj is cls and entry.distribution == DISTRIBUTION
    plugin = {p.namespace: p for p in registry.plugins()}[NAMESPACE]
    assert (plugin.status, plugin.items) == ("ok", 4)     # two layers, two kernels
    for name in ("prelu", "prelu_bwd"):
        entry = registry.entry("kernel", f"{NAMESPACE}.{name}")
        assert entry.obj.full_name == f"{NAMESPACE}.{name}" and entry.doc
