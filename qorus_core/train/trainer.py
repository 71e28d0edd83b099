"""Trainer: mini-batch training over NumPy arrays, allocation-free after the first step.

Each step copies its rows into the plan's inputs and planned targets Tensors with
``np.take(..., out=)``, runs forward, the losses (each writes its output's ``dy``, scaled by
its weight; an output without a loss gets a zero gradient), backward, optional
clipping and one optimizer kernel call. Shuffling draws one in-place permutation per epoch
from a seeded Generator whose state is checkpointed, so a resumed run is bit-identical to an
uninterrupted one. The last partial batch runs through its own cached plan.

Under ``mpirun`` (or given a ``comm`` of several ranks) the Trainer trains data-parallel:
``batch_size`` is the global batch, each rank computes its shard and the gradients are summed
over the ranks before the optimizer step (``data_parallel.py``). Rank 0 alone prints progress
and writes checkpoints; an exception on any rank ends the whole job (``run_or_abort``).
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

import numpy as np

from ..distributed import Communicator, run_or_abort, world
from ..errors import CheckpointError, ConfigError, DataError, NumericsError, ShapeError
from ..tensor import DTYPES, Tensor
from ..validate import boolean, maybe, nonneg_int, positive_int, real
from .callbacks import Callback, make_callback
from .checkpoint import read_checkpoint, restore_model, restore_optimizer, save_checkpoint
from .data_parallel import DataParallel
from .losses import Loss
from .metrics import Metric, get_metric
from .optimizers import Optimizer, clip_grad_norm
from .progress import Progress
from .schedules import Schedule


class Trainer:
    """Fits ``model`` with ``loss`` and ``optimizer``; see ``fit``, ``evaluate``, ``predict``.

    A model of several outputs takes ``loss`` as a dict of output name -> Loss (outputs left
    out are not trained on) and ``loss_weights`` (name -> weight, default 1): the loss is
    the weighted sum, and the history reports each output's as ``<name>_loss`` (and its
    metrics as ``<name>_<metric>``). Inputs and targets are then dicts of arrays by name.

    ``comm``: the data-parallel job (default ``distributed.world()``: the ranks ``mpirun``
    started, or this process alone); every rank passes the same data and settings.
    ``check_sync_every``: compare the parameters across ranks every that many steps (a
    debugging aid; default ``QORUS_CHECK_SYNC`` or never)."""

    def __init__(self, model: Any, loss: Loss | dict[str, Loss], optimizer: Optimizer,
                 schedule: Schedule | None = None,
                 batch_size: int = 32, epochs: int = 1, clip_norm: float | None = None, seed: int = 0,
                 shuffle: bool = True, progress: bool | Progress = True,
                 checkpoint_dir: str | os.PathLike | None = None, checkpoint_every: int | None = None,
                 eval_batch_size: int | None = None,
                 loss_weights: dict[str, float] | None = None,
                 callbacks: list[Callback | dict[str, Any]] | None = None,
                 metrics: list[Any] | dict[str, list[Any]] | None = None,
                 comm: Communicator | None = None, check_sync_every: int | None = None) -> None:
        self.losses, self.loss_weights = _losses(model, loss, loss_weights)
        single = len(self.losses) == 1 and len(model.output_names) == 1
        for name, value, needs in (*(("loss" if single else f"loss for output {o!r}", l,
                                      ("target_spec", "check_targets", "__call__"))
                                     for o, l in self.losses.items()),
                                   ("optimizer", optimizer, ("bind", "step", "lr")),
                                   ("schedule", schedule, ("setup", "__call__"))):
            if (value is not None or name != "schedule") and not all(hasattr(value, a) for a in needs):
                what = name.split()[0]
                raise ConfigError(f"Trainer: {name} must be a qorus {what} (with "
                                  f"{', '.join(needs)}), got {value!r}")
        self.model, self.optimizer, self.schedule = model, optimizer, schedule
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
        if comm is not None and not isinstance(comm, Communicator):
            raise ConfigError(f"Trainer: comm must be a qorus Communicator, got {comm!r}")
        self.comm = comm if comm is not None else world()
        self.progress = (progress if isinstance(progress, Progress)
                         else Progress(boolean(progress, "progress", "Trainer")))
        if not self.comm.is_main:
            self.progress = Progress(False)
        if check_sync_every is None and os.environ.get("QORUS_CHECK_SYNC"):
            check_sync_every = os.environ["QORUS_CHECK_SYNC"]
        check = maybe(positive_int, _int_or_none(check_sync_every), "check_sync_every", "Trainer")
        model.run.comm = self.comm
        if optimizer.model is not model:
            optimizer.bind(model)           # reserve state before any plan is compiled
        self.rng = np.random.default_rng(self.seed)
        self.epoch = 0                      # epochs completed
        self.global_step = 0                # optimizer steps taken
        self.history: list[dict[str, Any]] = []
        if callbacks is not None and not isinstance(callbacks, (list, tuple)):
            raise ConfigError(f"Trainer: callbacks must be a list, got {callbacks!r}")
        self.callbacks = [make_callback(c) for c in callbacks or ()]
        self.metrics = _metrics(model, metrics)
        self.stop_training = False          # a callback sets it: the run ends after this epoch
        self.lr_scale = 1.0                 # a callback (ReduceLROnPlateau) scales every lr
        self._targets: dict[tuple[int, str], Tensor] = {}
        self._specs = {o: l.target_spec(model.output_specs[o].shape) for o, l in self.losses.items()}
        self.loss = next(iter(self.losses.values())) if len(self.losses) == 1 else None
        self._values = [0.0] * len(self.losses)    # this batch's mean of each loss
        self.dp = DataParallel(self.comm, self.losses, check) if self.comm.size > 1 else None

    # ----------------------------------------------------------------- data
    def _prepare(self, x: Any, y: Any, what: str) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
        """Validate once and convert to contiguous arrays of the planned dtypes: the inputs in
        the model's order, the targets by output name."""
        m = self.model
        xs = m.check_inputs(x, f"{what} input")
        xs = [np.ascontiguousarray(a, DTYPES[s.dtype]) for a, s in zip(xs, m.input_specs.values())]
        outs = list(self.losses)
        if isinstance(y, dict):
            missing, extra = [o for o in outs if o not in y], sorted(set(y) - set(outs))
            if missing or extra:
                raise ShapeError(f"{what} targets: outputs with a loss {outs} expected; missing "
                                 f"{missing}, unexpected {extra}")
            ys_in = y
        elif len(outs) == 1:
            ys_in = {outs[0]: y}
        else:
            raise ShapeError(f"{what} targets: this model trains outputs {outs}; give a dict of "
                             "target arrays by name")
        ys = {}
        for o in outs:
            label = f"{what} targets" + (f" {o!r}" if len(outs) > 1 else "")
            ys[o] = self.losses[o].check_targets(ys_in[o], m.output_specs[o].shape, label)
            if len(ys[o]) != len(xs[0]):
                raise ShapeError(f"{what}: {len(xs[0])} inputs but {len(ys[o])} targets"
                                 + (f" for {o!r}" if len(outs) > 1 else ""))
        if len(xs[0]) == 0:
            raise DataError(f"{what}: no samples")
        return xs, ys

    def _target(self, batch: int, output: str) -> Tensor:
        t = self._targets.get((batch, output))
        if t is None:
            spec = self._specs[output]
            t = self._targets[(batch, output)] = Tensor(np.zeros((batch,) + spec.shape,
                                                                 DTYPES[spec.dtype]),
                                                        f"targets[{output}, {batch}]")
        return t

    def _metric_names(self) -> list[str]:
        """History keys of the per-output losses and metrics, in order."""
        if len(self.losses) == 1 and len(self.model.output_names) == 1:
            return list(next(iter(self.losses.values())).metrics)
        out = []
        for o, l in self.losses.items():
            out += [f"{o}_loss"] + [f"{o}_{m}" for m in l.metrics]
        return out

    def _losses_on(self, plan: Any, rows: int, train: bool, sums: list[float]) -> float:
        """The weighted loss of one batch; adds each output's loss * rows and metric sums into
        ``sums`` (in ``_metric_names`` order); in training writes every output's dy."""
        k, total, i = self.model.kernels, 0.0, 0
        single = len(self.losses) == 1 and len(self.model.output_names) == 1
        for j, (o, loss_fn) in enumerate(self.losses.items()):
            y, tgt = plan.outputs[o], self._targets[(rows, o)]
            dy = plan.doutputs[o] if train else None
            value = self._values[j] = loss_fn(y, tgt, dy, k)
            w = self.loss_weights[o]
            if dy is not None and w != 1.0:
                k.scale(dy, w)
            total += w * value
            if not single:
                sums[i] += value * rows
                i += 1
            for v in loss_fn.metric_sums(y, tgt, k):
                sums[i] += v
                i += 1
        if train:
            for o in self.model.output_names:
                if o not in self.losses and plan.doutputs[o] is not None:
                    k.fill(plan.doutputs[o], 0.0)
        return total

    # ----------------------------------------------------------------- training
    def fit(self, x: Any, y: Any, val: tuple[Any, Any] | None = None,
            resume_from: str | os.PathLike | None = None,
            until_epoch: int | None = None) -> list[dict[str, Any]]:
        """Train until ``epochs`` epochs are done in all (or ``until_epoch``, keeping the
        schedule of the full run); returns the history, one dict per epoch. ``resume_from``
        continues a checkpointed run exactly where it stopped. With ``checkpoint_dir`` a
        checkpoint is saved every ``checkpoint_every`` epochs and when the run stops."""
        return run_or_abort(self.comm, lambda: self._fit(x, y, val, resume_from, until_epoch))

    def _fit(self, x: Any, y: Any, val: tuple[Any, Any] | None,
             resume_from: str | os.PathLike | None, until_epoch: int | None
             ) -> list[dict[str, Any]]:
        x, y = self._prepare(x, y, "training")
        xv, yv = self._prepare(val[0], val[1], "validation") if val is not None else (None, None)
        n, bs = len(x[0]), self.batch_size
        if self.schedule is not None:
            self.schedule.setup(self.optimizer.lr, self.epochs * math.ceil(n / bs))
        if resume_from is not None:
            self.resume(resume_from)
        order = np.arange(n, dtype=np.intp)
        perm = np.empty_like(order)
        until = maybe(nonneg_int, until_epoch, "until_epoch", "Trainer.fit")
        stop = self.epochs if until is None else min(until, self.epochs)
        self.stop_training = False
        for cb in self.callbacks:
            cb.on_train_begin(self)
        while self.epoch < stop and not self.stop_training:
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
            for cb in self.callbacks:
                cb.on_epoch_end(self, self.epoch, row)
            if self.checkpoint_dir is not None and (self.epoch == stop or self.stop_training or (
                    self.checkpoint_every and self.epoch % self.checkpoint_every == 0)):
                self.save_checkpoint(self.checkpoint_dir)
        for cb in self.callbacks:
            cb.on_train_end(self)
        return self.history

    def _epoch(self, x: list[np.ndarray], y: dict[str, np.ndarray], perm: np.ndarray
               ) -> dict[str, float]:
        bs, opt, sched, clip = self.batch_size, self.optimizer, self.schedule, self.clip_norm
        n = len(x[0])
        names = self._metric_names()
        sums = [0.0] * len(names)
        total = 0.0
        lr = opt.lr
        self.progress.start(self.epoch + 1, self.epochs, n)
        for start in range(0, n, bs):
            rows = min(bs, n - start)
            loss = self._step(x, y, perm, start, rows, sums)
            if clip is not None:
                clip_grad_norm(self.model, clip, step=self.global_step)
            lr = (sched(self.global_step) if sched is not None else opt.lr) * self.lr_scale
            opt.step(lr)
            self.model.run.step += 1
            self.global_step += 1
            if self.dp is not None:
                self.dp.check_in_sync(self.model, self.global_step)
            total += loss * rows
            self.progress.update(start + rows, total / (start + rows))
        if self.dp is not None:
            sums = self.dp.sum_floats(sums, "the training metrics' all-reduce")
        out = {"loss": total / n, "lr": lr}
        out.update({name: s / n for name, s in zip(names, sums)})
        return out

    def _step(self, x: list[np.ndarray], y: dict[str, np.ndarray], perm: np.ndarray,
              start: int, rows: int, sums: list[float]) -> float:
        """Forward, losses and backward of the global batch ``perm[start:start + rows]`` (this
        rank's shard of it); leaves the batch's gradient in the model's grads and returns
        the batch's loss."""
        model, dp = self.model, self.dp
        lo, hi = dp.shard(start, rows) if dp is not None else (start, start + rows)
        plan = model.plan(hi - lo, train=True) if hi > lo else None
        loss = 0.0
        if plan is not None:
            idx = perm[lo:hi]
            for name, a in zip(model.input_names, x):
                np.take(a, idx, axis=0, out=plan.inputs[name].a, mode="clip")
            for o, a in y.items():
                np.take(a, idx, axis=0, out=self._target(hi - lo, o).a, mode="clip")
            model.run.row_offset = lo - start
            plan.forward()
            loss = self._losses_on(plan, hi - lo, True, sums)
        if dp is not None:
            loss = dp.global_losses(plan, lambda o: self._targets[(hi - lo, o)], self._values,
                                    self.loss_weights, model.kernels)
        if not math.isfinite(loss):
            raise NumericsError(f"loss is {loss} at step {self.global_step} (epoch "
                                f"{self.epoch + 1}, rows {start}..{start + rows - 1})")
        model.zero_grad()
        if plan is not None:
            plan.backward()
        if dp is not None:
            dp.allreduce_grads(model)
        return loss

    # ----------------------------------------------------------------- inference
    def _evaluate(self, x: list[np.ndarray], y: dict[str, np.ndarray]) -> dict[str, float]:
        """Losses and metrics over ``x, y``. Each loss is the mean over all its terms (batches
        weighed by ``Loss.mean_count``: ignored targets count in no batch), so the value does
        not depend on how the set is cut into batches, or into the shards of the ranks of a
        data-parallel job (each evaluates its contiguous shard with rank 0's state buffers,
        and the sums are added up over the ranks)."""
        model, bs, dp = self.model, self.eval_batch_size, self.dp
        n = len(x[0])
        num, den = [0.0] * len(self.losses), [0.0] * len(self.losses)
        names = self._metric_names()
        sums = [0.0] * len(names)
        for ms in self.metrics.values():
            for metric in ms:
                metric.reset()
        lo, hi = (0, n) if dp is None else dp.shard(0, n)
        if dp is not None:
            dp.sync_buffers(model)
        for start in range(lo, hi, bs):
            rows = min(bs, hi - start)
            plan = model.plan(rows, train=False)
            for name, a in zip(model.input_names, x):
                np.copyto(plan.inputs[name].a, a[start:start + rows])
            for o, a in y.items():
                np.copyto(self._target(rows, o).a, a[start:start + rows])
            plan.forward()
            self._losses_on(plan, rows, False, sums)
            for j, (o, loss_fn) in enumerate(self.losses.items()):
                count = loss_fn.mean_count(self._targets[(rows, o)])
                num[j] += self._values[j] * count
                den[j] += count
            for o, ms in self.metrics.items():
                for metric in ms:
                    metric.update(plan.outputs[o].a, y[o][start:start + rows] if o in y else None)
        if dp is not None:
            both = dp.sum_floats(num + den + sums, "the evaluation all-reduce")
            L = len(num)
            num, den, sums = both[:L], both[L:2 * L], both[2 * L:]
        means = {o: num[j] / den[j] if den[j] else 0.0 for j, o in enumerate(self.losses)}
        out = {"loss": sum(self.loss_weights[o] * v for o, v in means.items())}
        out.update({name: s / n for name, s in zip(names, sums)})
        single = len(self.model.output_names) == 1
        if not (single and len(self.losses) == 1):
            out.update({f"{o}_loss": v for o, v in means.items()})
        if dp is not None:
            dp.reduce_metrics(self.metrics)
        for o, ms in self.metrics.items():
            for metric in ms:
                out[metric.name if single else f"{o}_{metric.name}"] = metric.result()
        return out

    def evaluate(self, x: Any, y: Any) -> dict[str, float]:
        """Mean loss, the loss's metrics (e.g. accuracy) and the ``metrics`` asked for, over
        ``x, y`` in inference mode. Those metrics are computed on evaluation and validation
        data only: the training steps stay allocation-free. Data-parallel, every rank calls it
        with the same data and gets the whole set's values."""
        return run_or_abort(self.comm, lambda: self._evaluate(*self._prepare(x, y, "evaluation")))

    def predict(self, x: Any) -> Any:
        """Model outputs for ``x`` (inference plans, in chunks of ``eval_batch_size``)."""
        return self.model.predict(x, batch_size=self.eval_batch_size)

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Where the run stands, for a checkpoint: epoch, global step, shuffling RNG, history, ``lr_scale``
        and each callback's state."""
        return {"epoch": self.epoch, "global_step": self.global_step,
                "rng": self.rng.bit_generator.state, "history": self.history,
                "lr_scale": self.lr_scale, "callbacks": [cb.state_dict() for cb in self.callbacks]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict``'s output; CheckpointError when it holds the state of another
        number of callbacks."""
        self.epoch, self.global_step = int(state["epoch"]), int(state["global_step"])
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = state["rng"]
        self.history = list(state.get("history", []))
        self.lr_scale = float(state.get("lr_scale", 1.0))
        saved = state.get("callbacks", [])
        if saved and len(saved) != len(self.callbacks):
            raise CheckpointError(f"the checkpoint holds the state of {len(saved)} callbacks, "
                                  f"this Trainer has {len(self.callbacks)}")
        for cb, st in zip(self.callbacks, saved):
            cb.load_state_dict(st)

    def get_config(self) -> dict[str, Any]:
        """Loss, optimizer, schedule and trainer settings, as stored in a checkpoint."""
        single = len(self.losses) == 1 and len(self.model.output_names) == 1
        return {
            "loss": _loss_dict(self.loss) if single else {
                "outputs": {o: _loss_dict(l) for o, l in self.losses.items()},
                "weights": dict(self.loss_weights)},
            "optimizer": {"type": self.optimizer.type_name, **self.optimizer.get_config()},
            "schedule": None if self.schedule is None else self.schedule.get_config(),
            "trainer": {"batch_size": self.batch_size, "epochs": self.epochs,
                        "clip_norm": self.clip_norm, "seed": self.seed, "shuffle": self.shuffle,
                        "checkpoint_every": self.checkpoint_every},
        }

    def save_checkpoint(self, directory: str | os.PathLike) -> None:
        """Write model, optimizer and trainer state to ``directory`` (atomically); in a
        data-parallel job only rank 0 writes (every rank holds the same state)."""
        if self.comm.is_main:
            save_checkpoint(directory, self.model, self.optimizer, self.state_dict(),
                            self.get_config())

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


def _by_output(model: Any, value: Any, what: str, each: str) -> dict[str, Any]:
    """``value`` keyed by output name, in the model's output order: a dict naming outputs, or
    the value itself for a model of one output (``what`` and ``each`` word the errors)."""
    outs = tuple(model.output_names)
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(outs))
        if unknown:
            raise ConfigError(f"Trainer: {what} names outputs {unknown} the model does not have "
                              f"(outputs: {list(outs)})")
        if not value:
            raise ConfigError(f"Trainer: the {what} dict is empty")
        return {o: value[o] for o in outs if o in value}
    if len(outs) == 1:
        return {outs[0]: value}
    raise ConfigError(f"Trainer: this model has outputs {list(outs)}; give {what} as a dict "
                      f"of output name -> {each}")


def _metrics(model: Any, metrics: Any) -> dict[str, list[Metric]]:
    """The metrics by output name (a list for a model of one output, else a dict of lists)."""
    if metrics is None:
        return {}
    out = {}
    for o, ms in _by_output(model, metrics, "metrics", "list of metric names").items():
        if not isinstance(ms, (list, tuple)):
            raise ConfigError(f"Trainer: metrics for {o!r} must be a list of names, got {ms!r}")
        out[o] = [get_metric(m) for m in ms]
    return out


def _loss_dict(loss: Loss) -> dict[str, Any]:
    return {"type": loss.type_name, **loss.get_config()}


def _losses(model: Any, loss: Any, weights: Any) -> tuple[dict[str, Loss], dict[str, float]]:
    """The losses by output name and their weights, checked against the model's outputs."""
    losses = _by_output(model, loss, "loss", "loss")
    if weights is not None and not isinstance(weights, dict):
        raise ConfigError(f"Trainer: loss_weights must be a dict of output name -> weight, got "
                          f"{weights!r}")
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(losses))
    if unknown:
        raise ConfigError(f"Trainer: loss_weights names {unknown}, which have no loss "
                          f"(losses: {list(losses)})")
    return losses, {o: real(weights.get(o, 1.0), f"loss_weights[{o!r}]", "Trainer", lo=0.0)
                    for o in losses}


def _int_or_none(value: Any) -> Any:
    """``QORUS_CHECK_SYNC``'s text as an int (other values go to the validator as they are)."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value
