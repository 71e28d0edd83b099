"""Evaluation metrics chosen by name, computed from model outputs and targets (NumPy arrays,
no kernel) and accumulated over batches.

A ``Metric`` is ``reset()``, then ``update(y, target, mask)`` once per batch, then
``result()``: the value over everything seen, equal to the value of one ``update`` with all
the batches at once. ``y`` is the model output (logits for the class metrics), ``target``
the targets; ``mask`` (optional, booleans) selects what counts: of the target's shape, or of
its leading dimensions (a mask per sample of sequence targets).

Class metrics take logits ``(..., C)`` against int class targets ``(...)``; ``accuracy``,
``precision``, ``recall`` and ``f1`` are binary for one logit (an output of the target's
shape, or a last dimension of 1): predicted positive where ``y > threshold`` (0: a logit),
positive where ``target > 0.5``. Their ``ignore_index`` (None: none; perplexity's -100)
skips the rows whose target equals it, as the mask does.

``get_metric("accuracy")``, ``get_metric("top5")``, ``get_metric({"type": "f1"})``: see
``METRICS``.
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError, DataError, ShapeError
from ..validate import integer, maybe, positive_int, real

__all__ = ["Metric", "Accuracy", "TopKAccuracy", "Precision", "Recall", "F1", "MAE", "MSE",
           "Perplexity", "METRICS", "get_metric"]


class Metric:
    """Base of metrics: ``reset``, ``update`` per batch, ``result``; ``name`` names the value
    (a report's key), ``type_name`` the kind (what ``get_metric`` takes)."""

    type_name: ClassVar[str] = ""
    #: the attributes ``update`` adds into (numbers or arrays, None before any update): the
    #: ranks of a data-parallel job add theirs up (``counts``, ``add_counts``)
    counters: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.reset()

    def counts(self) -> dict[str, Any]:
        """This metric's counters, to add into another's (``add_counts``)."""
        if not self.counters:
            from ..distributed import DistributedError

            raise DistributedError(f"metric {type(self).__name__} declares no counters, so the "
                                   "ranks of a data-parallel job cannot add it up")
        return {name: getattr(self, name) for name in self.counters}

    def add_counts(self, counts: dict[str, Any]) -> None:
        """Add counters from ``counts`` (another rank's) into this metric's."""
        for name, value in counts.items():
            mine = getattr(self, name)
            if value is not None:
                setattr(self, name, value if mine is None else mine + value)

    @property
    def name(self) -> str:
        """The key of this metric's value in a report: ``type_name`` unless a subclass says otherwise."""
        return self.type_name

    def reset(self) -> None:  # pragma: no cover - abstract
        """Forget every batch seen: the counters back to their start."""
        raise NotImplementedError

    def update(self, y: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Add one batch: outputs ``y`` against ``target``, ``mask`` (optional) selecting what counts."""
        raise NotImplementedError  # pragma: no cover - abstract

    def result(self) -> float:  # pragma: no cover - abstract
        """The value over every batch since ``reset`` (NaN when nothing was counted)."""
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments (``get_metric`` takes them beside ``type``); ``repr`` shows them."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


# ----------------------------------------------------------------------------- helpers
def _mask(mask: np.ndarray | None, shape: tuple[int, ...], owner: str) -> np.ndarray | None:
    """``mask`` as booleans of ``shape``: of that shape, or of its leading dimensions
    (broadcast over the rest)."""
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.dtype.kind not in "biu":
        raise ShapeError(f"metric {owner}: mask must be booleans (or 0/1), got dtype {m.dtype}")
    if m.shape != shape[:m.ndim]:
        raise ShapeError(f"metric {owner}: mask of shape {m.shape} does not fit targets of "
                         f"shape {shape} (it must be their shape or their leading dimensions)")
    m = m.astype(bool).reshape(m.shape + (1,) * (len(shape) - m.ndim))
    return np.broadcast_to(m, shape)


def _ratio(num: float, den: float) -> float:
    return num / den if den else float("nan")


class _ClassMetric(Metric):
    """Logits ``(..., C)`` against class targets ``(...)``, or (``binary_ok``) one logit per
    target: rows selected by the mask and ``ignore_index``."""

    binary_ok: ClassVar[bool] = True

    def __init__(self, threshold: float = 0.0, ignore_index: int | None = None) -> None:
        self.threshold = real(threshold, "threshold", f"metric {self.type_name}", finite=False)
        self.ignore_index = maybe(integer, ignore_index, "ignore_index",
                                  f"metric {self.type_name}")
        super().__init__()

    def _rows(self, y: Any, target: Any, mask: Any):
        """(logits as [rows, C] or None for binary, the binary predictions or None, the
        targets [rows]), the selected rows only."""
        y, target = np.asarray(y), np.asarray(target)
        owner = f"metric {self.type_name}"
        if y.dtype.kind not in "fiu" or target.dtype.kind not in "fiub":
            raise ShapeError(f"{owner}: outputs and targets must be numeric, got {y.dtype} and "
                             f"{target.dtype}")
        if self.binary_ok and (y.shape == target.shape or
                               (y.ndim and y.shape[-1] == 1 and y.shape[:-1] == target.shape)):
            y = y.reshape(target.shape)
            binary = True
        elif y.ndim and y.shape[:-1] == target.shape:
            binary = False
        else:
            raise ShapeError(f"{owner}: outputs of shape {y.shape} do not fit targets of shape "
                             f"{target.shape} (logits (..., C) against targets (...)"
                             + (", or one logit per target)" if self.binary_ok else ")"))
        keep = _mask(mask, target.shape, self.type_name)
        if self.ignore_index is not None:
            ign = target != self.ignore_index
            keep = ign if keep is None else keep & ign
        if binary:
            yr, tr = y.reshape(-1), target.reshape(-1)
            if keep is not None:
                k = keep.reshape(-1)
                yr, tr = yr[k], tr[k]
            return None, yr > self.threshold, tr > 0.5
        c = y.shape[-1]
        if c == 0:
            raise ShapeError(f"{owner}: outputs of shape {y.shape} have no classes")
        yr, tr = y.reshape(-1, c), target.reshape(-1)
        if keep is not None:
            k = keep.reshape(-1)
            yr, tr = yr[k], tr[k]
        if tr.dtype.kind == "f":
            if not np.all(np.isfinite(tr) & (tr == np.round(tr))):
                raise DataError(f"{owner}: targets must be integer class indices")
        if tr.size and (tr.min() < 0 or tr.max() >= c):
            raise DataError(f"{owner}: targets hold class indices in [{int(tr.min())}, "
                            f"{int(tr.max())}], the outputs have {c} classes (0..{c - 1})")
        return yr, None, tr.astype(np.intp)

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {}
        if self.binary_ok:
            config["threshold"] = self.threshold
        config["ignore_index"] = self.ignore_index
        return config


# ----------------------------------------------------------------------------- class metrics
class Accuracy(_ClassMetric):
    """The fraction of rows whose argmax (first maximum) is the target; binary: of targets
    whose prediction ``y > threshold`` agrees with ``target > 0.5``."""

    type_name = "accuracy"
    counters = ("correct", "count")

    def reset(self) -> None:
        """Zero the hits and the rows counted."""
        self.correct, self.count = 0, 0

    def update(self, y: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Count the batch's selected rows, and those whose argmax (binary: thresholded prediction) hits
        the target."""
        yr, pred, tr = self._rows(y, target, mask)
        hits = pred == tr if yr is None else np.argmax(yr, axis=-1) == tr
        self.correct += int(np.count_nonzero(hits))
        self.count += int(hits.size)

    def result(self) -> float:
        """``correct / count``; NaN before any row."""
        return _ratio(self.correct, self.count)


class TopKAccuracy(_ClassMetric):
    """The fraction of rows whose target is among the ``k`` largest logits (a tie with the
    k-th counts as a hit); named ``top<k>_accuracy``."""

    type_name = "top_k_accuracy"
    binary_ok = False
    counters = ("correct", "count")

    def __init__(self, k: int = 5, ignore_index: int | None = None) -> None:
        self.k = positive_int(k, "k", "metric top_k_accuracy")
        super().__init__(ignore_index=ignore_index)

    @property
    def name(self) -> str:
        """``top<k>_accuracy``, e.g. ``top5_accuracy``."""
        return f"top{self.k}_accuracy"

    def reset(self) -> None:
        """Zero the hits and the rows counted."""
        self.correct, self.count = 0, 0

    def update(self, y: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Count the batch's selected rows, and those with fewer than ``k`` classes scoring above
        the target."""
        yr, _, tr = self._rows(y, target, mask)
        score = np.take_along_axis(yr, tr[:, None], axis=1)
        above = np.count_nonzero(yr > score, axis=1)       # classes ranked above the target
        self.correct += int(np.count_nonzero(above < self.k))
        self.count += int(tr.size)

    def result(self) -> float:
        """``correct / count``; NaN before any row."""
        return _ratio(self.correct, self.count)

    def get_config(self) -> dict[str, Any]:
        """``k`` and ``ignore_index`` (no ``threshold``: never binary)."""
        return {"k": self.k, "ignore_index": self.ignore_index}


class _Confusion(_ClassMetric):
    """Per-class true positives, false positives and false negatives; binary: of class 1."""

    counters = ("tp", "fp", "fn", "binary")

    def add_counts(self, counts: dict[str, Any]) -> None:
        if counts["tp"] is None:
            return
        if self.tp is not None and (counts["binary"], counts["tp"].size) != (self.binary,
                                                                          self.tp.size):
            raise ShapeError(f"metric {self.type_name}: another rank counted "
                             f"{counts['tp'].size} classes, this one {self.tp.size}")
        self.binary = counts["binary"]
        super().add_counts({k: counts[k] for k in ("tp", "fp", "fn")})

    def reset(self) -> None:
        self.tp = self.fp = self.fn = None
        self.binary: bool | None = None

    def update(self, y: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> None:
        yr, pred, tr = self._rows(y, target, mask)
        if yr is None:
            binary, c = True, 2
            pred, tr = pred.astype(np.intp), tr.astype(np.intp)
        else:
            binary, c = False, yr.shape[1]
            pred = np.argmax(yr, axis=-1) if yr.size else np.zeros(0, np.intp)
        if self.binary is not None and (binary, c) != (self.binary, self.tp.size):
            was = "binary" if self.binary else f"{self.tp.size} classes"
            raise ShapeError(f"metric {self.type_name}: a batch of "
                             f"{'binary' if binary else f'{c} classes'} after {was}")
        hit = pred == tr
        tp = np.bincount(tr[hit], minlength=c)
        fp = np.bincount(pred[~hit], minlength=c)
        fn = np.bincount(tr[~hit], minlength=c)
        if self.tp is None:
            self.tp, self.fp, self.fn, self.binary = tp, fp, fn, binary
        else:
            self.tp, self.fp, self.fn = self.tp + tp, self.fp + fp, self.fn + fn

    def _per_class(self) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def result(self) -> float:
        """Binary: the positive class's; else the macro average over all classes (a class
        with a zero denominator scores 0, sklearn's ``zero_division=0``). NaN before any
        update."""
        if self.tp is None:
            return float("nan")
        per = self._per_class()
        return float(per[1]) if self.binary else float(per.mean())


def _div0(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(num.shape, np.float64), where=den > 0)


class Precision(_Confusion):
    """tp / (tp + fp): of the positive predictions (binary) or macro over classes."""

    type_name = "precision"

    def _per_class(self) -> np.ndarray:
        return _div0(self.tp, self.tp + self.fp)


class Recall(_Confusion):
    """tp / (tp + fn): of the positive targets (binary) or macro over classes."""

    type_name = "recall"

    def _per_class(self) -> np.ndarray:
        return _div0(self.tp, self.tp + self.fn)


class F1(_Confusion):
    """2 tp / (2 tp + fp + fn) (binary), or its macro average over classes (the mean of the
    per-class F1, as sklearn)."""

    type_name = "f1"

    def _per_class(self) -> np.ndarray:
        return _div0(2 * self.tp, 2 * self.tp + self.fp + self.fn)


class Perplexity(_ClassMetric):
    """exp of the mean cross-entropy of logits ``(..., C)`` over the rows, rows whose target
    is ``ignore_index`` (-100, PyTorch's default) skipped."""

    type_name = "perplexity"
    binary_ok = False
    counters = ("total", "count")

    def __init__(self, ignore_index: int | None = -100) -> None:
        super().__init__(ignore_index=ignore_index)

    def reset(self) -> None:
        """Zero the summed cross-entropy and the rows counted."""
        self.total, self.count = 0.0, 0

    def update(self, y: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Add the cross-entropy of the batch's selected rows (a stable log-sum-exp, in float64)
        and count them."""
        yr, _, tr = self._rows(y, target, mask)
        x = yr.astype(np.float64)
        mx = x.max(axis=1, keepdims=True) if x.size else np.zeros((0, 1))
        lse = np.log(np.exp(x - mx).sum(axis=1)) + mx[:, 0]
        self.total += float(np.sum(lse - np.take_along_axis(x, tr[:, None], axis=1)[:, 0]))
        self.count += int(tr.size)

    def result(self) -> float:
        """exp of the mean cross-entropy per row; NaN before any row."""
        return math.exp(self.total / self.count) if self.count else float("nan")

    def get_config(self) -> dict[str, Any]:
        """``ignore_index``."""
        return {"ignore_index": self.ignore_index}


# ----------------------------------------------------------------------------- regression
class _Elementwise(Metric):
    """Over every element of outputs and targets of one shape (the mask selects elements)."""

    counters = ("total", "count")

    def reset(self) -> None:
        self.total, self.count = 0.0, 0

    def _term(self, d: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def update(self, y: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> None:
        y, target = np.asarray(y), np.asarray(target)
        if y.shape != target.shape:
            raise ShapeError(f"metric {self.type_name}: outputs of shape {y.shape} and targets "
                             f"of shape {target.shape} differ")
        if y.dtype.kind not in "fiu" or target.dtype.kind not in "fiub":
            raise ShapeError(f"metric {self.type_name}: outputs and targets must be numeric, "
                             f"got {y.dtype} and {target.dtype}")
        d = y.astype(np.float64) - target.astype(np.float64)
        keep = _mask(mask, target.shape, self.type_name)
        if keep is not None:
            d = d[keep]
        self.total += float(np.sum(self._term(d)))
        self.count += int(d.size)

    def result(self) -> float:
        return _ratio(self.total, self.count)


class MAE(_Elementwise):
    """Mean absolute error over all (selected) elements."""

    type_name = "mae"

    def _term(self, d: np.ndarray) -> np.ndarray:
        return np.abs(d)


class MSE(_Elementwise):
    """Mean squared error over all (selected) elements."""

    type_name = "mse"

    def _term(self, d: np.ndarray) -> np.ndarray:
        return d * d


# ----------------------------------------------------------------------------- by name
#: every metric by the name ``get_metric`` takes (``top<k>``, e.g. ``top5``, is
#: ``top_k_accuracy`` with that k)
METRICS: dict[str, type[Metric]] = {m.type_name: m for m in (
    Accuracy, TopKAccuracy, Precision, Recall, F1, MAE, MSE, Perplexity)}
_TOP_K = re.compile(r"^top(\d+)$")


def _unknown(name: str) -> ConfigError:
    names = sorted(METRICS) + ["top5"]
    close = difflib.get_close_matches(name.lower(), names, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return ConfigError(f"unknown metric {name!r}{hint}; metrics: {', '.join(names)} (top<k> "
                       "for any k)")


def get_metric(spec: str | dict[str, Any] | Metric) -> Metric:
    """A fresh metric from its name (``"accuracy"``, ``"top5"``, ``"top_k_accuracy"``, ...)
    or a dict ``{"type": name, **config}`` (``{"type": "top_k_accuracy", "k": 3}``); a
    ``Metric`` is returned as it is. ConfigError for an unknown name (naming the close ones
    and listing the valid ones) or a bad config."""
    if isinstance(spec, Metric):
        return spec
    if isinstance(spec, str):
        name, config = spec, {}
    elif isinstance(spec, dict):
        if not isinstance(spec.get("type"), str):
            raise ConfigError(f"metric config {spec!r} needs a 'type' naming the metric")
        config = {k: v for k, v in spec.items() if k != "type"}
        name = spec["type"]
    else:
        raise ConfigError(f"a metric is a name or a dict with a 'type', got {spec!r}")
    m = _TOP_K.match(name)
    if m:
        if "k" in config:
            raise ConfigError(f"metric {name!r} sets k already, got k={config['k']!r} too")
        name, config = "top_k_accuracy", {**config, "k": int(m.group(1))}
    cls = METRICS.get(name)
    if cls is None:
        raise _unknown(name)
    try:
        return cls(**config)
    except TypeError as exc:
        raise ConfigError(f"metric {name}: bad config {config}: {exc}") from None
