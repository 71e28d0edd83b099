"""Checkpoint files are validated field by field: wrong types, bools for ints, negative or
fractional counters, directories or FIFOs where files belong, weights in another dtype, and a
save that runs out of space all give a CheckpointError naming the file and the field, and
nothing is coerced."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from qorus_core import CheckpointError, ConfigError, Model, Sequential
from qorus_core.io.safetensors import SafeTensorsFile, save_file
from qorus_core.train import checkpoint as ckpt_mod
from qorus_core.train.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from qorus_core.train.losses import CrossEntropyLoss
from qorus_core.train.optimizers import AdamW
from qorus_core.train.trainer import Trainer
from qorus_layers_mlp import Linear, ReLU


def data(n=64):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n).astype(np.int32)
    return (rng.standard_normal((n, 6)) + y[:, None]).astype(np.float32), y


def make(epochs=1, **kw):
    model = Model(Sequential([Linear(None, 8), ReLU(), Linear(None, 3)]), (6,), seed=1,
                  kernels="numpy")
    return model, Trainer(model, CrossEntropyLoss(), AdamW(lr=1e-2), batch_size=16,
                          epochs=epochs, seed=3, progress=False, **kw)


@pytest.fixture
def saved(tmp_path):
    x, y = data()
    _, tr = make(checkpoint_dir=tmp_path / "ck")
    tr.fit(x, y)
    return tmp_path / "ck"


def _edit_json(path, fn):
    obj = json.loads(path.read_text())
    fn(obj)
    path.write_text(json.dumps(obj))


def _both_loaders_refuse(ck, match):
    """``load_checkpoint`` and a Trainer's resume both refuse, with ``match`` in the message."""
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(ck)
    x, y = data()
    _, tr = make()
    with pytest.raises(CheckpointError, match=match):
        tr.fit(x, y, resume_from=ck)


@pytest.mark.parametrize("field", ["epoch", "global_step", "run_step"])
@pytest.mark.parametrize("value", [1.5, 2.0, -1, True, "3", None])
def test_trainer_counters_must_be_non_negative_integers(saved, field, value):
    _edit_json(saved / "trainer.json", lambda t: t.__setitem__(field, value))
    _both_loaders_refuse(saved, rf"trainer\.json: field '{field}' must be a non-negative integer")


@pytest.mark.parametrize("value", [True, 1.0, "1", 2])
def test_format_must_be_the_integer_one(saved, value):
    _edit_json(saved / "config.json", lambda c: c.__setitem__("format", value))
    _both_loaders_refuse(saved, r"config\.json: field 'format'")


@pytest.mark.parametrize("rng", [
    {"bit_generator": "PCG64", "state": {"state": -1, "inc": 1}, "has_uint32": 0, "uinteger": 0},
    {"bit_generator": "PCG64", "state": {"state": 1 << 200, "inc": 1}, "has_uint32": 0,
     "uinteger": 0},
    {"bit_generator": "PCG64", "state": {"state": 1.5, "inc": 1}, "has_uint32": 0, "uinteger": 0},
    {"bit_generator": "PCG64", "state": {"state": 1, "inc": 1}, "has_uint32": True, "uinteger": 0},
    {"bit_generator": "MT19937", "state": {"state": 1, "inc": 1}, "has_uint32": 0, "uinteger": 0},
    [1, 2],
])
def test_rng_state_is_checked_before_numpy_sees_it(saved, rng):
    _edit_json(saved / "trainer.json", lambda t: t.__setitem__("rng", rng))
    _both_loaders_refuse(saved, r"trainer\.json: field 'rng'")


def test_history_must_be_a_list_of_objects(saved):
    _edit_json(saved / "trainer.json", lambda t: t.__setitem__("history", "lots"))
    _both_loaders_refuse(saved, r"trainer\.json: field 'history'")


@pytest.mark.parametrize("field,value", [
    ("input_shape", [6.0]), ("input_shape", [True]), ("input_shape", [-6]), ("input_shape", []),
    ("seed", 1.5), ("seed", True), ("seed", -2), ("input_dtype", 3), ("net", "Sequential"),
])
def test_model_config_fields(saved, field, value):
    _edit_json(saved / "config.json", lambda c: c["model"].__setitem__(field, value))
    with pytest.raises(CheckpointError, match=rf"config\.json: field 'model\.{field}'"):
        load_checkpoint(saved)


def test_optimizer_config_must_name_a_type(saved):
    _edit_json(saved / "config.json", lambda c: c.__setitem__("optimizer", {"lr": 0.1}))
    with pytest.raises(CheckpointError, match=r"config\.json: field 'optimizer'"):
        load_checkpoint(saved)


