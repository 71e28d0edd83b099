"""Losses and metrics (csrc/loss.c): cross-entropy with label smoothing and ignore_index,
MSE, L1, Huber, BCE with logits, KL divergence (PyTorch's semantics, reduction 'mean', KL's
'batchmean'), the count of correct predictions. Each loss returns its value as a float; the
gradient of that value is written when asked for.

``bce_with_logits`` and ``kl_div`` may be negative (targets outside [0, 1]; a KL of rounded
distributions), so their C symbols return a status and write the loss through a pointer (a
hand-written C method each); the others return the loss (>= 0) or a negative error code.
"""

from __future__ import annotations

import ctypes
import operator
import threading

import numpy as np

from ...errors import KernelError
from ...tensor import Tensor
from .spec import EXACT, Fit, c_error, kernel, sizes_error

FAMILY = "loss"
_LOSS_TOL = (1e-5, 1e-7)


def check_cross_entropy(kernel: str, logits: Tensor, targets: Tensor, dlogits: Tensor | None,
                        label_smoothing, ignore_index) -> tuple[int, int]:
    """(rows, classes) of a cross-entropy call: one target per row of logits, dlogits like logits."""
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
    operator.index(ignore_index)        # an int: a fraction is refused, not truncated
    return n, c


def _target_error(kernel: str, logits: Tensor) -> KernelError:
    return KernelError(f"{kernel}: target class out of range [0, {logits.cols}), logits "
                       f"{logits.shape}")


def _ce_error(kernel: str, rc: int, logits: Tensor, *rest) -> KernelError:
    return _target_error(kernel, logits) if rc == -2 else c_error(kernel, rc)


_CE = dict(logits=((6, 10), -4.0, 4.0), targets=((6,), 0, 10), dlogits=(6, 10))
_CE_IGNORED = lambda rng: np.array([3, -100, 0, 9, -100, 5], np.int32)  # noqa: E731
_CE_ALL_IGNORED = lambda rng: np.full(6, 7, np.int32)  # noqa: E731


@kernel(FAMILY, "logits targets:i32 dlogits:out?", check=check_cross_entropy, dims="n c",
        c="qr_cross_entropy_f32(logits, targets, dlogits, n, c, label_smoothing:f64, "
          "ignore_index:i64) -> f64",
        on_error=_ce_error, tol=_LOSS_TOL,
        examples=[_CE, {**_CE, "dlogits": None, "label_smoothing": 0.1},
                  {**_CE, "label_smoothing": 1.0},
                  {**_CE, "targets": _CE_IGNORED},
                  {**_CE, "targets": _CE_IGNORED, "label_smoothing": 0.2},
                  {**_CE, "targets": lambda rng: np.array([3, 3, 0, 9, 3, 5], np.int32),
                   "ignore_index": 3},
                  {**_CE, "targets": _CE_ALL_IGNORED, "ignore_index": 7}],
        bad=[(r"target class out of range \[0, 10\)", dict(targets=((6,), 10, 11))),
             ("target class out of range", dict(targets=((6,), -2, -1))),
             ("target class out of range", dict(targets=((6,), -2, -1), ignore_index=-1)),
             ("target class out of range", dict(targets=_CE_IGNORED, ignore_index=3)),
             ("label_smoothing=1.5 is outside", dict(label_smoothing=1.5)),
             (r"empty logits \(0, 10\)", dict(logits=(0, 10), targets=((0,), 0, 1),
                                               dlogits=(0, 10)))])
