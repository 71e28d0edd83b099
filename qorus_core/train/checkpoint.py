"""Checkpoints: a directory written atomically as a whole, enough to resume bit-identically.

    DIR/model.safetensors      weights (PyTorch state_dict names)
    DIR/optimizer.safetensors  state buffers as ``<slot>.<param>`` + metadata (type, steps)
    DIR/config.json            model config and the loss/optimizer/schedule/trainer configs
    DIR/trainer.json           epoch, global step, shuffling RNG state, history, model.run.step

Saving writes a fresh ``.DIR.tmp-*`` sibling, fsyncs it, then swaps it in: the old checkpoint
is renamed to ``.DIR.prev`` first and removed only once the new one is in place, so a crash at
any moment leaves one complete checkpoint (``load`` falls back to ``.DIR.prev`` if DIR is gone).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..errors import CheckpointError, QorusError, prefixed
from ..io import strict_json
from ..io.mapped import read_regular
from ..io.safetensors import DTYPES, SafeTensorsFile, fsync_dir, save_file, write_atomic
from ..validate import boolean

FORMAT = 1
MODEL_FILE, OPTIMIZER_FILE = "model.safetensors", "optimizer.safetensors"
CONFIG_FILE, TRAINER_FILE = "config.json", "trainer.json"
FILES = (MODEL_FILE, OPTIMIZER_FILE, CONFIG_FILE, TRAINER_FILE)


def _param_view(flat: np.ndarray, model: Any, name: str) -> np.ndarray:
    """The part of a params-shaped flat buffer (a grads or optimizer slot) that holds ``name``."""
    t = model.store.tensors[name]
    start = model.store.offsets[name] // 4
    return flat[start:start + t.size].reshape(t.shape)


def save_checkpoint(directory: str | os.PathLike, model: Any, optimizer: Any = None,
                    trainer_state: dict[str, Any] | None = None,
                    config: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint of ``model`` (and ``optimizer``'s state, the Trainer's state and
    configs) to ``directory``, atomically replacing any checkpoint there. Returns the path."""
    target = Path(directory).absolute()
    try:
        return _save(target, model, optimizer, trainer_state, config)
    except OSError as exc:   # ENOSPC, EACCES, EROFS, ...: the old checkpoint (if any) is intact
        code = errno.errorcode.get(exc.errno or 0, "")
        where = exc.filename or target
        raise CheckpointError(f"{target}: cannot save the checkpoint: {exc.strerror or exc}"
                              f"{f' ({code})' if code else ''} at {where}; "
                              "the previous checkpoint, if any, is kept and no partial one is left") from None


def _save(target: Path, model: Any, optimizer: Any, trainer_state: dict[str, Any] | None,
          config: dict[str, Any] | None) -> Path:
    if target.exists() and (not target.is_dir() or (any(target.iterdir()) and
                                                     not (target / CONFIG_FILE).exists())):
        raise CheckpointError(f"{target}: exists and is not a checkpoint; refusing to replace it")
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    for stale in parent.glob(f".{target.name}.tmp-*"):   # left by a crashed save
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{target.name}.tmp-"))
    prev = parent / f".{target.name}.prev"
    try:
        save_file(model.state_dict(), tmp / MODEL_FILE, {"format": str(FORMAT)})
        slots: dict[str, np.ndarray] = {}
        meta = {"format": str(FORMAT)}
        if optimizer is not None:
            meta.update({k: json.dumps(v) for k, v in optimizer.state_dict().items()})
            for i, slot in enumerate(optimizer.slot_names):
                flat = model.store.slots[i].a
                for name in model.store.tensors:
                    slots[f"{slot}.{name}"] = _param_view(flat, model, name)
        save_file(slots, tmp / OPTIMIZER_FILE, meta)
        cfg = {"format": FORMAT, "model": model.get_config(), **(config or {})}
        if optimizer is not None and "optimizer" not in cfg:
            cfg["optimizer"] = {"type": optimizer.type_name, **optimizer.get_config()}
        _write_json(tmp / CONFIG_FILE, cfg)
        _write_json(tmp / TRAINER_FILE, {"format": FORMAT, "run_step": int(model.run.step),
                                         **(trainer_state or {})})
        fsync_dir(tmp)
        if target.exists():
            if prev.exists():            # target is complete, so an old .prev is stale
                shutil.rmtree(prev)
            os.rename(target, prev)      # from here until the next rename, load uses .prev
        os.rename(tmp, target)
        fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(prev, ignore_errors=True)
    return target


