"""Trainer: learns, validates its inputs, handles partial batches, allocates nothing per step."""

from __future__ import annotations

import io

import numpy as np
import pytest

from qorus_core import DataError, Model, NumericsError, Sequential, ShapeError
from qorus_core.testing import trace_allocations
from qorus_core.train.losses import CrossEntropyLoss, MSELoss
from qorus_core.train.optimizers import SGD, AdamW
from qorus_core.train.progress import Progress
from qorus_core.train.schedules import Cosine
from qorus_core.train.trainer import Trainer
from qorus_layers_mlp import GELU, Dropout, LayerNorm, Linear, ReLU


def blobs(n=300, d=16, classes=4, seed=0):
    """Digits-like data: noisy class prototypes."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((classes, d)) * 2
    y = rng.integers(0, classes, n)
    x = centers[y] + rng.standard_normal((n, d))
    return x.astype(np.float32), y.astype(np.int32)


def mlp(d=16, out=4, hidden=32, kernels="numpy", dropout=0.0):
    layers = [Linear(None, hidden), ReLU()] + ([Dropout(dropout)] if dropout else []) + [Linear(None, out)]
    return Model(Sequential(layers), (d,), seed=1, kernels=kernels)


def test_trains_to_decreasing_loss(kernels):
    x, y = blobs()
    model = mlp(kernels=kernels, dropout=0.1)
    tr = Trainer(model, CrossEntropyLoss(), AdamW(lr=5e-3), Cosine(warmup_steps=3), batch_size=32,
                 epochs=8, clip_norm=5.0, progress=False)
    hist = tr.fit(x[:250], y[:250], val=(x[250:], y[250:]))
    assert len(hist) == 8 and [h["epoch"] for h in hist] == list(range(1, 9))
    losses = [h["loss"] for h in hist]
    assert losses[-1] < 0.5 * losses[0]
    assert hist[-1]["accuracy"] > 0.9 and hist[-1]["val_accuracy"] > 0.85
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "samples_per_s", "lr"):
        assert isinstance(hist[-1][key], float), key
    assert tr.global_step == 8 * 8 and model.run.step == 64 and tr.optimizer.steps == 64
    ev = tr.evaluate(x[250:], y[250:])
    assert ev["loss"] == pytest.approx(hist[-1]["val_loss"]) and set(ev) == {"loss", "accuracy"}
    pred = tr.predict(x[:5])
    assert pred.shape == (5, 4)
    np.testing.assert_array_equal(pred, model.predict(x[:5]))


def test_regression_with_mse_and_sgd(kernels):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((200, 5)).astype(np.float32)
    y = (x @ rng.standard_normal((5, 2))).astype(np.float32)
    model = Model(Sequential([Linear(None, 2)]), (5,), kernels=kernels)
    tr = Trainer(model, MSELoss(), SGD(lr=0.05, momentum=0.9), batch_size=20, epochs=15, progress=False)
    hist = tr.fit(x, y)
    assert hist[-1]["loss"] < 1e-3 < hist[0]["loss"] and "accuracy" not in hist[-1]


def test_partial_last_batch_uses_its_own_plan():
    x, y = blobs(n=70)
    model = mlp()
    tr = Trainer(model, CrossEntropyLoss(), SGD(lr=0.1), batch_size=32, epochs=2, progress=False,
                 shuffle=False)
    tr.fit(x, y)
    assert tr.global_step == 2 * 3
    keys = {(b, t) for (b, t, _, _) in model._plans}
    assert {(32, True), (6, True)} <= keys
    # one epoch by hand (no shuffle, SGD without momentum) gives the same parameters
    ref = mlp()
    ref.reserve_optimizer_state(0)
    for _ in range(2):
        for s in range(0, 70, 32):
            p = ref.plan(min(32, 70 - s), train=True)
            p.x.a[...] = x[s:s + 32]
            p.forward()
            ref.zero_grad()
            ref.kernels.cross_entropy(p.y, _t(y[s:s + 32]), p.dy, 0.0)
            p.backward()
            ref.kernels.sgd_step(ref.params, ref.grads, ref.grads, 0.1, 0, 0, 0, False, True)
    for name, v in ref.parameters().items():
        np.testing.assert_allclose(model.parameters()[name], v, rtol=1e-6, atol=1e-7, err_msg=name)


def _t(a):
    from qorus_core import Tensor

    return Tensor.of(a)


def test_small_dataset_below_batch_size():
    x, y = blobs(n=10)
    tr = Trainer(mlp(), CrossEntropyLoss(), SGD(lr=0.1), batch_size=64, epochs=2, progress=False)
    assert len(tr.fit(x, y)) == 2 and tr.global_step == 2


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_nan_loss_raises_numerics_error():
    x, y = blobs(n=64)
    x[40] = np.nan
    tr = Trainer(mlp(), CrossEntropyLoss(), SGD(lr=0.1), batch_size=16, epochs=1, progress=False,
                 shuffle=False)
    with pytest.raises(NumericsError, match=r"step 2 \(epoch 1"):
        tr.fit(x, y)


class _InfGradLoss(CrossEntropyLoss):
    """A finite loss whose gradient holds an inf (as an overflow in backward would)."""

    def __call__(self, y, target, dy, k):
        value = super().__call__(y, target, dy, k)
        if dy is not None:
            dy.a[0, 0] = np.inf
        return value


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_non_finite_gradients_raise_when_clipping():
    x, y = blobs(n=64)
    tr = Trainer(mlp(), _InfGradLoss(), SGD(lr=0.1), batch_size=16, epochs=1, clip_norm=1.0,
                 progress=False)
    with pytest.raises(NumericsError, match="gradient norm is (inf|nan) at step 0"):
        tr.fit(x, y)


def test_wrong_inputs_raise_shape_or_data_errors():
    x, y = blobs(n=40)
    tr = Trainer(mlp(), CrossEntropyLoss(), SGD(lr=0.1), batch_size=8, progress=False)
    with pytest.raises(ShapeError, match=r"expected shape \(N, 16\), got \(40, 15\)"):
        tr.fit(x[:, :15], y)
    with pytest.raises(ShapeError, match="dtype"):
        tr.fit(x.astype(str), y)
    with pytest.raises(ShapeError, match="40 inputs but 39 targets"):
        tr.fit(x, y[:39])
    with pytest.raises(ShapeError, match="integer class indices"):
        tr.fit(x, y + 0.5)
    with pytest.raises(ShapeError, match=r"targets must have shape \(N\)"):
        tr.fit(x, y.reshape(-1, 1))
    with pytest.raises(DataError, match="4 classes"):
        tr.fit(x, y + 4)
    with pytest.raises(ShapeError, match="validation input"):
        tr.fit(x, y, val=(x[:, :3], y))
    with pytest.raises(DataError, match="no samples"):
        tr.fit(x[:0], y[:0])


def test_progress_bar_text():
    out = io.StringIO()
    bar = Progress(stream=out, force=True, interval=0.0)
    x, y = blobs(n=64)
    Trainer(mlp(), CrossEntropyLoss(), SGD(lr=0.1), batch_size=16, epochs=2, progress=bar).fit(x, y)
    text = out.getvalue()
    assert "\repoch 1/2 [" in text and "64/64" in text and "samples/s" in text and "loss" in text
    assert text.count("\n") == 2                       # one summary line per epoch


def test_progress_without_a_terminal_is_one_plain_line_per_epoch():
    """Under a pipe, in CI or a notebook: no bar, no control characters, a line per epoch."""
    out = io.StringIO()
    x, y = blobs(n=64)
    Trainer(mlp(), CrossEntropyLoss(), SGD(lr=0.1), batch_size=16, epochs=3,
            progress=Progress(stream=out)).fit(x, y)
    lines = out.getvalue().splitlines()
    assert [ln.split()[:2] for ln in lines] == [["epoch", f"{e}/3"] for e in (1, 2, 3)]
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    assert all("loss" in ln and "samples/s" in ln for ln in lines)
    silent = io.StringIO()
    Trainer(mlp(), CrossEntropyLoss(), SGD(lr=0.1), batch_size=16, epochs=1,
            progress=Progress(False, stream=silent)).fit(x, y)
    assert silent.getvalue() == ""


# ----------------------------------------------------------------- allocation
def test_training_steps_allocate_no_arrays(kernels):
    """After warm-up, steps (full and partial batches, shuffling, clipping, schedule, Dropout,
    validation) leave no new NumPy array behind, and create no temporary the size of a batch."""
    rng = np.random.default_rng(0)
    n, d, batch = 1000, 128, 256                      # a batch of inputs is 128 KiB
    x = rng.standard_normal((n, d)).astype(np.float32)
    y = rng.integers(0, 10, n).astype(np.int32)
    model = Model(Sequential([Linear(None, 128), LayerNorm(), GELU(), Dropout(0.1), Linear(None, 10)]),
                  (d,), kernels=kernels)
    tr = Trainer(model, CrossEntropyLoss(0.1), AdamW(lr=1e-3), Cosine(warmup_steps=2), batch_size=batch,
                 epochs=5, clip_norm=1.0, progress=False)
    tr.fit(x, y, val=(x[:300], y[:300]), until_epoch=1)          # warm-up: plans, scratch
    perm = np.arange(n)
    xs, ys = tr._prepare(x, y, "training")
    trace = trace_allocations(lambda: tr._epoch(xs, ys, perm), repeat=2)
    assert trace.array_bytes == 0, trace.where
    # NumPy's ufunc buffers (8192 elements) stay under this; any batch-sized array would not
    assert trace.peak_bytes < 96 * 1024, f"a step made a temporary of {trace.peak_bytes} bytes"
    trace = trace_allocations(lambda: tr.fit(x, y, val=(x[:300], y[:300]), until_epoch=3))
    assert trace.array_bytes == 0, trace.where
    assert tr.epoch == 3