def cross_entropy(self, logits: Tensor, targets: Tensor, dlogits: Tensor | None,
                  label_smoothing: float = 0.0, ignore_index: int = -100) -> float:
    """Mean cross-entropy of logits (N, C) against class indices (N,) int32, with PyTorch's
    label smoothing; rows whose target is ``ignore_index`` count in neither the loss nor the
    mean (PyTorch's rule; other targets must be in [0, C)). Writes dlogits = (softmax -
    smoothed one-hot) / kept rows when given, 0 on ignored rows (dlogits may alias logits).
    Every row ignored: 0.0 and dlogits all 0 (PyTorch returns NaN)."""
    X = self._m(logits)
    n, c = X.shape
    tg = targets.a.reshape(-1)
    lo, hi = int(tg.min()), int(tg.max())
    ign = None                                            # the ignored rows, when there are any
    if lo <= ignore_index <= hi:
        ign = self.scratch("ce_ign", (n,), np.bool_)
        np.equal(tg, ignore_index, out=ign)
        if not ign.any():
            ign = None
    kept = n
    if ign is None:
        if lo < 0 or hi >= c:
            raise _target_error("cross_entropy", logits)
    else:                                                 # ignored rows pick class 0
        tk = self.scratch("ce_tk", (n,), np.int32)
        np.copyto(tk, tg)
        np.copyto(tk, 0, where=ign)
        kept = n - int(np.count_nonzero(ign))
        if int(tk.min()) < 0 or int(tk.max()) >= c:
            raise _target_error("cross_entropy", logits)
        if kept == 0:
            if dlogits is not None:
                self._mw(dlogits)[...] = 0.0
            return 0.0
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
    if ign is None:
        fidx = self._row_index(targets, n, c)
    else:
        fidx = self.scratch("ce_fidx", (n,), np.intp)
        base = self._kept(("ce_base", n, c), lambda: np.arange(n, dtype=np.intp) * c)
        np.add(base, tk, out=fidx)
    picked = self.scratch("ce_picked", (n,))
    np.take(sh.reshape(-1), fidx, out=picked)
    eps = float(label_smoothing)
    if ign is None:
        sum_lse, sum_picked = float(lse.sum()), float(picked.sum())
        sum_sh = float(sh.sum()) if eps else 0.0
    else:                                                 # the kept rows' terms only
        row = self.scratch("ce_row", (n,))
        np.copyto(row, lse.reshape(-1))
        np.copyto(row, 0.0, where=ign)
        sum_lse = float(row.sum())
        np.copyto(picked, 0.0, where=ign)
        sum_picked = float(picked.sum())
        sum_sh = 0.0
        if eps:
            np.sum(sh, axis=1, out=row)
            np.copyto(row, 0.0, where=ign)
            sum_sh = float(row.sum())
    loss = (1.0 - eps) * (sum_lse - sum_picked)
    if eps:
        loss += eps * (c * sum_lse - sum_sh) / c
    loss /= kept
    if dlogits is not None:
        if eps:
            np.subtract(e, np.float32(eps / c), out=e)
        flat = e.reshape(-1)
        np.take(flat, fidx, out=picked)
        np.subtract(picked, np.float32(1.0 - eps), out=picked)
        np.put(flat, fidx, picked)
        np.multiply(e, np.float32(1.0 / kept), out=e)
        if ign is not None:
            np.copyto(e, 0.0, where=ign[:, None])
    return loss


def check_mse(kernel: str, pred: Tensor, target: Tensor, dpred: Tensor | None) -> int:
    """The element count of an MSE call: pred, target and dpred of one size."""
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


def check_l1(kernel: str, y: Tensor, target: Tensor, dy: Tensor | None) -> int:
    """The element count of an L1 call: y, target and dy of one size."""
    if y.size == 0:
        raise KernelError(f"{kernel}: empty y {y.shape}")
    if target.size != y.size or (dy is not None and dy.size != y.size):
        raise sizes_error(kernel, "must have the same size", y=y, target=target, dy=dy)
    return y.size


_EL = dict(y=(7, 33), target=(7, 33), dy=(7, 33))


@kernel(FAMILY, "y target dy:out?", check=check_l1, dims="n",
        c="qr_l1_f32(y, target, dy, n) -> f64", tol=_LOSS_TOL,
        examples=[_EL, dict(y=(40,), target=(40,), dy=None),
                  dict(y=lambda rng: np.float32([1, 2, 3, -1, 0, 5]),
                       target=lambda rng: np.float32([1, 0, 3, 2, 0, 4.5]), dy=(6,))],
        bad=[("must have the same size", dict(target=(7, 32)))])
def l1(self, y: Tensor, target: Tensor, dy: Tensor | None) -> float:
    """Mean absolute error over all elements (torch's ``l1_loss``); writes dy = sign(y -
    target) / n, sign(0) = 0."""
    d = self.scratch("l1", y.shape) if dy is None else dy.w.reshape(y.shape)
    np.subtract(y.a, target.a.reshape(y.shape), out=d)
    a = self.scratch("l1_abs", y.shape)
    np.abs(d, out=a)
    loss = float(np.sum(a, dtype=np.float64)) / y.size
    if dy is not None:
        np.sign(d, out=d)
        np.multiply(d, np.float32(1.0 / y.size), out=d)
    return loss


def check_huber(kernel: str, y: Tensor, target: Tensor, dy: Tensor | None, delta) -> int:
    """The element count of a Huber call; delta must be positive."""
    n = check_l1(kernel, y, target, dy)
    if not delta > 0:
        raise KernelError(f"{kernel}: delta={delta} must be > 0")
    return n


