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

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..errors import CheckpointError
from ..io.safetensors import SafeTensorsFile, fsync_dir, save_file, write_atomic

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
            os.rename(target, prev)
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
    try:
        obj = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing (incomplete checkpoint)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: corrupt: {exc}") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: corrupt: expected a JSON object")
    return obj


@dataclass
class CheckpointData:
    """A checkpoint read and validated, not yet applied to a model."""

    path: Path
    config: dict[str, Any]
    weights: SafeTensorsFile
    optimizer: SafeTensorsFile
    trainer: dict[str, Any]

    @property
    def optimizer_state(self) -> dict[str, Any]:
        meta = dict(self.optimizer.metadata)
        meta.pop("format", None)
        try:
            return {k: json.loads(v) for k, v in meta.items()}
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{self.optimizer.path}: corrupt metadata: {exc}") from None


def read_checkpoint(directory: str | os.PathLike) -> CheckpointData:
    """Open and validate every file of a checkpoint (weights stay memory-mapped)."""
    path = Path(directory).absolute()
    if not path.is_dir():
        prev = path.parent / f".{path.name}.prev"   # a save crashed between its two renames
        if not (prev / CONFIG_FILE).is_file():
            raise CheckpointError(f"{path}: no checkpoint there")
        path = prev
    config = _read_json(path / CONFIG_FILE)
    trainer = _read_json(path / TRAINER_FILE)
    for name, obj in ((CONFIG_FILE, config), (TRAINER_FILE, trainer)):
        if obj.get("format") != FORMAT:
            raise CheckpointError(f"{path / name}: format {obj.get('format')!r}, expected {FORMAT}")
    if not isinstance(config.get("model"), dict):
        raise CheckpointError(f"{path / CONFIG_FILE}: no model config")
    return CheckpointData(path, config, SafeTensorsFile(path / MODEL_FILE),
                          SafeTensorsFile(path / OPTIMIZER_FILE), trainer)


def restore_model(model: Any, data: CheckpointData) -> None:
    """Copy the checkpoint's weights (and ``run.step``) into ``model``."""
    model.load_state_dict(data.weights.load(), source=str(data.weights.path))
    model.run.step = int(data.trainer.get("run_step", 0))


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
            src = data.optimizer.get(f"{slot}.{name}")
            dst = _param_view(flat, model, name)
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


def load_checkpoint(directory: str | os.PathLike, kernels: Any = None) -> Checkpoint:
    """Rebuild the model from the checkpoint's config (layers through the registry) and load
    its weights; rebuild the optimizer too when its config is there."""
    from ..model import Model
    from ..registry import get_registry

    data = read_checkpoint(directory)
    model = Model.from_config(data.config["model"], kernels=kernels)
    restore_model(model, data)
    optimizer = None
    ocfg = data.config.get("optimizer")
    if isinstance(ocfg, dict) and "type" in ocfg:
        cls = get_registry().get("optimizer", ocfg["type"])
        optimizer = cls.from_config({k: v for k, v in ocfg.items() if k != "type"}).bind(model)
        restore_optimizer(optimizer, model, data)
    return Checkpoint(model, data.trainer, optimizer, data.config)
