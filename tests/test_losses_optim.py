"""Losses, optimizers, clipping and schedules against PyTorch (when importable)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qorus_core import ConfigError, Model, NumericsError, Sequential, Tensor
from qorus_core.train.losses import CrossEntropyLoss, MSELoss
from qorus_core.train.optimizers import SGD, Adam, AdamW, clip_grad_norm
from qorus_core.train.schedules import Constant, Cosine, LinearWarmup, make_schedule
from qorus_layers_mlp import Linear, ReLU


def _k(kernels):
    from qorus_core import get_kernels

    return get_kernels(kernels)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_cross_entropy_matches_torch(kernels, smoothing):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((13, 7)) * 3).astype(np.float32)
    target = rng.integers(0, 7, 13).astype(np.int32)
    loss = CrossEntropyLoss(label_smoothing=smoothing)
    dy = Tensor.of(np.zeros_like(logits))
    value = loss(Tensor.of(logits), Tensor.of(target), dy, _k(kernels))
    t = torch.tensor(logits, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(t, torch.tensor(target, dtype=torch.long),
                                            label_smoothing=smoothing)
    ref.backward()
    assert isinstance(value, float)
    assert value == pytest.approx(ref.item(), rel=1e-5)
    np.testing.assert_allclose(dy.a, t.grad.numpy(), rtol=1e-5, atol=1e-7)
    # without dy it only computes the value
    assert loss(Tensor.of(logits), Tensor.of(target), None, _k(kernels)) == pytest.approx(value, rel=1e-6)


def test_cross_entropy_accuracy_and_target_spec(kernels):
    logits = np.array([[2, 1, 0], [0, 3, 1], [1, 0, 5], [4, 0, 0]], np.float32)
    target = np.array([0, 1, 0, 0], np.int32)
    loss = CrossEntropyLoss()
    assert loss.metrics == ("accuracy",)
    assert loss.metric_sums(Tensor.of(logits), Tensor.of(target), _k(kernels)) == (3,)
    spec = loss.target_spec((3,))
    assert spec.shape == () and spec.dtype == "i32"
    assert loss.target_spec((5, 3)).shape == (5,)


def test_mse_matches_torch(kernels):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    pred = rng.standard_normal((6, 4)).astype(np.float32)
    target = rng.standard_normal((6, 4)).astype(np.float32)
    dy = Tensor.of(np.zeros_like(pred))
    value = MSELoss()(Tensor.of(pred), Tensor.of(target), dy, _k(kernels))
    t = torch.tensor(pred, requires_grad=True)
    ref = torch.nn.functional.mse_loss(t, torch.tensor(target))
    ref.backward()
    assert value == pytest.approx(ref.item(), rel=1e-5)
    np.testing.assert_allclose(dy.a, t.grad.numpy(), rtol=1e-5, atol=1e-7)
    assert MSELoss().target_spec((4,)).dtype == "f32"


def _model(kernels):
    return Model(Sequential([Linear(None, 9), ReLU(), Linear(None, 3)]), (5,), seed=3, kernels=kernels)


OPTIMIZERS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.2, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.02, betas=(0.85, 0.95), weight_decay=0.1)),
]


@pytest.mark.parametrize("name,kw", OPTIMIZERS)
def test_optimizer_matches_torch_over_steps(kernels, name, kw):
    torch = pytest.importorskip("torch")
    ours = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}[name](**kw)
    model = _model(kernels)
    ours.bind(model)
    assert len(model.store.slots) == ours.slots
    flat = torch.tensor(model.params.a.copy(), requires_grad=True)
    ref = getattr(torch.optim, name)([flat], **kw)
    rng = np.random.default_rng(7)
    for step in range(6):
        g = rng.standard_normal(model.params.size).astype(np.float32)
        model.grads.a[...] = g
        flat.grad = torch.tensor(g)
        lr = kw["lr"] * (1.0 - 0.1 * step)          # as a schedule would pass it
        for group in ref.param_groups:
            group["lr"] = lr
        ours.step(lr)
        ref.step()
        np.testing.assert_allclose(model.params.a, flat.detach().numpy(), rtol=1e-5, atol=1e-7,
                                   err_msg=f"{name} {kw} step {step}")
    assert ours.state_dict()["steps"] == 6


def test_optimizer_config_and_errors():
    assert AdamW().get_config()["weight_decay"] == 0.01
    assert Adam().get_config()["weight_decay"] == 0.0
    assert SGD.from_config(SGD(0.1, momentum=0.9).get_config()).momentum == 0.9
    assert SGD(0.1).slots == 0 and SGD(0.1, momentum=0.5).slots == 1 and Adam().slots == 2
    with pytest.raises(ConfigError, match="nesterov"):
        SGD(0.1, nesterov=True)
    with pytest.raises(ConfigError, match="betas"):
        Adam(betas=(1.5, 0.9))
    with pytest.raises(ConfigError, match="unknown config key 'learning_rate' .*valid keys: lr"):
        AdamW.from_config({"learning_rate": 0.1})


@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_matches_torch(kernels, max_norm):
    torch = pytest.importorskip("torch")
    model = _model(kernels)
    model.reserve_optimizer_state(0)
    rng = np.random.default_rng(2)
    tensors = []
    for g in model.gradients().values():
        g[...] = rng.standard_normal(g.shape)
        tensors.append(torch.tensor(g.copy()))
        tensors[-1].grad = torch.tensor(g.copy())
    norm = clip_grad_norm(model, max_norm)
    ref = torch.nn.utils.clip_grad_norm_(tensors, max_norm)
    assert norm == pytest.approx(ref.item(), rel=1e-5)
    for g, t in zip(model.gradients().values(), tensors):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_clip_grad_norm_non_finite(kernels):
    model = _model(kernels)
    model.reserve_optimizer_state(0)
    next(iter(model.gradients().values()))[0] = np.nan
    with pytest.raises(NumericsError, match="step 12"):
        clip_grad_norm(model, 1.0, step=12)


def test_schedules():
    c = Constant(0.1)
    assert [c(s) for s in (0, 5, 1000)] == [0.1, 0.1, 0.1]
    w = LinearWarmup(1.0, warmup_steps=4)
    assert [w(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    cos = Cosine(1.0, warmup_steps=10, total_steps=110, min_lr=0.1)
    assert cos(0) == pytest.approx(0.1) and cos(9) == pytest.approx(1.0)
    assert cos(10) == pytest.approx(1.0)
    assert cos(60) == pytest.approx(0.1 + 0.9 * 0.5)
    assert cos(110) == pytest.approx(0.1) and cos(500) == pytest.approx(0.1)
    lrs = [cos(s) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))   # monotone decay after warm-up
    # lr and total_steps left open are filled in by setup (what the Trainer does)
    open_cos = make_schedule({"type": "cosine", "warmup_steps": 2}).setup(0.5, 20)
    assert open_cos.lr == 0.5 and open_cos.total_steps == 20
    assert open_cos(2) == pytest.approx(0.5)
    assert make_schedule(open_cos.get_config())(7) == open_cos(7)   # config round trip
    assert make_schedule(None) is None
    with pytest.raises(ConfigError, match="unknown schedule type 'cosin'"):
        make_schedule({"type": "cosin"})
    with pytest.raises(ConfigError, match="total_steps"):
        Cosine(1.0)(3)


def test_cosine_matches_torch_lambda():
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.3)
    warm, total = 5, 40

    def factor(s):   # our convention: warm-up step s uses (s + 1) / warm
        if s < warm:
            return (s + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warm) / (total - warm))))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    ours = Cosine(0.3, warmup_steps=warm, total_steps=total)
    for s in range(total + 3):
        assert ours(s) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
        opt.step()
        sched.step()
