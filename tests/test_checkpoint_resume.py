"""Checkpoints: bit-identical resume, atomic saves that survive a crash, corrupt files rejected."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from qorus_core import CheckpointError, Model, Sequential
from qorus_core.io import safetensors as st
from qorus_core.train import checkpoint as ckpt_mod
from qorus_core.train.checkpoint import load_checkpoint, save_checkpoint
from qorus_core.train.losses import CrossEntropyLoss
from qorus_core.train.optimizers import SGD, AdamW
from qorus_core.train.schedules import Cosine
from qorus_core.train.trainer import Trainer
from qorus_layers_mlp import Dropout, LayerNorm, Linear, ReLU


def data(n=150, d=12, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.standard_normal((classes, d))[y] * 2 + rng.standard_normal((n, d))
    return x.astype(np.float32), y.astype(np.int32)


def make(kernels="numpy", epochs=3, **kw):
    model = Model(Sequential([Linear(None, 24), LayerNorm(), ReLU(), Dropout(0.3), Linear(None, 3)]),
                  (12,), seed=4, kernels=kernels)
    tr = Trainer(model, CrossEntropyLoss(0.05), AdamW(lr=3e-3), Cosine(warmup_steps=4, min_lr=1e-4),
                 batch_size=32, epochs=epochs, clip_norm=0.5, seed=9, progress=False, **kw)
    return model, tr


def assert_same_state(a, b):
    for (name, v), w in zip(a.parameters().items(), b.parameters().values()):
        assert np.array_equal(v, w), f"parameter {name} differs"
    assert len(a.store.slots) == len(b.store.slots) == 2
    for i, (s, t) in enumerate(zip(a.store.slots, b.store.slots)):
        assert np.array_equal(s.a, t.a), f"optimizer slot {i} differs"
    assert a.run.step == b.run.step


def test_resume_is_bit_identical(tmp_path, kernels):
    x, y = data()
    val = (x[:40], y[:40])
    straight, tr_a = make(kernels)
    hist_a = tr_a.fit(x, y, val=val)

    _, tr_b = make(kernels, checkpoint_dir=tmp_path / "ck", checkpoint_every=1)
    tr_b.fit(x, y, val=val, until_epoch=1)                       # "crash" after epoch 1
    assert (tmp_path / "ck" / "model.safetensors").is_file()

    resumed, tr_c = make(kernels, checkpoint_dir=tmp_path / "ck", checkpoint_every=1)
    hist_c = tr_c.fit(x, y, val=val, resume_from=tmp_path / "ck")
    assert tr_c.epoch == 3 and tr_c.global_step == tr_a.global_step
    assert_same_state(straight, resumed)
    assert [h["loss"] for h in hist_c] == [h["loss"] for h in hist_a]
    assert [h["val_accuracy"] for h in hist_c] == [h["val_accuracy"] for h in hist_a]
    assert tr_c.rng.bit_generator.state == tr_a.rng.bit_generator.state


def test_load_checkpoint_rebuilds_model_and_optimizer(tmp_path):
    x, y = data()
    model, tr = make(checkpoint_dir=tmp_path / "ck", epochs=2)
    tr.fit(x, y)
    ck = load_checkpoint(tmp_path / "ck", kernels="numpy")
    assert_same_state(model, ck.model)
    assert isinstance(ck.optimizer, AdamW) and ck.optimizer.steps == tr.optimizer.steps
    assert ck.trainer["epoch"] == 2 and ck.trainer["global_step"] == tr.global_step
    assert len(ck.trainer["history"]) == 2
    assert ck.config["loss"] == {"type": CrossEntropyLoss().type_name, "label_smoothing": 0.05}
    assert ck.config["trainer"]["batch_size"] == 32
    assert ck.config["schedule"]["type"] == "cosine"
    np.testing.assert_array_equal(ck.model.predict(x[:7]), model.predict(x[:7]))
    model2, trainer_state, optimizer, config = ck                # unpacks as a tuple too
    assert model2 is ck.model


def test_sgd_without_state_round_trips(tmp_path):
    model = Model(Sequential([Linear(3, 2)]), (3,))
    opt = SGD(lr=0.1).bind(model)
    save_checkpoint(tmp_path / "ck", model, opt)
    ck = load_checkpoint(tmp_path / "ck")
    assert isinstance(ck.optimizer, SGD) and ck.optimizer.slots == 0
    np.testing.assert_array_equal(ck.model.parameters()["0.weight"], model.parameters()["0.weight"])


def test_crash_mid_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    x, y = data()
    model, tr = make(checkpoint_dir=tmp_path / "ck", epochs=1)
    tr.fit(x, y)
    before = {n: v.copy() for n, v in model.parameters().items()}
    tr.epochs = 2
    real_save = st.save_file
    calls = []

    def failing(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 2:                   # weights written, optimizer state "crashes"
            raise OSError("simulated crash")
        real_save(tensors, path, metadata)

    monkeypatch.setattr(ckpt_mod, "save_file", failing)
    with pytest.raises(CheckpointError, match="simulated crash"):     # an OSError, reported
        tr.fit(x, y)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]      # no temp dir left
    data_ = ckpt_mod.read_checkpoint(tmp_path / "ck")
    assert data_.trainer["epoch"] == 1
    for name, v in before.items():
        np.testing.assert_array_equal(data_.weights.get(name), v)


def test_crash_between_renames_falls_back_to_previous(tmp_path, monkeypatch):
    x, y = data()
    model, tr = make(checkpoint_dir=tmp_path / "ck", epochs=1)
    tr.fit(x, y)
    real_rename = os.rename

    def rename(src, dst):
        if str(src).startswith(str(tmp_path / ".ck.tmp-")):
            raise OSError("power cut")       # old moved aside, new not yet in place
        real_rename(src, dst)

    monkeypatch.setattr(ckpt_mod.os, "rename", rename)
    with pytest.raises(CheckpointError, match="power cut"):
        save_checkpoint(tmp_path / "ck", model, tr.optimizer, tr.state_dict(), tr.get_config())
    monkeypatch.undo()
    assert not (tmp_path / "ck").exists() and (tmp_path / ".ck.prev").is_dir()
    assert ckpt_mod.read_checkpoint(tmp_path / "ck").trainer["epoch"] == 1
    save_checkpoint(tmp_path / "ck", model, tr.optimizer, tr.state_dict(), tr.get_config())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_refuses_to_replace_a_directory_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.txt").write_text("precious")
    model = Model(Sequential([Linear(3, 2)]), (3,))
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        save_checkpoint(tmp_path / "notes", model)
    assert (tmp_path / "notes" / "thesis.txt").read_text() == "precious"


@pytest.fixture
def saved(tmp_path):
    x, y = data()
    _, tr = make(checkpoint_dir=tmp_path / "ck", epochs=1)
    tr.fit(x, y)
    return tmp_path / "ck"


def _corrupt(path, how):
    if how == "truncate-weights":
        raw = (path / "model.safetensors").read_bytes()
        (path / "model.safetensors").write_bytes(raw[:len(raw) // 2])
    elif how == "truncate-optimizer":
        raw = (path / "optimizer.safetensors").read_bytes()
        (path / "optimizer.safetensors").write_bytes(raw[:-3])
    elif how == "bad-trainer-json":
        (path / "trainer.json").write_text('{"epoch": 1,')
    elif how == "missing-config":
        (path / "config.json").unlink()
    elif how == "bad-rng":
        state = json.loads((path / "trainer.json").read_text())
        state["rng"] = {"bit_generator": "PCG64", "state": "?"}
        (path / "trainer.json").write_text(json.dumps(state))
    elif how == "wrong-model":
        cfg = json.loads((path / "config.json").read_text())
        cfg["model"]["net"]["config"]["layers"][0]["config"]["out_features"] = 25
        (path / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("how,match", [
    ("truncate-weights", "model.safetensors"),
    ("truncate-optimizer", "optimizer.safetensors"),
    ("bad-trainer-json", "trainer.json: corrupt"),
    ("missing-config", "config.json: missing"),
    ("bad-rng", "trainer state"),
    ("wrong-model", "differs from this model"),
])
def test_corrupt_checkpoint_raises_checkpoint_error(saved, how, match):
    _corrupt(saved, how)
    x, y = data()
    _, tr = make()
    with pytest.raises(CheckpointError, match=match):
        tr.fit(x, y, resume_from=saved)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nothing")