@kernel(FAMILY, "y target dy:out?", check=check_huber, dims="n",
        c="qr_huber_f32(y, target, dy, n, delta:f64) -> f64", tol=_LOSS_TOL,
        examples=[{**_EL, "delta": 0.5}, dict(y=(40,), target=(40,), dy=None),
                  {**_EL, "delta": 2.5}],
        bad=[("must have the same size", dict(dy=(7, 32))),
             ("delta=0 must be > 0", dict(delta=0)), ("delta=-1.0 must be > 0", dict(delta=-1.0))])
def huber(self, y: Tensor, target: Tensor, dy: Tensor | None, delta: float = 1.0) -> float:
    """torch.nn.HuberLoss (mean): 0.5 e^2 where |e| < delta, else delta (|e| - delta / 2),
    e = y - target; writes dy = clip(e, -delta, delta) / n."""
    d = self.scratch("huber", y.shape) if dy is None else dy.w.reshape(y.shape)
    np.subtract(y.a, target.a.reshape(y.shape), out=d)
    z = self.scratch("huber_z", y.shape, np.float64)
    q = self.scratch("huber_q", y.shape, np.float64)
    np.abs(d, out=z)
    np.multiply(z, 0.5, out=q)
    np.multiply(q, z, out=q)                              # 0.5 z^2
    small = self.scratch("huber_m", y.shape, np.bool_)
    np.less(z, delta, out=small)
    np.subtract(z, 0.5 * delta, out=z)
    np.multiply(z, delta, out=z)                          # delta (z - delta / 2)
    np.copyto(z, q, where=small)
    loss = float(z.sum()) / y.size
    if dy is not None:
        df = np.float32(delta)
        np.clip(d, -df, df, out=d)
        np.multiply(d, np.float32(1.0 / y.size), out=d)
    return loss


# bce_with_logits and kl_div: the C symbol writes the loss through a pointer to this thread's
# double (a loss of either sign; no allocation per call)
_cell = threading.local()


def _loss_cell() -> tuple[ctypes.c_double, int]:
    try:
        return _cell.v
    except AttributeError:
        v = ctypes.c_double()
        _cell.v = (v, ctypes.addressof(v))
        return _cell.v


def check_bce_with_logits(kernel: str, logits: Tensor, targets: Tensor, dlogits: Tensor | None,
                          pos_weight: Tensor | None) -> tuple[int, int]:
    """(rows, cols) of a BCE-with-logits call: logits, targets and dlogits of one size, pos_weight one
    per column."""
    if logits.size == 0:
        raise KernelError(f"{kernel}: empty logits {logits.shape}")
    if targets.size != logits.size or (dlogits is not None and dlogits.size != logits.size):
        raise sizes_error(kernel, "must have the same size", logits=logits, targets=targets,
                          dlogits=dlogits)
    if pos_weight is not None and pos_weight.size != logits.cols:
        raise sizes_error(kernel, f"do not fit: pos_weight needs one weight for each of the "
                          f"{logits.cols} columns", logits=logits, pos_weight=pos_weight)
    return logits.size, logits.cols


_BCE = dict(logits=((6, 10), -8.0, 8.0), targets=((6, 10), 0.0, 1.0), dlogits=(6, 10),
            pos_weight=((10,), 0.25, 4.0))


@kernel(FAMILY, "logits targets dlogits:out? pos_weight?", check=check_bce_with_logits,
        dims="n c",
        c="qr_bce_with_logits_f32(logits, targets, dlogits, pos_weight, n, c, loss:ptr)",
        tol=_LOSS_TOL,
        examples=[_BCE, {**_BCE, "pos_weight": None, "dlogits": None},
                  dict(logits=((5, 3, 7), -30.0, 30.0),
                       targets=lambda rng: (rng.random((5, 3, 7)) < 0.5).astype(np.float32),
                       dlogits=(5, 3, 7), pos_weight=((7,), 0.0, 2.0)),
                  dict(logits=(41,), targets=((41,), -0.5, 1.5), dlogits=(41,))],
        bad=[("must have the same size", dict(targets=(6, 9))),
             ("pos_weight needs one weight for each of the 10 columns",
              dict(pos_weight=((9,), 0.5, 2.0)))])