def _rewrite_optimizer(ck, meta_update=None, cast=None):
    f = SafeTensorsFile(ck / "optimizer.safetensors")
    arrays = {k: np.array(f.get(k)) for k in f.keys()}
    meta = dict(f.metadata)
    if hasattr(f, "close"):
        f.close()
    meta.update(meta_update or {})
    if cast is not None:
        arrays = {k: v.astype(cast) for k, v in arrays.items()}
    save_file(arrays, ck / "optimizer.safetensors", meta)


@pytest.mark.parametrize("steps", ["2.5", "-1", "true", '"7"'])
def test_optimizer_steps_must_be_a_non_negative_integer(saved, steps):
    _rewrite_optimizer(saved, {"steps": steps})
    _both_loaders_refuse(saved, r"optimizer\.safetensors: field 'steps' must be a non-negative")


def test_optimizer_type_must_be_a_string(saved):
    _rewrite_optimizer(saved, {"type": "[1]"})
    _both_loaders_refuse(saved, r"optimizer\.safetensors: metadata field 'type'")


@pytest.mark.parametrize("dtype,code", [(np.float64, "F64"), (np.float16, "F16")])
def test_weights_of_another_dtype_are_refused_not_cast(saved, dtype, code):
    f = SafeTensorsFile(saved / "model.safetensors")
    arrays = {k: np.array(f.get(k)) for k in f.keys()}
    if hasattr(f, "close"):
        f.close()
    name = sorted(arrays)[0]
    arrays[name] = arrays[name].astype(dtype)
    save_file(arrays, saved / "model.safetensors", {"format": "1"})
    _both_loaders_refuse(saved, rf"model\.safetensors: tensor '{name}' is stored as {code}, "
                                "the model holds float32; refusing to cast")


def test_optimizer_state_of_another_dtype_is_refused(saved):
    _rewrite_optimizer(saved, cast=np.float64)
    _both_loaders_refuse(saved, r"optimizer\.safetensors: tensor '.*' is stored as F64")


@pytest.mark.parametrize("name", ckpt_mod.FILES)
def test_a_directory_where_a_file_belongs(saved, name):
    (saved / name).unlink()
    (saved / name).mkdir()
    _both_loaders_refuse(saved, rf"{name}: is a directory")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
@pytest.mark.parametrize("name", ["config.json", "trainer.json"])
def test_a_fifo_where_a_file_belongs_is_refused_without_blocking(saved, name):
    (saved / name).unlink()
    os.mkfifo(saved / name)
    code = ("import sys\nfrom qorus_core.train.checkpoint import read_checkpoint\n"
            "from qorus_core import CheckpointError\n"
            "try:\n    read_checkpoint(sys.argv[1])\nexcept CheckpointError as e:\n"
            "    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code, str(saved)], capture_output=True,
                         text=True, timeout=60)        # a blocking open would time out
    assert out.returncode == 0, out.stderr
    assert f"{name}: is a FIFO (named pipe), not a regular file" in out.stdout


@pytest.mark.parametrize("text,match", [
    ('{"format": 1, "format": 1, "run_step": 0}', "duplicate key 'format'"),
    ("[" * 100_000 + "]" * 100_000, "corrupt"),
    ('{"format": 1, "run_step": ' + "9" * 5000 + "}", "corrupt"),
])
def test_hostile_json_is_a_checkpoint_error(saved, text, match):
    (saved / "trainer.json").write_text(text)
    with pytest.raises(CheckpointError, match=rf"trainer\.json: .*{match}"):
        read_checkpoint(saved)


def _enospc_on_fsync(monkeypatch, after=0):
    """``fsync`` reports ENOSPC, as a full disk does on the write-back of a file, from the
    ``after``-th file on (directories are synced without error)."""
    real, count = os.fsync, [0]

    def fsync(fd):
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            count[0] += 1
            if count[0] > after:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize("after", [0, 1, 3])
def test_enospc_during_a_save_keeps_the_previous_checkpoint(saved, monkeypatch, after):
    before = read_checkpoint(saved)
    weights = {k: np.array(before.weights.get(k)) for k in before.weights.keys()}
    trainer_json = (saved / "trainer.json").read_text()
    x, y = data()
    model, tr = make(epochs=2)
    tr.fit(x, y, resume_from=saved)      # one more epoch: newer weights to save over the old
    assert not all(np.array_equal(model.parameters()[k], v) for k, v in weights.items())
    _enospc_on_fsync(monkeypatch, after)
    with pytest.raises(CheckpointError, match=rf"{saved}: cannot save the checkpoint: "
                                              r"No space left on device \(ENOSPC\)"):
        save_checkpoint(saved, model, tr.optimizer, tr.state_dict(), tr.get_config())
    monkeypatch.undo()
    assert sorted(p.name for p in saved.parent.iterdir()) == ["ck"]   # no temp dir left
    assert (saved / "trainer.json").read_text() == trainer_json
    again = load_checkpoint(saved)
    for k, v in weights.items():
        np.testing.assert_array_equal(again.model.parameters()[k], v)