def _write_json(path: Path, obj: Any) -> None:
    try:
        text = json.dumps(obj, indent=1, sort_keys=True, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot write as JSON: {exc}") from None
    write_atomic(path, [text.encode("utf-8")])


def _read_json(path: Path) -> dict[str, Any]:
    """A checkpoint's JSON file: a regular file holding one strict JSON object."""
    obj = strict_json.loads(read_regular(path, CheckpointError), f"{path}: corrupt", CheckpointError)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: corrupt: expected a JSON object")
    return obj


def _count(obj: dict[str, Any], key: str, where: Path, required: bool = False) -> None:
    """``obj[key]`` must be a non-negative integer (not a bool, not a float such as 2.0)."""
    if key not in obj:
        if required:
            raise CheckpointError(f"{where}: field {key!r} is missing")
        return
    v = obj[key]
    if type(v) is not int or v < 0:
        raise CheckpointError(f"{where}: field {key!r} must be a non-negative integer, got {v!r}")


def _check_trainer(trainer: dict[str, Any], where: Path) -> None:
    for key in ("run_step", "epoch", "global_step"):
        _count(trainer, key, where)
    if "history" in trainer and not (isinstance(trainer["history"], list) and
                                     all(isinstance(r, dict) for r in trainer["history"])):
        raise CheckpointError(f"{where}: field 'history' must be a list of objects")
    if "rng" in trainer:
        _check_rng(trainer["rng"], where)
    scale = trainer.get("lr_scale", 1.0)
    if type(scale) not in (int, float) or not 0 < scale < float("inf"):
        raise CheckpointError(f"{where}: field 'lr_scale' must be a positive number, got {scale!r}")
    if not (isinstance(trainer.get("callbacks", []), list)
            and all(isinstance(c, dict) for c in trainer.get("callbacks", []))):
        raise CheckpointError(f"{where}: field 'callbacks' must be a list of objects")


def _check_rng(rng: Any, where: Path) -> None:
    """The Trainer's shuffling RNG is NumPy's default PCG64: its state must be exactly that
    (integers in range, no floats or bools NumPy would coerce), checked on a scratch one."""
    bad = f"{where}: field 'rng' (the trainer state's shuffling RNG) must be a PCG64 state"
    if not (isinstance(rng, dict) and rng.get("bit_generator") == "PCG64"
            and set(rng) == {"bit_generator", "state", "has_uint32", "uinteger"}
            and isinstance(rng["state"], dict) and set(rng["state"]) == {"state", "inc"}
            and all(type(v) is int for v in (*rng["state"].values(), rng["has_uint32"],
                                             rng["uinteger"]))
            and rng["has_uint32"] in (0, 1)):
        raise CheckpointError(f"{bad}, got {rng!r:.200}")
    try:
        np.random.PCG64().state = rng
    except (TypeError, ValueError, OverflowError, KeyError) as exc:
        raise CheckpointError(f"{bad}: {exc}") from None


def _check_model_config(model: dict[str, Any], where: Path) -> None:
    shape = model.get("input_shape")
    functional = isinstance(model.get("net"), dict) and model["net"].get("type") == "core.Functional"
    if not (functional and shape is None) and not (isinstance(shape, list) and shape and
            all(type(d) is int and d > 0 for d in shape)):
        raise CheckpointError(f"{where}: field 'model.input_shape' must be a list of positive "
                              f"integers, got {shape!r}")
    if not isinstance(model.get("net"), dict) or not isinstance(model["net"].get("type"), str):
        raise CheckpointError(f"{where}: field 'model.net' must be a layer object with a 'type'")
    if "input_dtype" in model and not isinstance(model["input_dtype"], str):
        raise CheckpointError(f"{where}: field 'model.input_dtype' must be a string, "
                              f"got {model['input_dtype']!r}")
    if "seed" in model and (type(model["seed"]) is not int or model["seed"] < 0):
        raise CheckpointError(f"{where}: field 'model.seed' must be a non-negative integer, "
                              f"got {model['seed']!r}")


@dataclass
class CheckpointData:
    """A checkpoint read and validated, not yet applied to a model. Its two safetensors files
    stay mapped until ``close()`` (or the end of a ``with`` block): restore, then close. A
    ``with`` block left by an exception first clears the locals of the frames it passed
    through (its traceback keeps their lines): a weights view held there would keep the map,
    and so a descriptor, open for as long as the error is kept."""

    path: Path
    config: dict[str, Any]
    weights: SafeTensorsFile
    optimizer: SafeTensorsFile
    trainer: dict[str, Any]

    def close(self) -> None:
        """Drop both files' maps and descriptors (arrays copied out of them stay valid)."""
        self.weights.close()
        self.optimizer.close()

    def __enter__(self) -> CheckpointData:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if tb is not None:   # finished frames below may hold views, which keep a map open
            traceback.clear_frames(tb)
        self.close()

    @property
    def optimizer_state(self) -> dict[str, Any]:
        """The optimizer's saved ``state_dict`` (``type``, ``steps``): the optimizer file's metadata,
        JSON-decoded and checked; CheckpointError when it is corrupt."""
        where = self.optimizer.path
        meta = dict(self.optimizer.metadata)
        meta.pop("format", None)
        state = {k: strict_json.loads(v, f"{where}: corrupt metadata {k!r}", CheckpointError)
                 for k, v in meta.items()}
        _count(state, "steps", where)
        if "type" in state and not isinstance(state["type"], str):
            raise CheckpointError(f"{where}: metadata field 'type' must be a string, "
                                  f"got {state['type']!r}")
        return state


def read_checkpoint(directory: str | os.PathLike) -> CheckpointData:
    """Open and validate every file of a checkpoint. The weights stay memory-mapped: use the
    result in a ``with`` block (or ``close()`` it) so the files are not held open."""
    path = Path(directory).absolute()
    if not path.is_dir():
        prev = path.parent / f".{path.name}.prev"   # a save crashed between its two renames
        if not (prev / CONFIG_FILE).is_file():
            raise CheckpointError(f"{path}: no checkpoint there")
        path = prev
    for name in FILES:   # each is refused when opened if it is not a regular file
        if not os.path.lexists(path / name):
            raise CheckpointError(f"{path / name}: missing (incomplete checkpoint)")
    config = _read_json(path / CONFIG_FILE)
    trainer = _read_json(path / TRAINER_FILE)
    for name, obj in ((CONFIG_FILE, config), (TRAINER_FILE, trainer)):
        if type(obj.get("format")) is not int or obj["format"] != FORMAT:
            raise CheckpointError(f"{path / name}: field 'format' is {obj.get('format')!r}, "
                                  f"expected {FORMAT}")
    if not isinstance(config.get("model"), dict):
        raise CheckpointError(f"{path / CONFIG_FILE}: field 'model' (the model config) is missing")
    _check_model_config(config["model"], path / CONFIG_FILE)
    ocfg = config.get("optimizer")
    if ocfg is not None and not (isinstance(ocfg, dict) and isinstance(ocfg.get("type"), str)):
        raise CheckpointError(f"{path / CONFIG_FILE}: field 'optimizer' must be an object with a "
                              f"'type' string, got {ocfg!r:.200}")
    _check_trainer(trainer, path / TRAINER_FILE)
    weights = SafeTensorsFile(path / MODEL_FILE)
    try:
        optimizer = SafeTensorsFile(path / OPTIMIZER_FILE)
    except BaseException:
        weights.close()
        raise
    return CheckpointData(path, config, weights, optimizer, trainer)


def _check_dtype(f: SafeTensorsFile, name: str, expected: np.dtype) -> None:
    """Refuse a tensor stored in another dtype than the model holds (no silent cast: an f64 or
    f16 or BF16 file is another model's, or a converter's mistake)."""
    code = f.dtype(name)
    if code == "BF16" or np.dtype(DTYPES[code]) != np.dtype(expected):
        raise CheckpointError(f"{f.path}: tensor {name!r} is stored as {code}, the model holds "
                              f"{np.dtype(expected).name}; refusing to cast")


def restore_model(model: Any, data: CheckpointData) -> None:
    """Copy the checkpoint's weights (and ``run.step``) into ``model``; each weight must have
    the dtype the model holds."""
    mine = model._saved_arrays()
    for name in data.weights.keys():
        if name in mine:
            _check_dtype(data.weights, name, mine[name].dtype)
    model.load_state_dict(data.weights.load(), source=str(data.weights.path))
    model.run.step = data.trainer.get("run_step", 0)


def restore_optimizer(optimizer: Any, model: Any, data: CheckpointData) -> None:
    """Copy the saved state buffers and step count into ``optimizer`` (bound to ``model``)."""
    where = data.optimizer.path
    state = data.optimizer_state
    if state.get("type") not in (None, optimizer.type_name):
        raise CheckpointError(f"{where}: holds {state.get('type')} state, the optimizer is "
                              f"{optimizer.type_name}")
    if optimizer.model is not model:
        optimizer.bind(model)
    expected = {f"{s}.{n}" for s in optimizer.slot_names for n in model.store.tensors}
    if set(data.optimizer.keys()) != expected:
        missing = sorted(expected - set(data.optimizer.keys()))[:5]
        extra = sorted(set(data.optimizer.keys()) - expected)[:5]
        raise CheckpointError(f"{where}: state does not fit the model: missing {missing}, unexpected {extra}")
    for i, slot in enumerate(optimizer.slot_names):
        flat = model.store.slots[i].a
        for name in model.store.tensors:
            dst = _param_view(flat, model, name)
            _check_dtype(data.optimizer, f"{slot}.{name}", dst.dtype)
            src = data.optimizer.get(f"{slot}.{name}")
            if src.shape != dst.shape:
                raise CheckpointError(f"{where}: {slot}.{name} has shape {src.shape}, expected {dst.shape}")
            dst[...] = src
    optimizer.load_state_dict(state if "steps" in state else {"steps": 0})


class Checkpoint(NamedTuple):
    """What ``load_checkpoint`` gives: the model, the Trainer state, the optimizer (bound to
    the model, state restored; None if the checkpoint names none), and the configs."""

    model: Any
    trainer: dict[str, Any]
    optimizer: Any
    config: dict[str, Any]


def load_checkpoint(directory: str | os.PathLike, kernels: Any = None,
                    trust_code: bool = False) -> Checkpoint:
    """Rebuild the model from the checkpoint's config and load its weights; rebuild the
    optimizer too when its config is there. Layers and the optimizer resolve through the
    registry only: a ``module:Class`` layer type (an unregistered layer) would import, and so
    run, a module, and is refused unless ``trust_code=True`` (for checkpoints you trust,
    like ``torch.load(weights_only=False)``). Nothing else in a checkpoint is imported or
    evaluated: the rest is JSON data and safetensors arrays."""
    from ..model import Model
    from ..registry import get_registry

    trust_code = boolean(trust_code, "trust_code", "load_checkpoint")
    with read_checkpoint(directory) as data:
        where = data.path / CONFIG_FILE
        try:
            model = Model.from_config(data.config["model"], kernels=kernels,
                                      allow_import=trust_code)
        except QorusError as exc:
            raise prefixed(exc, f"{where}: model") from None
        restore_model(model, data)
        optimizer = None
        ocfg = data.config.get("optimizer")
        if ocfg is not None:
            try:
                optimizer = get_registry().get("optimizer", ocfg["type"]).from_config(
                    {k: v for k, v in ocfg.items() if k != "type"})
            except QorusError as exc:
                raise prefixed(exc, f"{where}: optimizer") from None
            except (TypeError, ValueError) as exc:
                raise CheckpointError(f"{where}: optimizer {ocfg['type']}: {exc}") from None
            optimizer.bind(model)
            restore_optimizer(optimizer, model, data)
    return Checkpoint(model, data.trainer, optimizer, data.config)
