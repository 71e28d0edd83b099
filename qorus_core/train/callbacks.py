"""Callbacks: code the Trainer runs at the end of each epoch, as Keras' (``on_epoch_end``
with the epoch's row of the history: ``loss``, ``val_loss``, metrics...).

- ``EarlyStopping``: stop when ``monitor`` has not improved for ``patience`` epochs, and
  optionally put the best epoch's weights back;
- ``ReduceLROnPlateau``: multiply the learning rate by ``factor`` when ``monitor`` stalls;
- ``ModelCheckpoint``: keep the best (or the latest) checkpoint in a directory.

Each keeps its state in ``state_dict`` (saved in the Trainer's checkpoint), so a resumed run
decides as the uninterrupted one would. Plugins add their own through the
``qorus_register_callbacks`` hook; a ``[[callbacks]]`` table of ``qorus train`` names one.
"""

from __future__ import annotations

import math
import os
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError
from ..validate import boolean, choice, config_keys, nonneg_int, real


class Callback:
    """Base: override what you need. ``trainer.stop_training = True`` ends the run after
    this epoch; ``trainer.lr_scale`` multiplies every learning rate the optimizer gets."""

    registry_name: ClassVar[str] = ""

    def on_train_begin(self, trainer: Any) -> None:
        """Before the first epoch of a ``fit`` call."""

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, Any]) -> None:
        """After epoch ``epoch`` (1-based) and its validation; ``logs`` is its history row."""

    def on_train_end(self, trainer: Any) -> None:
        """When ``fit`` returns (also after an early stop)."""

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps of this callback (JSON values)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict``'s output."""

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments, from which ``from_config`` rebuilds it (JSON values; none here)."""
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Callback:
        """Build one from ``get_config``'s output (a ``[[callbacks]]`` table without its ``type``);
        ConfigError for a key the constructor does not take."""
        config_keys(cls, config, f"callback {cls.registry_name or cls.__name__}")
        return cls(**config)

    @property
    def type_name(self) -> str:
        """The registered name (``core.EarlyStopping``), the class name for an unregistered one."""
        from ..registry import registered_name

        return registered_name(type(self), "callback") or type(self).__name__


class _Monitor(Callback):
    """Tracks the best value of ``monitor``: lower is better for losses and errors, higher
    for accuracies, precision, recall and F1 (``mode="auto"``), or as ``mode`` says."""

    def __init__(self, monitor: str, mode: str, min_delta: float) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise ConfigError(f"{type(self).__name__}: monitor must be a history key such as "
                              f"'val_loss', got {monitor!r}")
        self.monitor = monitor
        self.mode = choice(mode, "mode", type(self).__name__, ("auto", "min", "max"))
        self.min_delta = real(min_delta, "min_delta", type(self).__name__, lo=0.0)
        self.best: float | None = None

    def _higher_is_better(self) -> bool:
        if self.mode != "auto":
            return self.mode == "max"
        return any(w in self.monitor for w in ("acc", "precision", "recall", "f1"))

    def _value(self, logs: dict[str, Any]) -> float:
        if self.monitor not in logs:
            raise ConfigError(f"{type(self).__name__}: monitor {self.monitor!r} is not in the "
                              f"history (keys: {', '.join(logs)}); 'val_*' needs validation data")
        return float(logs[self.monitor])

    def _improved(self, value: float) -> bool:
        """Whether ``value`` beats the best so far by ``min_delta`` (and record it)."""
        if math.isnan(value):
            return False
        if self.best is None or (value > self.best + self.min_delta if self._higher_is_better()
                                 else value < self.best - self.min_delta):
            self.best = value
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")


class EarlyStopping(_Monitor):
    """Stop training when a monitored value stops improving (Keras' EarlyStopping).

    Stops when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs;
    ``restore_best_weights`` puts the best epoch's parameters back when it stops."""

    def __init__(self, monitor: str = "val_loss", patience: int = 0, min_delta: float = 0.0,
                 mode: str = "auto", restore_best_weights: bool = False) -> None:
        super().__init__(monitor, mode, min_delta)
        self.patience = nonneg_int(patience, "patience", "EarlyStopping")
        self.restore_best_weights = boolean(restore_best_weights, "restore_best_weights",
                                            "EarlyStopping")
        self.wait = 0
        self.stopped_epoch = 0
        self._best_params: np.ndarray | None = None

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, Any]) -> None:
        """On an improvement of ``monitor``, reset the wait (and copy the weights, with
        ``restore_best_weights``); else, once the wait exceeds ``patience``, stop the run
        and put the best weights back."""
        if self._improved(self._value(logs)):
            self.wait = 0
            if self.restore_best_weights:
                if self._best_params is None:
                    self._best_params = trainer.model.params.a.copy()
                else:
                    np.copyto(self._best_params, trainer.model.params.a)
            return
        self.wait += 1
        if self.wait > self.patience:
            trainer.stop_training = True
            self.stopped_epoch = epoch
            if self._best_params is not None:
                np.copyto(trainer.model.params.w, self._best_params)

    def state_dict(self) -> dict[str, Any]:
        """The best value and the epochs waited since it."""
        return {"best": self.best, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the best value and the wait (the best weights themselves are not checkpointed)."""
        self.best, self.wait = state.get("best"), int(state.get("wait", 0))

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments, from which ``from_config`` rebuilds an equal callback."""
        return {"monitor": self.monitor, "patience": self.patience, "min_delta": self.min_delta,
                "mode": self.mode, "restore_best_weights": self.restore_best_weights}


class ReduceLROnPlateau(_Monitor):
    """Lower the learning rate when a monitored value stops improving.

    Multiplies the rate by ``factor`` when ``monitor`` has not improved for ``patience``
    epochs, then waits ``cooldown`` epochs; never below ``min_lr`` (on the optimizer's base
    rate; a schedule's rates are scaled alike)."""

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0,
                 mode: str = "auto") -> None:
        super().__init__(monitor, mode, min_delta)
        self.factor = real(factor, "factor", "ReduceLROnPlateau", 0.0, 1.0, True, True)
        self.patience = nonneg_int(patience, "patience", "ReduceLROnPlateau")
        self.cooldown = nonneg_int(cooldown, "cooldown", "ReduceLROnPlateau")
        self.min_lr = real(min_lr, "min_lr", "ReduceLROnPlateau", lo=0.0)
        self.wait = self.cooling = 0

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, Any]) -> None:
        """Count the cooldown down; after more than ``patience`` epochs without improvement (outside
        a cooldown), set ``trainer.lr_scale`` so the lr becomes ``factor`` times what it was
        (not below ``min_lr``), then start a cooldown."""
        if self.cooling:
            self.cooling -= 1
        if self._improved(self._value(logs)):
            self.wait = 0
            return
        if self.cooling:
            return
        self.wait += 1
        if self.wait > self.patience:
            base = trainer.optimizer.lr
            new = max(base * trainer.lr_scale * self.factor, self.min_lr)
            trainer.lr_scale = new / base if base else trainer.lr_scale
            self.wait, self.cooling = 0, self.cooldown

    def state_dict(self) -> dict[str, Any]:
        """The best value, the epochs waited and the cooldown epochs left."""
        return {"best": self.best, "wait": self.wait, "cooling": self.cooling}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the best value, the wait and the cooldown epochs left."""
        self.best = state.get("best")
        self.wait, self.cooling = int(state.get("wait", 0)), int(state.get("cooling", 0))

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments, from which ``from_config`` rebuilds an equal callback."""
        return {"monitor": self.monitor, "factor": self.factor, "patience": self.patience,
                "min_delta": self.min_delta, "cooldown": self.cooldown, "min_lr": self.min_lr,
                "mode": self.mode}