def bce_with_logits(self, logits: Tensor, targets: Tensor, dlogits: Tensor | None,
                    pos_weight: Tensor | None = None) -> float:
    """torch.nn.BCEWithLogitsLoss (mean over all elements) of logits against float targets
    of the same size, stable for large |logits|: (1 - t) x + w (log1p(exp(-|x|)) + max(-x,
    0)), w = 1 + (pos_weight - 1) t, pos_weight (last dim, broadcast over rows) optional;
    writes dlogits = ((1 - t) - w sigmoid(-x)) / n."""
    d = self._mw(dlogits) if dlogits is not None else None
    shape = (logits.rows, logits.cols)
    n = logits.size
    x = self.scratch("bce_x", shape, np.float64)
    t = self.scratch("bce_t", shape, np.float64)
    e = self.scratch("bce_e", shape, np.float64)
    sp = self.scratch("bce_sp", shape, np.float64)
    omt = self.scratch("bce_1mt", shape, np.float64)
    np.copyto(x, self._m(logits))
    np.copyto(t, targets.a.reshape(shape))
    np.abs(x, out=e)
    np.negative(e, out=e)
    np.exp(e, out=e)                                      # exp(-|x|)
    np.log1p(e, out=sp)
    np.negative(x, out=omt)
    np.maximum(omt, 0.0, out=omt)
    np.add(sp, omt, out=sp)                               # softplus(-x)
    np.subtract(1.0, t, out=omt)                          # 1 - t
    w = None
    if pos_weight is not None:
        w = self.scratch("bce_w", shape, np.float64)
        pw = self.scratch("bce_pw", (logits.cols,), np.float64)
        np.copyto(pw, pos_weight.a.reshape(-1))
        np.subtract(pw, 1.0, out=pw)
        np.multiply(t, pw, out=w)
        np.add(w, 1.0, out=w)                             # 1 + (pos_weight - 1) t
    term = t                                              # t is not read after this
    np.multiply(omt, x, out=term)
    if w is not None:
        np.multiply(w, sp, out=sp)
    np.add(term, sp, out=term)
    loss = float(term.sum()) / n
    if d is not None:
        g = sp
        np.add(e, 1.0, out=g)                             # 1 + exp(-|x|)
        pos = self.scratch("bce_pos", shape, np.bool_)
        np.greater_equal(x, 0.0, out=pos)
        num = term
        num[...] = 1.0
        np.copyto(num, e, where=pos)
        np.divide(num, g, out=num)                        # sigmoid(-x)
        if w is not None:
            np.multiply(w, num, out=num)
        np.subtract(omt, num, out=num)
        np.multiply(num, 1.0 / n, out=num)
        np.copyto(d.reshape(shape), num, casting="same_kind")
    return loss


@bce_with_logits.c_method
def bce_with_logits(self, logits: Tensor, targets: Tensor, dlogits: Tensor | None,  # noqa: F811
                    pos_weight: Tensor | None = None) -> float:
    """The C method: float32 operands in one C call, anything else on the NumPy set."""
    if logits.dtype != "f32" or targets.dtype != "f32" or \
            (dlogits is not None and dlogits.dtype != "f32") or \
            (pos_weight is not None and pos_weight.dtype != "f32"):
        return self.fallback.bce_with_logits(logits, targets, dlogits, pos_weight)
    n, c = check_bce_with_logits("bce_with_logits", logits, targets, dlogits, pos_weight)
    v, at = _loss_cell()
    rc = self._qr_bce_with_logits_f32(logits.p, targets.p, None if dlogits is None else dlogits.wp,
                                      None if pos_weight is None else pos_weight.p, n, c, at)
    if rc:
        raise c_error("bce_with_logits", rc)
    return v.value


def check_kl_div(kernel: str, input: Tensor, target: Tensor, dy: Tensor | None,
                 log_target) -> tuple[int, int]:
    """(elements, batch) of a KL-divergence call: input and target of one shape."""
    if input.size == 0:
        raise KernelError(f"{kernel}: empty input {input.shape}")
    if target.shape != input.shape:
        raise sizes_error(kernel, "must have the same shape (batchmean divides by the first "
                          "dimension)", input=input, target=target)
    if dy is not None and dy.size != input.size:
        raise sizes_error(kernel, "must have the same size", input=input, dy=dy)
    return input.size, input.shape[0]


_KL = dict(input=((6, 10), -5.0, 0.0), target=((6, 10), 0.0, 0.2), dy=(6, 10))


