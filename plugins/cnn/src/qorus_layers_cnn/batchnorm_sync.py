"""BatchNorm's batch statistics over every rank of a data-parallel job (PyTorch's
nn.SyncBatchNorm, Keras' ``synchronized=True``): the same forward and gradients as one
process normalising the whole global batch.

Forward: the kernel's local mean and biased variance per channel, then one all-reduce of
``[n, mean, var]`` of every rank (each writes its own row of a zeroed ``[ranks, 1 + 2C]``),
combined exactly (Chan's parallel variance, float64); the output and the saved mean/rstd
come from the kernel in its running-statistics mode, fed the global statistics.

Backward: the kernel's local sums ``sum dy`` and ``sum dy xhat`` (added into the parameter
gradients, which the Trainer sums over the ranks), one all-reduce of them, then per channel
``dx = g dy + d x + e`` with ``g = w rstd``, ``d = -g rstd S_dyxhat / N``, ``e = -g S_dy / N
- d mean``: two broadcast multiplies, an add and a broadcast add.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qorus_core.kernels import BINARY_OPS

_ADD, _MUL = BINARY_OPS.index("add"), BINARY_OPS.index("mul")


class SyncBuffers:
    """The float64 work arrays of one BatchNorm call site (made on its first step)."""

    def __init__(self, ranks: int, C: int) -> None:
        self.stats = np.zeros((ranks, 1 + 2 * C))    # per rank: n, mean[C], var[C]
        self.sums = np.zeros((2, C))                  # sum dy, sum dy xhat (then global)
        self.mean, self.m2, self.t = np.zeros(C), np.zeros(C), np.zeros(C)
        self.coef = np.zeros((3, C))                  # g, d, e of the backward
        self.total = 0.0


def buffers(ctx: Any, comm: Any, C: int) -> SyncBuffers:
    """The call site's work arrays, made on its first synchronised step (and per job size)."""
    s = ctx.__dict__.get("_bn_sync")
    if s is None or s.stats.shape[0] != comm.size:
        s = ctx.__dict__["_bn_sync"] = SyncBuffers(comm.size, C)
    return s


def sync_forward(layer: Any, x: Any, ctx: Any, w: Any, bias: Any) -> None:
    """Training forward with the global batch's statistics; updates the running ones."""
    k, comm = ctx.k, ctx.run.comm
    C = x.shape[1]
    S = buffers(ctx, comm, C)
    k.batchnorm2d(x, None, None, ctx.y, ctx.mean, ctx.rstd, None, None, layer.eps,
                  layer.momentum, True)
    st = S.stats
    st[:] = 0.0
    row = st[comm.rank]
    row[0] = x.size // C
    row[1:1 + C] = ctx.mean.a
    var = row[1 + C:]
    np.square(ctx.rstd.a, out=var)                   # var = 1 / rstd^2 - eps
    np.reciprocal(var, out=var)
    var -= layer.eps
    np.maximum(var, 0.0, out=var)
    comm.allreduce_sum(st, f"BatchNorm {ctx.index}'s statistics")
    n = st[:, 0]
    S.total = total = float(n.sum())
    np.dot(n, st[:, 1:1 + C], out=S.mean)
    S.mean /= total
    S.m2[:] = 0.0
    for r in range(comm.size):                       # sum n_r (var_r + (mean_r - mean)^2)
        np.subtract(st[r, 1:1 + C], S.mean, out=S.t)
        S.t *= S.t
        S.t += st[r, 1 + C:]
        S.t *= n[r]
        S.m2 += S.t
    np.divide(S.m2, total, out=S.t)                  # the biased variance
    ctx.sync_mean.w[:] = S.mean
    ctx.sync_var.w[:] = S.t
    m = layer.momentum                               # running = (1 - m) running + m stat,
    rm, rv = ctx.running_mean.w, ctx.running_var.w   # the variance unbiased (PyTorch's)
    rm *= 1.0 - m
    np.multiply(S.mean, m, out=S.m2)
    rm += S.m2
    rv *= 1.0 - m
    np.multiply(S.t, m * total / max(total - 1.0, 1.0), out=S.m2)
    rv += S.m2
    k.batchnorm2d(x, w, bias, ctx.y, ctx.mean, ctx.rstd, ctx.sync_mean, ctx.sync_var,
                  layer.eps, layer.momentum, False)


def sync_backward(layer: Any, dy: Any, ctx: Any, w: Any, dw: Any, db: Any) -> None:
    """Backward through the global statistics: local sums into the parameter grads, global
    sums into dx."""
    k, comm = ctx.k, ctx.run.comm
    C = dy.shape[1]
    S = buffers(ctx, comm, C)
    sdw, sdb = ctx.sync_dw, ctx.sync_db
    k.fill(sdw, 0.0)
    k.fill(sdb, 0.0)
    k.batchnorm2d_bwd(ctx.x, w, ctx.mean, ctx.rstd, dy, None, sdw, sdb)
    if dw is not None:
        k.add(dw, sdw, dw)
        k.add(db, sdb, db)
    if ctx.dx is None:                                 # the same on every rank
        return
    S.sums[0], S.sums[1] = sdb.a, sdw.a
    comm.allreduce_sum(S.sums, f"BatchNorm {ctx.index}'s gradient sums")
    g, d, e = S.coef
    np.multiply(ctx.rstd.a, 1.0 if w is None else w.a, out=g)
    np.multiply(g, ctx.rstd.a, out=d)
    d *= S.sums[1]
    d /= -S.total
    np.multiply(g, S.sums[0], out=e)
    e /= -S.total
    np.multiply(d, ctx.mean.a, out=S.t)
    e -= S.t
    gt, dt, et = ctx.sync_coef_g, ctx.sync_coef_d, ctx.sync_coef_e
    gt.w.reshape(-1)[:], dt.w.reshape(-1)[:], et.w.reshape(-1)[:] = g, d, e
    k.bcast_binary(dy, gt, ctx.dx, _MUL)
    k.bcast_binary(ctx.x, dt, ctx.sync_tmp, _MUL)
    k.add(ctx.dx, ctx.sync_tmp, ctx.dx)
    k.bcast_binary(ctx.dx, et, ctx.dx, _ADD)