class ModelCheckpoint(_Monitor):
    """Keep the best checkpoint of a run (or the latest) in a directory.

    Saves (atomically) after each epoch where ``monitor`` improved (``save_best_only``;
    else after every epoch): the best model survives a run that then overfits. Load it
    with ``Model.load`` or resume from it."""

    def __init__(self, directory: str | os.PathLike, monitor: str = "val_loss",
                 save_best_only: bool = True, mode: str = "auto", min_delta: float = 0.0) -> None:
        super().__init__(monitor, mode, min_delta)
        if not isinstance(directory, (str, os.PathLike)):
            raise ConfigError(f"ModelCheckpoint: directory must be a path, got {directory!r}")
        self.directory = os.fspath(directory)
        self.save_best_only = boolean(save_best_only, "save_best_only", "ModelCheckpoint")
        self.saved_epoch = 0

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, Any]) -> None:
        """Save the Trainer's checkpoint into ``directory`` when ``monitor`` improved (after every
        epoch without ``save_best_only``), and note the epoch."""
        improved = self._improved(self._value(logs))
        if improved or not self.save_best_only:
            trainer.save_checkpoint(self.directory)
            self.saved_epoch = epoch

    def state_dict(self) -> dict[str, Any]:
        """The best value and the last epoch saved."""
        return {"best": self.best, "saved_epoch": self.saved_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the best value and the last epoch saved."""
        self.best, self.saved_epoch = state.get("best"), int(state.get("saved_epoch", 0))

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments, from which ``from_config`` rebuilds an equal callback."""
        return {"directory": self.directory, "monitor": self.monitor,
                "save_best_only": self.save_best_only, "mode": self.mode,
                "min_delta": self.min_delta}


#: what core registers, under ``core.<name>``
CALLBACKS: dict[str, type[Callback]] = {"EarlyStopping": EarlyStopping,
                                        "ReduceLROnPlateau": ReduceLROnPlateau,
                                        "ModelCheckpoint": ModelCheckpoint}


def make_callback(spec: Callback | dict[str, Any]) -> Callback:
    """A Callback, or one from ``{"type": registered name, **config}``."""
    if isinstance(spec, Callback):
        return spec
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise ConfigError(f"a callback is a Callback or a table with a 'type', got {spec!r}")
    from ..registry import get_registry

    cls = get_registry().get("callback", spec["type"])
    return cls.from_config({k: v for k, v in spec.items() if k != "type"})
