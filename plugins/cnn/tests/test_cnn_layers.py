"""The cnn.* layers: finite-difference gradients, C-vs-NumPy parity, PyTorch parity of each
layer and of a small CNN over AdamW steps, BatchNorm's running statistics, config round trips,
discovery, errors naming the layer, and no allocation in the training hot path."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qorus_core import Model, QorusError, Sequential, Tensor, layer_from_dict, layer_to_dict
from qorus_core.errors import ConfigError, ShapeError
from qorus_core.testing import check_gradients, check_kernel_parity, trace_allocations
from qorus_layers_cnn import AvgPool2d, BatchNorm2d, Conv2d, Flatten, GlobalAvgPool2d, MaxPool2d

CASES = [
    (Conv2d(3, 4, 3, padding=1), (3, 6, 5)),
    (Conv2d(None, 6, (3, 2), stride=(2, 1), padding=1, dilation=(1, 2), groups=2), (4, 7, 6)),
    (Conv2d(2, 3, 1, bias=False), (2, 4, 3)),
    (MaxPool2d(2), (2, 6, 5)),
    (MaxPool2d((3, 2), stride=(2, 1), padding=1), (2, 5, 6)),
    (AvgPool2d(3, stride=2, padding=1), (2, 7, 6)),
    (GlobalAvgPool2d(), (3, 4, 5)),
    (BatchNorm2d(3), (3, 4, 5)),
    (Flatten(), (2, 3, 4)),
]
IDS = ["conv", "conv-groups-dilation", "conv-1x1-nobias", "maxpool", "maxpool-pad",
       "avgpool", "global-avg", "batchnorm", "flatten"]


@pytest.mark.parametrize("layer,shape", CASES, ids=IDS)
def test_gradients_match_finite_differences(layer, shape):
    seed = 3 if isinstance(layer, MaxPool2d) else 0   # no window max within eps of a tie
    result = check_gradients(layer, input_shape=shape, seed=seed, eps=1e-2 if seed == 0 else 1e-3)
    assert result.checked > 0 and "input" in result.errors


@pytest.mark.parametrize("layer,shape", CASES, ids=IDS)
def test_c_and_numpy_kernels_agree(layer, shape):
    check_kernel_parity(layer, input_shape=shape, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("layer,shape", CASES, ids=IDS)
def test_config_round_trip(layer, shape):
    d = json.loads(json.dumps(layer_to_dict(layer)))
    again = layer_from_dict(d)
    assert type(again) is type(layer) and again.get_config() == layer.get_config()
    x = np.random.default_rng(0).standard_normal((2,) + shape).astype(np.float32)
    a, b = Model(layer, shape, seed=3), Model(again, shape, seed=3)
    np.testing.assert_array_equal(a.predict(x), b.predict(x))


def _torch_state(ref) -> dict[str, np.ndarray]:
    """A PyTorch state dict as arrays; num_batches_tracked (0-d there) as our 1-element buffer."""
    return {k: v.detach().numpy().reshape(-1) if v.ndim == 0 else v.detach().numpy()
            for k, v in ref.state_dict().items()}


def _torch_layers(torch):
    nn = torch.nn
    return [
        (Conv2d(4, 6, (3, 2), stride=(2, 1), padding=1, dilation=(1, 2), groups=2),
         nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=1, dilation=(1, 2), groups=2), (4, 7, 6)),
        (MaxPool2d(3, stride=2, padding=1), nn.MaxPool2d(3, stride=2, padding=1), (2, 7, 6)),
        (AvgPool2d(2), nn.AvgPool2d(2), (2, 6, 5)),
        (GlobalAvgPool2d(), nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), (3, 4, 5)),
        (BatchNorm2d(3), nn.BatchNorm2d(3), (3, 4, 5)),
        (Flatten(), nn.Flatten(), (2, 3, 4)),
    ]


def test_each_layer_matches_pytorch_forward_and_backward(kernels):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    for ours, ref, shape in _torch_layers(torch):
        model = Model(ours, shape, kernels=kernels)
        for p in ref.parameters():      # non-default affine so BatchNorm's weight matters
            torch.nn.init.uniform_(p, 0.5, 1.5)
        plan = model.plan(4, train=True, input_grad=True)
        model.load_state_dict(_torch_state(ref), source="torch")
        x = rng.standard_normal((4,) + shape).astype(np.float32)
        xt = torch.tensor(x, requires_grad=True)
        yt = ref(xt)
        dy = rng.standard_normal(tuple(yt.shape)).astype(np.float32)
        yt.backward(torch.tensor(dy))
        plan.x.a[...] = x
        model.zero_grad()
        np.testing.assert_allclose(plan.forward().a, yt.detach().numpy(), rtol=1e-4, atol=1e-5,
                                   err_msg=f"{ours.type_name} forward")
        plan.dy.a[...] = dy
        plan.backward()
        np.testing.assert_allclose(plan.dx.a, xt.grad.numpy(), rtol=1e-4, atol=1e-5,
                                   err_msg=f"{ours.type_name} input gradient")
        for name, p in ref.named_parameters():
            np.testing.assert_allclose(model.gradients()[name], p.grad.numpy(), rtol=1e-4,
                                       atol=1e-5, err_msg=f"{ours.type_name} grad {name}")
        for name, buf in ref.named_buffers():
            np.testing.assert_allclose(model.buffers()[name].reshape(buf.shape), buf.numpy(),
                                       rtol=1e-5, atol=1e-6, err_msg=f"{ours.type_name} {name}")


def small_cnn() -> Sequential:
    return Sequential([
        Conv2d(1, 6, 3, padding=1, bias=False), BatchNorm2d(6), layer_from_dict({"type": "mlp.ReLU"}),
        MaxPool2d(2), Conv2d(6, 8, 3, stride=2, padding=1, bias=False), BatchNorm2d(8),
        layer_from_dict({"type": "mlp.ReLU"}), AvgPool2d(2), Flatten(),
        layer_from_dict({"type": "mlp.Linear", "out_features": 5}),
    ])


def test_small_cnn_adamw_steps_match_pytorch(kernels):
    torch = pytest.importorskip("torch")
    from qorus_core.train.losses import CrossEntropyLoss
    from qorus_core.train.optimizers import AdamW

    nn = torch.nn
    torch.manual_seed(0)
    torch.set_num_threads(1)
    # no conv bias before a BatchNorm: its gradient is 0 up to rounding, which Adam amplifies
    ref = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Conv2d(6, 8, 3, stride=2, padding=1, bias=False),
                        nn.BatchNorm2d(8), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(8, 5))
    model = Model(small_cnn(), (1, 12, 12), kernels=kernels)
    opt = AdamW(lr=1e-2, weight_decay=0.01).bind(model)   # before the plan: it grows the arena
    plan = model.plan(8, train=True)
    model.load_state_dict(_torch_state(ref), source="torch")
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-2, weight_decay=0.01)
    loss_fn = CrossEntropyLoss()
    rng = np.random.default_rng(1)
    targets = Tensor.of(np.zeros(8, np.int32))
    for step in range(4):
        x = rng.standard_normal((8, 1, 12, 12)).astype(np.float32)
        y = rng.integers(0, 5, 8).astype(np.int32)
        plan.x.a[...] = x
        targets.a[...] = y
        model.zero_grad()
        plan.forward()
        loss = loss_fn(plan.y, targets, plan.dy, model.kernels)
        plan.backward()
        opt.step()
        ref_opt.zero_grad()
        ref_loss = nn.functional.cross_entropy(ref(torch.from_numpy(x)), torch.from_numpy(y).long())
        ref_loss.backward()
        ref_opt.step()
        assert loss == pytest.approx(ref_loss.item(), rel=1e-4), f"loss at step {step}"
        params = model.parameters()
        for name, p in ref.named_parameters():
            np.testing.assert_allclose(params[name], p.detach().numpy(), rtol=1e-4, atol=1e-5,
                                       err_msg=f"{name} after step {step}")
    for name, buf in ref.named_buffers():
        np.testing.assert_allclose(model.buffers()[name].reshape(buf.shape), buf.numpy(),
                                   rtol=1e-4, atol=1e-5, err_msg=name)
    ref.eval()
    x = rng.standard_normal((3, 1, 12, 12)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(model.predict(x), ref(torch.from_numpy(x)).numpy(), rtol=1e-4,
                                   atol=1e-5, err_msg="inference with running statistics")


def test_batchnorm_train_updates_running_stats_and_eval_uses_them(kernels):
    model = Model(BatchNorm2d(2, momentum=0.5), (2, 3, 3), kernels=kernels)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((6, 2, 3, 3)) * [[[[2.0]], [[0.5]]]] + [[[[1.0]], [[-3.0]]]]).astype(np.float32)
    train = model.plan(6, train=True)
    train.x.a[...] = x
    y = train.forward().a
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)   # batch statistics
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1.0, rtol=1e-3)
    buf = model.buffers()
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3), ddof=1)   # unbiased, like PyTorch
    np.testing.assert_allclose(buf["running_mean"], 0.5 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(buf["running_var"], 0.5 + 0.5 * var, rtol=1e-5)
    assert int(buf["num_batches_tracked"][0]) == 1
    before = {k: v.copy() for k, v in buf.items()}
    out = model.predict(x)                       # inference: running stats, left unchanged
    want = (x - buf["running_mean"][:, None, None]) / np.sqrt(buf["running_var"][:, None, None] + 1e-5)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)
    for k, v in model.buffers().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    assert sorted(model.state_dict()) == ["bias", "num_batches_tracked", "running_mean",
                                          "running_var", "weight"]


def test_bad_inputs_raise_errors_naming_the_layer():
    with pytest.raises(QorusError, match=r"cnn\.Conv2d.*expected 3 input channels, got 2"):
        Model(Sequential([Conv2d(3, 4, 3)]), (2, 8, 8))
    with pytest.raises(QorusError, match=r"cnn\.Conv2d.*does not fit"):
        Model(Conv2d(1, 4, 5), (1, 3, 3))
    with pytest.raises(ShapeError, match=r"cnn\.MaxPool2d.*NCHW"):
        Model(MaxPool2d(2), (16,))
    with pytest.raises(ShapeError, match=r"cnn\.BatchNorm2d.*expected 4 channels"):
        Model(BatchNorm2d(4), (3, 2, 2))
    with pytest.raises(ShapeError, match=r"cnn\.BatchNorm2d.*more than one value"):
        Model(BatchNorm2d(), (3, 1, 1)).plan(1, train=True)
    for bad in (lambda: Conv2d(3, 0, 3), lambda: Conv2d(3, 4), lambda: Conv2d(3, 4, 3, groups=3),
                lambda: Conv2d(3, 4, (3, 3, 3)), lambda: Conv2d(3, 4, 3, stride=0),
                lambda: MaxPool2d(2, padding=2), lambda: BatchNorm2d(2, momentum=None),
                lambda: layer_from_dict({"type": "cnn.Conv2d", "out_channels": 4, "kernel": 3})):
        with pytest.raises(ConfigError):
            bad()


def test_no_allocation_after_the_first_training_step(kernels):
    from qorus_core.train.losses import CrossEntropyLoss
    from qorus_core.train.optimizers import AdamW

    model = Model(small_cnn(), (1, 12, 12), kernels=kernels)
    opt = AdamW(lr=1e-3).bind(model)
    plan, loss = model.plan(4, train=True), CrossEntropyLoss()
    infer = model.plan(4, train=False)
    plan.x.a[...] = np.random.default_rng(0).standard_normal(plan.x.shape)
    infer.x.a[...] = plan.x.a
    targets = Tensor.of(np.arange(4, dtype=np.int32))

    def step():
        model.zero_grad()
        plan.forward()
        loss(plan.y, targets, plan.dy, model.kernels)
        plan.backward()
        opt.step()
        infer.forward()

    step()
    trace = trace_allocations(step, repeat=3)
    assert trace.array_bytes == 0, trace.where


def test_installed_plugin_is_listed_by_qorus_layers(monkeypatch, capsys):
    from importlib import metadata

    try:
        metadata.distribution("qorus-layers-cnn")
    except metadata.PackageNotFoundError:
        pytest.skip("qorus-layers-cnn is not installed (pip install --no-deps -e plugins/cnn)")
    from qorus_core.cli import main
    from qorus_core.registry import Registry

    monkeypatch.delenv("QORUS_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    registry = Registry(autoload=True)
    for cls in (Conv2d, MaxPool2d, AvgPool2d, GlobalAvgPool2d, BatchNorm2d, Flatten):
        entry = registry.entry("layer", f"cnn.{cls.__name__}")
        assert entry.obj is cls and entry.distribution == "qorus-layers-cnn"
    assert main(["layers"]) == 0
    out = capsys.readouterr().out
    for name in ("cnn.Conv2d", "cnn.MaxPool2d", "cnn.AvgPool2d", "cnn.GlobalAvgPool2d",
                 "cnn.BatchNorm2d", "cnn.Flatten"):
        assert name in out


def test_fashion_example_config_trains_a_step():
    """Smoke test of examples/fashion_cnn.toml (its full run is reported, not tested): the
    config parses, builds [1, 28, 28] -> 10 and one short epoch on random images runs."""
    from pathlib import Path

    from qorus_core.train.config import build, load_config

    path = Path(__file__).resolve().parents[3] / "examples" / "fashion_cnn.toml"
    if not path.is_file():
        pytest.skip(f"{path} is not here (the plugin is tested outside a Qorus checkout)")
    model, trainer = build(load_config(path), epochs=1, progress=False)
    assert model.input_shape == (1, 28, 28) and model.output_shape == (10,)
    rng = np.random.default_rng(0)
    history = trainer.fit(rng.random((40, 1, 28, 28), dtype=np.float32),
                          rng.integers(0, 10, 40).astype(np.int32))
    assert len(history) == 1 and np.isfinite(history[0]["loss"])
