"""Losses and metrics (csrc/loss.c): cross-entropy with label smoothing, MSE, the count of
correct predictions. Each returns its value; the gradient is written when asked for."""

from __future__ import annotations

import numpy as np

from ...errors import KernelError
from ...tensor import Tensor
from .spec import EXACT, Fit, c_error, kernel, sizes_error

FAMILY = "loss"


def check_cross_entropy(kernel: str, logits: Tensor, targets: Tensor, dlogits: Tensor | None,
                        label_smoothing) -> tuple[int, int]:
    n, c = logits.rows, logits.cols
    if n == 0 or c == 0:
        raise KernelError(f"{kernel}: empty logits {logits.shape}")
    if targets.size != n:
        raise sizes_error(kernel, f"do not fit: {targets.size} targets for {n} rows",
                          logits=logits, targets=targets)
    if dlogits is not None and (dlogits.size != logits.size or dlogits.cols != c):
        raise sizes_error(kernel, "do not match", logits=logits, dlogits=dlogits)
    if not 0.0 <= label_smoothing <= 1.0:
        raise KernelError(f"{kernel}: label_smoothing={label_smoothing} is outside [0, 1]")
    return n, c


def _target_error(kernel: str, logits: Tensor) -> KernelError:
    return KernelError(f"{kernel}: target class out of range [0, {logits.cols}), logits "
                       f"{logits.shape}")


def _ce_error(kernel: str, rc: int, logits: Tensor, *rest) -> KernelError:
    return _target_error(kernel, logits) if rc == -2 else c_error(kernel, rc)


_CE = dict(logits=((6, 10), -4.0, 4.0), targets=((6,), 0, 10), dlogits=(6, 10))


@kernel(FAMILY, "logits targets:i32 dlogits:out?", check=check_cross_entropy, dims="n c",
        c="qr_cross_entropy_f32(logits, targets, dlogits, n, c, label_smoothing:f64) -> f64",
        on_error=_ce_error, tol=(1e-5, 1e-7),
        examples=[_CE, {**_CE, "dlogits": None, "label_smoothing": 0.1},
                  {**_CE, "label_smoothing": 1.0}],
        bad=[(r"target class out of range \[0, 10\)", dict(targets=((6,), 10, 11))),
             ("target class out of range", dict(targets=((6,), -2, -1))),
             ("label_smoothing=1.5 is outside", dict(label_smoothing=1.5)),
             (r"empty logits \(0, 10\)", dict(logits=(0, 10), targets=((0,), 0, 1),
                                               dlogits=(0, 10)))])
def cross_entropy(self, logits: Tensor, targets: Tensor, dlogits: Tensor | None,
                  label_smoothing: float = 0.0) -> float:
    """Mean cross-entropy of logits (N, C) against class indices (N,) int32, with PyTorch's
    label smoothing; writes dlogits = (softmax - smoothed one-hot) / N when given (dlogits
    may alias logits)."""
    X = self._m(logits)
    n, c = X.shape
    tg = targets.a.reshape(-1)
    if int(tg.min()) < 0 or int(tg.max()) >= c:
        raise _target_error("cross_entropy", logits)
    mx = self.scratch("ce_mx", (n, 1))
    lse = self.scratch("ce_lse", (n, 1))
    sh = self.scratch("ce_sh", X.shape)
    e = self._mw(dlogits) if dlogits is not None else self.scratch("ce_e", X.shape)
    np.max(X, axis=1, keepdims=True, out=mx)
    np.subtract(X, mx, out=sh)                            # shifted logits
    np.exp(sh, out=e)
    np.sum(e, axis=1, keepdims=True, out=lse)
    if dlogits is not None:
        np.divide(e, lse, out=e)                          # softmax
    np.log(lse, out=lse)                                  # log-sum-exp of shifted logits
    fidx = self._row_index(targets, n, c)
    picked = self.scratch("ce_picked", (n,))
    np.take(sh.reshape(-1), fidx, out=picked)
    sum_lse = float(lse.sum())
    eps = float(label_smoothing)
    loss = (1.0 - eps) * (sum_lse - float(picked.sum()))
    if eps:
        loss += eps * (c * sum_lse - float(sh.sum())) / c
    loss /= n
    if dlogits is not None:
        if eps:
            np.subtract(e, np.float32(eps / c), out=e)
        flat = e.reshape(-1)
        np.take(flat, fidx, out=picked)
        np.subtract(picked, np.float32(1.0 - eps), out=picked)
        np.put(flat, fidx, picked)
        np.multiply(e, np.float32(1.0 / n), out=e)
    return loss


def check_mse(kernel: str, pred: Tensor, target: Tensor, dpred: Tensor | None) -> int:
    if pred.size == 0:
        raise KernelError(f"{kernel}: empty pred {pred.shape}")
    if target.size != pred.size or (dpred is not None and dpred.size != pred.size):
        raise sizes_error(kernel, "must have the same size", pred=pred, target=target,
                          dpred=dpred)
    return pred.size


@kernel(FAMILY, "pred target dpred:out?", check=check_mse, dims="n",
        c="qr_mse_f32(pred, target, dpred, n) -> f64", tol=(1e-5, 1e-7),
        examples=[dict(pred=(7, 33), target=(7, 33), dpred=(7, 33)),
                  dict(pred=(40,), target=(40,), dpred=None)])
def mse(self, pred: Tensor, target: Tensor, dpred: Tensor | None) -> float:
    """Mean squared error over all elements; writes dpred = 2 (pred - target) / n."""
    d = self.scratch("mse", pred.shape) if dpred is None else dpred.w.reshape(pred.shape)
    np.subtract(pred.a, target.a.reshape(pred.shape), out=d)
    flat = d.reshape(-1)
    loss = float(np.dot(flat, flat)) / pred.size
    if dpred is not None:
        np.multiply(d, np.float32(2.0 / pred.size), out=d)
    return loss


@kernel(FAMILY, "logits targets:i32",
        check=Fit({"rows": "logits.rows", "c": "logits.cols"}, {"targets": "{t}.size == rows"},
                  "do not fit: one target for each of the {rows} rows"),
        c="qr_count_correct_f32(logits, targets, rows, c) -> i64", tol=EXACT,
        examples=[dict(logits=(40, 3), targets=((40,), 0, 3))])
def count_correct(self, logits: Tensor, targets: Tensor) -> int:
    """How many rows have their argmax equal to the target (first maximum wins)."""
    am = self.scratch("argmax", (logits.rows,), np.intp)
    np.argmax(self._m(logits), axis=1, out=am)
    eq = self.scratch("argmax_eq", (logits.rows,), np.bool_)
    np.equal(am, targets.a.reshape(-1), out=eq)
    return int(np.count_nonzero(eq))
