"""Trainer: mini-batch training over NumPy arrays, allocation-free after the first step.

Each step copies its rows into the plan's input and a planned targets Tensor with
``np.take(..., out=)``, runs forward, the loss (which writes ``dy``), backward, optional
clipping and one optimizer kernel call. Shuffling draws one in-place permutation per epoch
from a seeded Generator whose state is checkpointed, so a resumed run is bit-identical to an
uninterrupted one. The last partial batch runs through its own cached plan.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

import numpy as np

from ..errors import CheckpointError, ConfigError, DataError, NumericsError, ShapeError
from ..tensor import DTYPES, Tensor
from ..validate import boolean, maybe, nonneg_int, positive_int, real
from .checkpoint import read_checkpoint, restore_model, restore_optimizer, save_checkpoint
from .losses import Loss
from .optimizers import Optimizer, clip_grad_norm
from .progress import Progress
from .schedules import Schedule


class Trainer:
    """Fits ``model`` with ``loss`` and ``optimizer``; see ``fit``, ``evaluate``, ``predict``."""

    def __init__(self, model: Any, loss: Loss, optimizer: Optimizer, schedule: Schedule | None = None,
                 batch_size: int = 32, epochs: int = 1, clip_norm: float | None = None, seed: int = 0,
                 shuffle: bool = True, progress: bool | Progress = True,
                 checkpoint_dir: str | os.PathLike | None = None, checkpoint_every: int | None = None,
                 eval_batch_size: int | None = None) -> None:
        for name, value, needs in (("loss", loss, ("target_spec", "check_targets", "__call__")),
                                   ("optimizer", optimizer, ("bind", "step", "lr")),
                                   ("schedule", schedule, ("setup", "__call__"))):
            if (value is not None or name != "schedule") and not all(hasattr(value, a) for a in needs):
                raise ConfigError(f"Trainer: {name} must be a qorus {name} (with "
                                  f"{', '.join(needs)}), got {value!r}")
        self.model, self.loss, self.optimizer, self.schedule = model, loss, optimizer, schedule
        self.batch_size = positive_int(batch_size, "batch_size", "Trainer")
        self.epochs = nonneg_int(epochs, "epochs", "Trainer")
        self.eval_batch_size = maybe(positive_int, eval_batch_size, "eval_batch_size",
                                     "Trainer") or self.batch_size
        self.clip_norm = maybe(real, clip_norm, "clip_norm", "Trainer", lo=0.0, lo_open=True)
        self.seed = nonneg_int(seed, "seed", "Trainer")
        self.shuffle = boolean(shuffle, "shuffle", "Trainer")
        if checkpoint_dir is not None and not isinstance(checkpoint_dir, (str, os.PathLike)):
            raise ConfigError(f"Trainer: checkpoint_dir must be a path, got {checkpoint_dir!r}")
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = maybe(positive_int, checkpoint_every, "checkpoint_every", "Trainer")
        self.progress = (progress if isinstance(progress, Progress)
                         else Progress(boolean(progress, "progress", "Trainer")))
        if optimizer.model is not model:
            optimizer.bind(model)           # reserve state before any plan is compiled
        self.rng = np.random.default_rng(self.seed)
        self.epoch = 0                      # epochs completed
        self.global_step = 0                # optimizer steps taken
        self.history: list[dict[str, Any]] = []
        self._targets: dict[int, Tensor] = {}
        self._spec = loss.target_spec(model.output_shape)

    # ----------------------------------------------------------------- data
    def _prepare(self, x: Any, y: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
        """Validate once and convert to contiguous arrays of the planned dtypes."""
        x = self.model.check_input(x, f"{what} input")
        y = self.loss.check_targets(y, self.model.output_shape, f"{what} targets")
        if len(x) != len(y):
            raise ShapeError(f"{what}: {len(x)} inputs but {len(y)} targets")
        if len(x) == 0:
            raise DataError(f"{what}: no samples")
        return np.ascontiguousarray(x, DTYPES[self.model.input_dtype]), y

    def _target(self, batch: int) -> Tensor:
        t = self._targets.get(batch)
        if t is None:
            shape = (batch,) + self._spec.shape
            t = self._targets[batch] = Tensor(np.zeros(shape, DTYPES[self._spec.dtype]), f"targets[{batch}]")
        return t

    # ----------------------------------------------------------------- training
    def fit(self, x: Any, y: Any, val: tuple[Any, Any] | None = None,
            resume_from: str | os.PathLike | None = None,
            until_epoch: int | None = None) -> list[dict[str, Any]]:
        """Train until ``epochs`` epochs are done in all (or ``until_epoch``, keeping the
        schedule of the full run); returns the history, one dict per epoch. ``resume_from``
        continues a checkpointed run exactly where it stopped. With ``checkpoint_dir`` a
        checkpoint is saved every ``checkpoint_every`` epochs and when the run stops."""
        x, y = self._prepare(x, y, "training")
        xv, yv = self._prepare(val[0], val[1], "validation") if val is not None else (None, None)
        n, bs = len(x), self.batch_size
        if self.schedule is not None:
            self.schedule.setup(self.optimizer.lr, self.epochs * math.ceil(n / bs))
        if resume_from is not None:
            self.resume(resume_from)
        order = np.arange(n, dtype=np.intp)
        perm = np.empty_like(order)
        until = maybe(nonneg_int, until_epoch, "until_epoch", "Trainer.fit")
        stop = self.epochs if until is None else min(until, self.epochs)
        while self.epoch < stop:
            np.copyto(perm, order)
            if self.shuffle:
                self.rng.shuffle(perm)
            t0 = time.perf_counter()
            stats = self._epoch(x, y, perm)
            seconds = time.perf_counter() - t0
            row: dict[str, Any] = {"epoch": self.epoch + 1, **stats, "samples_per_s": n / max(seconds, 1e-9),
                                   "seconds": seconds}
            if xv is not None:
                row.update({f"val_{k}": v for k, v in self._evaluate(xv, yv).items()})
            self.history.append(row)
            self.epoch += 1
            self.progress.end("  ".join(f"{k} {v:.4g}" for k, v in row.items()
                                        if k not in ("epoch", "seconds", "samples_per_s"))
                              + f"  {row['samples_per_s']:,.0f} samples/s")
            if self.checkpoint_dir is not None and (self.epoch == stop or (
                    self.checkpoint_every and self.epoch % self.checkpoint_every == 0)):
                self.save_checkpoint(self.checkpoint_dir)
        return self.history

    def _epoch(self, x: np.ndarray, y: np.ndarray, perm: np.ndarray) -> dict[str, float]:
        model, k, loss_fn, bs = self.model, self.model.kernels, self.loss, self.batch_size
        opt, sched, clip = self.optimizer, self.schedule, self.clip_norm
        n = len(x)
        names = loss_fn.metrics
        sums = [0.0] * len(names)
        total = 0.0
        lr = opt.lr
        self.progress.start(self.epoch + 1, self.epochs, n)
        for start in range(0, n, bs):
            rows = min(bs, n - start)
            plan = model.plan(rows, train=True)
            tgt = self._target(rows)
            idx = perm[start:start + rows]
            np.take(x, idx, axis=0, out=plan.x.a, mode="clip")
            np.take(y, idx, axis=0, out=tgt.a, mode="clip")
            plan.forward()
            loss = loss_fn(plan.y, tgt, plan.dy, k)
            if not math.isfinite(loss):
                raise NumericsError(f"loss is {loss} at step {self.global_step} (epoch "
                                    f"{self.epoch + 1}, rows {start}..{start + rows - 1})")
            for i, v in enumerate(loss_fn.metric_sums(plan.y, tgt, k)):
                sums[i] += v
            model.zero_grad()
            plan.backward()
            if clip is not None:
                clip_grad_norm(model, clip, step=self.global_step)
            if sched is not None:
                lr = sched(self.global_step)
            opt.step(lr)
            model.run.step += 1
            self.global_step += 1
            total += loss * rows
            self.progress.update(start + rows, total / (start + rows))
        out = {"loss": total / n, "lr": lr}
        out.update({name: s / n for name, s in zip(names, sums)})
        return out

    # ----------------------------------------------------------------- inference
    def _evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        model, k, loss_fn, bs = self.model, self.model.kernels, self.loss, self.eval_batch_size
        n = len(x)
        total = 0.0
        sums = [0.0] * len(loss_fn.metrics)
        for start in range(0, n, bs):
            rows = min(bs, n - start)
            plan = model.plan(rows, train=False)
            tgt = self._target(rows)
            np.copyto(plan.x.a, x[start:start + rows])
            np.copyto(tgt.a, y[start:start + rows])
            plan.forward()
            total += loss_fn(plan.y, tgt, None, k) * rows
            for i, v in enumerate(loss_fn.metric_sums(plan.y, tgt, k)):
                sums[i] += v
        out = {"loss": total / n}
        out.update({name: s / n for name, s in zip(loss_fn.metrics, sums)})
        return out

    def evaluate(self, x: Any, y: Any) -> dict[str, float]:
        """Mean loss (and the loss's metrics, e.g. accuracy) over ``x, y`` in inference mode."""
        return self._evaluate(*self._prepare(x, y, "evaluation"))

    def predict(self, x: Any) -> np.ndarray:
        """Model outputs for ``x`` (inference plans, in chunks of ``eval_batch_size``)."""
        return self.model.predict(x, batch_size=self.eval_batch_size)

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "global_step": self.global_step,
                "rng": self.rng.bit_generator.state, "history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.global_step = int(state["epoch"]), int(state["global_step"])
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = state["rng"]
        self.history = list(state.get("history", []))

    def get_config(self) -> dict[str, Any]:
        """Loss, optimizer, schedule and trainer settings, as stored in a checkpoint."""
        return {
            "loss": {"type": self.loss.type_name, **self.loss.get_config()},
            "optimizer": {"type": self.optimizer.type_name, **self.optimizer.get_config()},
            "schedule": None if self.schedule is None else self.schedule.get_config(),
            "trainer": {"batch_size": self.batch_size, "epochs": self.epochs,
                        "clip_norm": self.clip_norm, "seed": self.seed, "shuffle": self.shuffle,
                        "checkpoint_every": self.checkpoint_every},
        }

    def save_checkpoint(self, directory: str | os.PathLike) -> None:
        save_checkpoint(directory, self.model, self.optimizer, self.state_dict(), self.get_config())

    def resume(self, directory: str | os.PathLike) -> None:
        """Load weights, optimizer state and this Trainer's state from a checkpoint."""
        with read_checkpoint(directory) as data:
            mine = json.loads(json.dumps(self.model.get_config()))   # as it reads back from JSON
            theirs = data.config["model"]
            for key in ("net", "input_shape", "input_dtype"):
                if theirs.get(key) != mine.get(key):
                    raise CheckpointError(f"{data.path}: checkpoint model {key} "
                                          f"{theirs.get(key)!r} differs from this model's "
                                          f"{mine.get(key)!r}")
            restore_model(self.model, data)
            restore_optimizer(self.optimizer, self.model, data)
        try:
            self.load_state_dict(data.trainer)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{data.path}: corrupt trainer state: {exc}") from None
