"""Data parallelism for the Trainer: each rank of a job takes its shard of every global batch.

Every rank draws the same permutation (the same seeded generator), so the global batches are
those of one process; rank ``r`` of ``N`` takes the contiguous rows ``shard(start, rows)`` of
each. A step then:

1. runs forward and the losses on the rank's rows (a rank whose shard is empty skips them);
2. all-reduces, per loss, ``[count, count * mean]`` (``Loss.mean_count``: the rows, or the
   targets not ignored), so every rank knows the global batch's loss, and scales its
   ``dy`` by ``count / global count``: the ranks' gradients now *add up* to one process's;
3. runs backward and all-reduces (sums) the model's flat gradient buffer, one call;
4. clips and steps the optimizer, the same on every rank, so parameters stay bit-identical
   (``check_every`` steps compares a CRC of them across ranks and raises if they differ).

Metrics summed over an epoch, validation losses and ``Metric`` counters are summed over the
ranks once per epoch. BatchNorm's batch statistics are each rank's own (PyTorch DDP's
default; ``sync_stats=True`` on the layer reduces them over the job), and before validation
every rank takes rank 0's running statistics (DDP's ``broadcast_buffers``).
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from ..distributed import Communicator, DistributedError, shard
from .metrics import Metric


class DataParallel:
    """The collectives of a Trainer's steps over ``comm`` for ``losses`` (by output name)."""

    def __init__(self, comm: Communicator, losses: dict[str, Any], check_every: int | None) -> None:
        self.comm = comm
        self.losses = losses
        self.check_every = check_every
        self._stats = np.zeros((len(losses), 2), np.float64)    # per loss: count, count * mean
        self._own = [0.0] * len(losses)
        self._crc = np.zeros(comm.size, np.int64)
        self._floats: dict[int, np.ndarray] = {}

    def shard(self, start: int, rows: int) -> tuple[int, int]:
        """This rank's rows ``[lo, hi)`` of the global batch ``[start, start + rows)``."""
        return shard(start, rows, self.comm)

    def global_losses(self, plan: Any, targets: Any, values: list[float], weights: dict[str, float],
                      k: Any) -> float:
        """The global batch's weighted loss from this rank's per-loss means ``values`` (``plan``
        None: an empty shard); scales each ``dy`` so that the ranks' gradients sum to it."""
        st, own = self._stats, self._own
        for i, (o, loss_fn) in enumerate(self.losses.items()):
            own[i] = loss_fn.mean_count(targets(o)) if plan is not None else 0.0
            st[i, 0], st[i, 1] = own[i], own[i] * values[i]
        self.comm.allreduce_sum(st, "the loss all-reduce")
        total = 0.0
        for i, o in enumerate(self.losses):
            count = float(st[i, 0])
            total += weights[o] * (float(st[i, 1]) / count if count else 0.0)
            if plan is not None and plan.doutputs[o] is not None:
                k.scale(plan.doutputs[o], own[i] / count if count else 0.0)
        return total

    def allreduce_grads(self, model: Any) -> None:
        """Sum the flat gradient buffer over the ranks (one collective)."""
        if model.grads is not None:
            self.comm.allreduce_sum(model.grads.a, "the gradient all-reduce")

    def check_in_sync(self, model: Any, step: int) -> None:
        """Every ``check_every`` steps: the parameters' CRC must be the same on every rank."""
        if not self.check_every or step % self.check_every:
            return
        crc = self._crc
        crc[:] = 0
        crc[self.comm.rank] = zlib.crc32(memoryview(model.params.a).cast("B"))
        self.comm.allreduce_sum(crc, "the parameter check")
        if (crc != crc[0]).any():
            raise DistributedError(f"rank {self.comm.rank}: after step {step} the parameters "
                                   f"differ across ranks (CRC32 per rank: {crc.tolist()})")

    def sum_floats(self, values: list[float], what: str) -> list[float]:
        """``values`` summed over the ranks (through a buffer kept per length)."""
        buf = self._floats.get(len(values))
        if buf is None:
            buf = self._floats[len(values)] = np.zeros(len(values))
        for i, v in enumerate(values):
            buf[i] = v
        self.comm.allreduce_sum(buf, what)
        return buf.tolist()

    def reduce_metrics(self, metrics: dict[str, list[Metric]]) -> None:
        """Add every rank's ``Metric`` counters into each rank's metrics."""
        mine = [[m.counts() for m in ms] for ms in metrics.values()]
        everyone = self.comm.allgather(mine, "the metric all-gather")
        for ms_index, ms in enumerate(metrics.values()):
            for j, metric in enumerate(ms):
                metric.reset()
                for theirs in everyone:
                    metric.add_counts(theirs[ms_index][j])

    def sync_buffers(self, model: Any) -> None:
        """Every rank takes rank 0's persistent state buffers (BatchNorm's running stats)."""
        for name, a in sorted(model.states.arrays(persistent_only=True).items()):
            if a.flags.c_contiguous and a.flags.writeable:
                self.comm.broadcast(a, 0, f"the broadcast of buffer {name!r}")