def test_enospc_on_a_first_save_leaves_nothing(tmp_path, monkeypatch):
    model, _ = make()
    _enospc_on_fsync(monkeypatch)
    with pytest.raises(CheckpointError, match="ENOSPC"):
        save_checkpoint(tmp_path / "fresh", model)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(CheckpointError, match="no checkpoint"):
        read_checkpoint(tmp_path / "fresh")


def test_a_valid_checkpoint_still_loads_and_resumes(saved):
    ck = load_checkpoint(saved)
    assert ck.trainer["epoch"] == 1 and ck.optimizer.steps == ck.trainer["global_step"] > 0
    x, y = data()
    _, tr = make(epochs=2)
    tr.fit(x, y, resume_from=saved)
    assert tr.epoch == 2


# -- files are closed once a checkpoint is loaded ------------------------------------------------
def _open_under(directory) -> list[str]:
    """The files under ``directory`` this process holds open (Linux: /proc/self/fd)."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:   # the descriptor listdir itself used, closed meanwhile
            continue
        if target.startswith(str(directory)):
            out.append(target)
    return out


needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="no /proc/self/fd")


@needs_proc
def test_load_checkpoint_and_resume_leave_no_file_open(saved):
    ck = load_checkpoint(saved)                   # the result is kept alive: only a close frees
    assert ck.model.parameters() and _open_under(saved) == []
    x, y = data()
    _, tr = make(epochs=2)
    tr.fit(x, y, resume_from=saved)
    assert _open_under(saved) == []
    with read_checkpoint(saved) as opened:
        assert {os.path.basename(f) for f in _open_under(saved)} == {
            "model.safetensors", "optimizer.safetensors"}
    assert _open_under(saved) == []
    with pytest.raises(CheckpointError, match="closed"):
        opened.weights.get(opened.weights.keys()[0])


@needs_proc
def test_a_failed_load_leaves_no_file_open_while_its_error_is_kept(saved):
    """A traceback keeps the failing frame's locals alive: the files must be closed anyway."""
    _edit_json(saved / "config.json", lambda c: c["model"].update(input_shape=[7]))
    errors = []
    for load in (lambda: load_checkpoint(saved),
                 lambda: make()[1].fit(*data(), resume_from=saved)):
        with pytest.raises(CheckpointError) as info:
            load()
        errors.append(info.value)                 # holds __traceback__ and its frames
        assert _open_under(saved) == [], errors[-1]
    (saved / "optimizer.safetensors").write_bytes(b"\0" * 4)   # the second file fails to open
    with pytest.raises(CheckpointError, match="optimizer.safetensors: truncated") as info:
        read_checkpoint(saved)
    assert _open_under(saved) == []               # the first one was closed again


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_trust_code_must_be_a_bool(saved, value):
    with pytest.raises(ConfigError, match="load_checkpoint: trust_code must be true or false"):
        load_checkpoint(saved, trust_code=value)


def test_optimizer_metadata_json_is_strict(saved):
    """The optimizer's metadata values go through the same strict JSON as the files."""
    f = SafeTensorsFile(saved / "optimizer.safetensors")
    tensors = {k: np.array(f.get(k)) for k in f.keys()}
    meta = dict(f.metadata)
    f.close()
    for value, match in (('{"a": 1, "a": 2}', "duplicate key 'a'"),
                         ("9" * 5000, "an integer of 5000 digits"),
                         ("[" * 100_000 + "]" * 100_000, "nested too deeply")):
        save_file(tensors, saved / "optimizer.safetensors", {**meta, "steps": value})
        with pytest.raises(CheckpointError, match=r"optimizer\.safetensors: corrupt metadata "
                                                  rf"'steps': .*{match}"):
            load_checkpoint(saved)


SAVE_IN_A_FRESH_PROCESS = """
import sys
import numpy as np
from qorus_core import Model, Sequential
from qorus_core.train.checkpoint import load_checkpoint, save_checkpoint
from qorus_core.train.optimizers import AdamW
from qorus_layers_mlp import Linear
model = Model(Sequential([Linear(4, 3)]), (4,))
opt = AdamW(lr=1e-2)
opt.bind(model)
save_checkpoint(sys.argv[1], model, opt)          # nothing has loaded the registry before this
ck = load_checkpoint(sys.argv[1])
assert type(ck.optimizer) is AdamW, ck.optimizer
print(ck.optimizer.type_name)
"""


def test_a_checkpoint_saved_before_the_registry_loaded_loads(tmp_path):
    """The optimizer state's type and the config's must be the same registered name whatever
    loaded the registry first (the state was written as 'AdamW', then refused as 'core.AdamW')."""
    out = subprocess.run([sys.executable, "-c", SAVE_IN_A_FRESH_PROCESS, str(tmp_path / "ck")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "core.AdamW"
