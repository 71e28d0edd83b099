"""Callbacks: early stopping (and restoring the best weights), reduce-LR-on-plateau, keeping
the best checkpoint, a plugin's callback through the hook, and exact resume with their state."""

from __future__ import annotations

import numpy as np
import pytest

from qorus_core import ConfigError, Model, Sequential
from qorus_core.train.callbacks import (
    Callback,
    EarlyStopping,
    ModelCheckpoint,
    ReduceLROnPlateau,
    make_callback,
)
from qorus_core.train.losses import CrossEntropyLoss
from qorus_core.train.optimizers import SGD
from qorus_core.train.trainer import Trainer
from qorus_layers_mlp import Linear, ReLU


def _setup(callbacks, epochs=12, lr=0.5, **kw):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((96, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    xv = rng.standard_normal((32, 6)).astype(np.float32)
    yv = rng.integers(0, 2, 32).astype(np.int32)          # noise: validation stops improving
    m = Model(Sequential([Linear(6, 32), ReLU(), Linear(32, 2)]), (6,), seed=1)
    tr = Trainer(m, CrossEntropyLoss(), SGD(lr=lr), batch_size=16, epochs=epochs,
                 progress=False, callbacks=callbacks, **kw)
    return tr, (x, y), (xv, yv)


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_train_begin(self, trainer):
        self.events.append("begin")

    def on_epoch_end(self, trainer, epoch, logs):
        self.events.append((epoch, round(logs["lr"], 6), "val_loss" in logs))

    def on_train_end(self, trainer):
        self.events.append("end")


def test_early_stopping_stops_after_patience_and_restores_the_best():
    es = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    rec = Recorder()
    tr, train, val = _setup([es, rec], epochs=30)
    hist = tr.fit(*train, val=val)
    vals = [r["val_loss"] for r in hist]
    best = int(np.argmin(vals))
    assert len(hist) == best + 1 + 3 < 30          # stopped patience + 1 epochs after the best
    assert es.stopped_epoch == len(hist) and rec.events[0] == "begin" and rec.events[-1] == "end"
    assert tr.evaluate(*val)["loss"] == pytest.approx(vals[best], rel=1e-6)


def test_reduce_lr_on_plateau_scales_the_learning_rate():
    rl = ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=0, min_lr=0.1)
    rec = Recorder()
    tr, train, val = _setup([rl, rec], epochs=10)
    tr.fit(*train, val=val)
    lrs = [e[1] for e in rec.events if isinstance(e, tuple)]
    assert lrs[0] == 0.5 and all(b <= a for a, b in zip(lrs, lrs[1:]))   # never raised
    assert any(b == a / 2 for a, b in zip(lrs, lrs[1:]))                  # halved on a plateau
    assert min(lrs) >= 0.1                                                 # min_lr holds


def test_model_checkpoint_keeps_the_best(tmp_path):
    ck = ModelCheckpoint(tmp_path / "best", monitor="val_loss")
    tr, train, val = _setup([ck], epochs=8)
    hist = tr.fit(*train, val=val)
    best = int(np.argmin([r["val_loss"] for r in hist]))
    assert ck.saved_epoch == best + 1
    back = Model.load(tmp_path / "best")
    assert Trainer(back, CrossEntropyLoss(), SGD(lr=0.1), progress=False).evaluate(*val)["loss"] \
        == pytest.approx(hist[best]["val_loss"], rel=1e-6)


def test_resume_keeps_callback_state(tmp_path):
    """An interrupted run with ReduceLROnPlateau resumes to the same history."""
    def run(split):
        tr, train, val = _setup([ReduceLROnPlateau(factor=0.5, patience=1)], epochs=8,
                                checkpoint_dir=tmp_path / f"ck{split}")
        if split:
            tr.fit(*train, val=val, until_epoch=4)
            tr, train, val = _setup([ReduceLROnPlateau(factor=0.5, patience=1)], epochs=8)
            tr.fit(*train, val=val, resume_from=tmp_path / f"ck{split}")
        else:
            tr.fit(*train, val=val)
        return [(r["loss"], r["lr"]) for r in tr.history]

    assert run(True) == run(False)


def test_callbacks_by_name_and_bad_configs():
    assert isinstance(make_callback({"type": "EarlyStopping", "patience": 3}), EarlyStopping)
    with pytest.raises(ConfigError, match="did you mean 'patience'"):
        make_callback({"type": "EarlyStopping", "patiense": 3})
    with pytest.raises(Exception, match="unknown callback 'EarlyStop'"):
        make_callback({"type": "EarlyStop"})
    tr, train, _ = _setup([EarlyStopping(monitor="val_accuracy")], epochs=2)
    with pytest.raises(ConfigError, match="'val_accuracy' is not in the history.*needs validation"):
        tr.fit(*train)


def test_metrics_by_name_in_validation_and_evaluate():
    from sklearn.metrics import f1_score

    tr, train, val = _setup(None, epochs=2,
                            metrics=["accuracy", "f1", {"type": "top_k_accuracy", "k": 1}])
    hist = tr.fit(*train, val=val)
    assert {"val_accuracy", "val_f1", "val_top1_accuracy"} <= set(hist[-1])
    got = tr.evaluate(*val)
    assert got["top1_accuracy"] == got["accuracy"]
    pred = tr.predict(val[0]).argmax(-1)
    assert got["accuracy"] == pytest.approx(float((pred == val[1]).mean()))
    assert got["f1"] == pytest.approx(f1_score(val[1], pred, average="macro"))
    with pytest.raises(ConfigError, match="did you mean accuracy"):
        _setup(None, metrics=["acuracy"])