@kernel(FAMILY, "input target dy:out?", check=check_kl_div, dims="n batch",
        c="qr_kl_div_f32(input, target, dy, n, batch, log_target:bool, loss:ptr)",
        tol=_LOSS_TOL,
        examples=[_KL, {**_KL, "dy": None},
                  dict(input=((4, 3, 5), -4.0, 0.0), target=((4, 3, 5), -4.0, 0.0),
                       dy=(4, 3, 5), log_target=True),
                  dict(input=((7, 9), -3.0, 0.0), dy=(7, 9),
                       target=lambda rng: np.where(rng.random((7, 9)) < 0.4, 0.0,
                                                   rng.random((7, 9))).astype(np.float32))],
        bad=[("must have the same shape", dict(target=(60,))),
             ("must have the same size", dict(dy=(6, 9)))])
def kl_div(self, input: Tensor, target: Tensor, dy: Tensor | None,
           log_target: bool = False) -> float:
    """torch.nn.KLDivLoss(reduction='batchmean'): the sum over all elements of target (log
    target - input) (0 log 0 = 0), or exp(target) (target - input) with ``log_target``,
    divided by the first dimension of input (log-probabilities); target of input's shape.
    Writes dy = -target / batch (-exp(target) / batch)."""
    d = dy.w.reshape(input.shape) if dy is not None else None
    batch = input.shape[0]
    x = self.scratch("kl_x", input.shape, np.float64)
    t = self.scratch("kl_t", input.shape, np.float64)
    u = self.scratch("kl_u", input.shape, np.float64)
    np.copyto(x, input.a)
    np.copyto(t, target.a)
    with np.errstate(divide="ignore", invalid="ignore"):
        if log_target:
            np.subtract(t, x, out=u)
            np.exp(t, out=t)
            np.multiply(t, u, out=u)                      # exp(t) (t - x)
        else:
            np.log(t, out=u)
            np.multiply(t, u, out=u)
            np.copyto(u, 0.0, where=t == 0.0)             # xlogy(t, t)
            np.multiply(t, x, out=x)
            np.subtract(u, x, out=u)                      # ... - t x
    loss = float(u.sum()) / batch
    if d is not None:
        if log_target:
            np.multiply(t, -1.0 / batch, out=t)
            np.copyto(d, t, casting="same_kind")
        else:
            np.multiply(target.a, np.float32(-1.0 / batch), out=d)
    return loss


@kl_div.c_method
def kl_div(self, input: Tensor, target: Tensor, dy: Tensor | None,  # noqa: F811
           log_target: bool = False) -> float:
    """The C method: float32 operands in one C call, anything else on the NumPy set."""
    if input.dtype != "f32" or target.dtype != "f32" or (dy is not None and dy.dtype != "f32"):
        return self.fallback.kl_div(input, target, dy, log_target)
    n, batch = check_kl_div("kl_div", input, target, dy, log_target)
    v, at = _loss_cell()
    rc = self._qr_kl_div_f32(input.p, target.p, None if dy is None else dy.wp, n, batch,
                             1 if log_target else 0, at)
    if rc:
        raise c_error("kl_div", rc)
    return v.value


def _count_ignored(rng) -> np.ndarray:
    t = rng.integers(0, 3, 40).astype(np.int32)
    t[::3] = 1
    return t


@kernel(FAMILY, "logits targets:i32",
        check=Fit({"rows": "logits.rows", "c": "logits.cols"}, {"targets": "{t}.size == rows"},
                  "do not fit: one target for each of the {rows} rows"),
        c="qr_count_correct_f32(logits, targets, rows, c, ignore_index:i64) -> i64", tol=EXACT,
        examples=[dict(logits=(40, 3), targets=((40,), 0, 3)),
                  dict(logits=(40, 3), targets=_count_ignored, ignore_index=1)])
def count_correct(self, logits: Tensor, targets: Tensor, ignore_index: int = -100) -> int:
    """How many rows have their argmax equal to the target (first maximum wins); rows whose
    target is ``ignore_index`` do not count."""
    ign = operator.index(ignore_index)
    am = self.scratch("argmax", (logits.rows,), np.intp)
    np.argmax(self._m(logits), axis=1, out=am)
    eq = self.scratch("argmax_eq", (logits.rows,), np.bool_)
    tg = targets.a.reshape(-1)
    np.equal(am, tg, out=eq)
    if 0 <= ign < logits.cols:
        ne = self.scratch("argmax_ne", (logits.rows,), np.bool_)
        np.not_equal(tg, ign, out=ne)
        np.logical_and(eq, ne, out=eq)
    return int(np.count_nonzero(eq))
