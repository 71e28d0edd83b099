"""Evaluation metrics (qorus_core/train/metrics.py) against sklearn.metrics or a direct NumPy
computation: one-shot, accumulated over batches (equal to one-shot), with masks and
ignore_index; choosing them by name, and the errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qorus_core import ConfigError, DataError, ShapeError
from qorus_core.train.metrics import (
    F1,
    MAE,
    METRICS,
    MSE,
    Accuracy,
    Metric,
    Perplexity,
    Precision,
    Recall,
    TopKAccuracy,
    get_metric,
)

skm = pytest.importorskip("sklearn.metrics")


def _multiclass(seed=0, n=203, c=7):
    rng = np.random.default_rng(seed)
    y = rng.standard_normal((n, c)).astype(np.float32)
    t = rng.integers(0, c, n).astype(np.int32)
    y[np.arange(n) % 3 == 0, t[np.arange(n) % 3 == 0]] += 2.0       # better than chance
    return y, t


def _binary(seed=1, n=157):
    rng = np.random.default_rng(seed)
    t = (rng.random(n) < 0.4).astype(np.float32)
    y = (rng.standard_normal(n) + 1.5 * (t - 0.5)).astype(np.float32)   # logits
    return y, t


def _batched(metric: Metric, y, t, mask=None, sizes=(1, 17, 50, 0, 64)) -> float:
    """``metric`` over ``y, t`` in batches of ``sizes`` (then the rest)."""
    metric.reset()
    start = 0
    for s in (*sizes, len(t)):
        stop = min(len(t), start + s)
        metric.update(y[start:stop], t[start:stop], None if mask is None else mask[start:stop])
        start = stop
    return metric.result()


def _once(metric: Metric, y, t, mask=None) -> float:
    metric.reset()
    metric.update(y, t, mask)
    return metric.result()


# ----------------------------------------------------------------------------- against sklearn
SKLEARN_CASES = [
    ("accuracy", lambda t, p, y: skm.accuracy_score(t, p)),
    ("precision", lambda t, p, y: skm.precision_score(t, p, labels=range(y.shape[1]),
                                                      average="macro", zero_division=0)),
    ("recall", lambda t, p, y: skm.recall_score(t, p, labels=range(y.shape[1]), average="macro",
                                                zero_division=0)),
    ("f1", lambda t, p, y: skm.f1_score(t, p, labels=range(y.shape[1]), average="macro",
                                        zero_division=0)),
]


@pytest.mark.parametrize("name,ref", SKLEARN_CASES, ids=[c[0] for c in SKLEARN_CASES])
def test_multiclass_metrics_match_sklearn(name, ref):
    y, t = _multiclass()
    m = get_metric(name)
    want = ref(t, np.argmax(y, 1), y)
    assert _once(m, y, t) == pytest.approx(want, rel=1e-12)
    assert _batched(m, y, t) == pytest.approx(want, rel=1e-12)
    # a mask: only the rows it selects
    mask = np.random.default_rng(2).random(len(t)) < 0.6
    want_m = ref(t[mask], np.argmax(y[mask], 1), y)
    assert _once(m, y, t, mask) == pytest.approx(want_m, rel=1e-12)
    assert _batched(m, y, t, mask) == pytest.approx(want_m, rel=1e-12)


def test_macro_average_counts_every_class_of_the_output():
    """A class never predicted nor seen still counts (scores 0), as sklearn given labels."""
    y = np.eye(4, dtype=np.float32)[[0, 1, 1, 0, 2]]
    t = np.array([0, 1, 0, 0, 2])
    for cls, fn in [(Precision, skm.precision_score), (Recall, skm.recall_score), (F1, skm.f1_score)]:
        want = fn(t, np.argmax(y, 1), labels=range(4), average="macro", zero_division=0)
        assert _once(cls(), y, t) == pytest.approx(want, rel=1e-12)
        assert _once(cls(), y, t) < fn(t, np.argmax(y, 1), average="macro", zero_division=0)


BINARY_CASES = [
    ("accuracy", skm.accuracy_score),
    ("precision", lambda t, p: skm.precision_score(t, p, zero_division=0)),
    ("recall", lambda t, p: skm.recall_score(t, p, zero_division=0)),
    ("f1", lambda t, p: skm.f1_score(t, p, zero_division=0)),
]


@pytest.mark.parametrize("name,ref", BINARY_CASES, ids=[c[0] for c in BINARY_CASES])
@pytest.mark.parametrize("column", [False, True])
def test_binary_metrics_match_sklearn(name, ref, column):
    """One logit per target (of the target's shape, or a last dimension of 1): y > 0 against
    target > 0.5, the positive class's score."""
    y, t = _binary()
    yy = y[:, None] if column else y
    want = ref(t > 0.5, y > 0)
    m = get_metric(name)
    assert _once(m, yy, t) == pytest.approx(want, rel=1e-12)
    assert _batched(m, yy, t) == pytest.approx(want, rel=1e-12)
    mask = np.arange(len(t)) % 4 != 1
    assert _batched(m, yy, t, mask) == pytest.approx(ref(t[mask] > 0.5, y[mask] > 0), rel=1e-12)
    shifted = get_metric({"type": name, "threshold": 0.7})
    assert _once(shifted, yy, t) == pytest.approx(ref(t > 0.5, y > 0.7), rel=1e-12)


def test_multilabel_accuracy_is_per_element():
    rng = np.random.default_rng(3)
    y = rng.standard_normal((20, 5)).astype(np.float32)
    t = (rng.random((20, 5)) < 0.5).astype(np.float32)
    want = np.mean((y > 0) == (t > 0.5))
    assert _batched(Accuracy(), y, t) == pytest.approx(want)
    # a mask per sample (the leading dimension) selects whole rows
    mask = np.arange(20) % 3 == 0
    assert _once(Accuracy(), y, t, mask) == pytest.approx(np.mean((y[mask] > 0) == (t[mask] > 0.5)))


@pytest.mark.filterwarnings("ignore:'k' .* greater than or equal to 'n_classes'")
@pytest.mark.parametrize("k", [1, 2, 5, 7, 9])
def test_top_k_accuracy_matches_sklearn(k):
    y, t = _multiclass(seed=4)
    want = skm.top_k_accuracy_score(t, y, k=k, labels=range(7))
    m = get_metric({"type": "top_k_accuracy", "k": k})
    assert m.name == f"top{k}_accuracy"
    assert _once(m, y, t) == pytest.approx(want, rel=1e-12)
    assert _batched(m, y, t) == pytest.approx(want, rel=1e-12)
    mask = np.arange(len(t)) % 5 != 0
    assert _batched(m, y, t, mask) == pytest.approx(
        skm.top_k_accuracy_score(t[mask], y[mask], k=k, labels=range(7)), rel=1e-12)
    assert get_metric(f"top{k}").k == k


def test_top_1_is_accuracy():
    y, t = _multiclass(seed=5)
    assert _once(TopKAccuracy(k=1), y, t) == _once(Accuracy(), y, t)


@pytest.mark.parametrize("cls,ref", [(MAE, skm.mean_absolute_error), (MSE, skm.mean_squared_error)])
def test_regression_metrics_match_sklearn(cls, ref):
    rng = np.random.default_rng(6)
    y = rng.standard_normal((90, 3)).astype(np.float32)
    t = rng.standard_normal((90, 3)).astype(np.float32)
    y64, t64 = y.astype(np.float64), t.astype(np.float64)   # sklearn keeps float32 in float32
    want = ref(t64.reshape(-1), y64.reshape(-1))
    assert _once(cls(), y, t) == pytest.approx(want, rel=1e-12)
    assert _batched(cls(), y, t) == pytest.approx(want, rel=1e-12)
    emask = rng.random((90, 3)) < 0.5                       # elementwise
    assert _batched(cls(), y, t, emask) == pytest.approx(ref(t64[emask], y64[emask]), rel=1e-12)
    smask = np.arange(90) % 2 == 0                          # per sample
    assert _once(cls(), y, t, smask) == pytest.approx(ref(t64[smask], y64[smask]), rel=1e-12)


def _perplexity(y, t, ignore_index=-100):
    y = y.reshape(-1, y.shape[-1]).astype(np.float64)
    t = t.reshape(-1)
    keep = t != ignore_index
    y, t = y[keep], t[keep]
    lse = np.log(np.exp(y - y.max(1, keepdims=True)).sum(1)) + y.max(1)
    return math.exp(np.mean(lse - y[np.arange(len(t)), t]))


def test_perplexity_is_exp_of_mean_cross_entropy():
    rng = np.random.default_rng(7)
    y = (rng.standard_normal((12, 9, 11)) * 3).astype(np.float32)     # sequences
    t = rng.integers(0, 11, (12, 9)).astype(np.int32)
    t[rng.random((12, 9)) < 0.25] = -100
    want = _perplexity(y, t)
    m = get_metric("perplexity")
    assert _once(m, y, t) == pytest.approx(want, rel=1e-12)
    assert _batched(m, y, t, sizes=(1, 2, 0, 4)) == pytest.approx(want, rel=1e-12)
    torch = pytest.importorskip("torch")
    ce = torch.nn.functional.cross_entropy(torch.tensor(y.reshape(-1, 11), dtype=torch.float64),
                                           torch.tensor(t.reshape(-1)).long())
    assert m.result() == pytest.approx(math.exp(ce.item()), rel=1e-10)
    # a mask per sample on top of the ignored positions; another ignore_index
    mask = np.arange(12) % 3 != 0
    assert _once(m, y, t, mask) == pytest.approx(_perplexity(y[mask], t[mask]), rel=1e-12)
    t2 = np.where(t == -100, 3, t)
    assert _once(Perplexity(ignore_index=3), y, t2) == pytest.approx(_perplexity(y, t2, 3), rel=1e-12)
    # uniform logits: perplexity = the number of classes
    assert _once(Perplexity(), np.zeros((4, 11), np.float32), np.arange(4)) == pytest.approx(11)


def test_class_metrics_skip_ignore_index():
    y, t = _multiclass(seed=8)
    t = t.copy()
    t[::4] = -1
    keep = t != -1
    for name in ("accuracy", "top_k_accuracy", "precision", "recall", "f1"):
        m = get_metric({"type": name, "ignore_index": -1})
        ref = get_metric(name)
        assert _batched(m, y, t) == pytest.approx(_once(ref, y[keep], t[keep]), rel=1e-12), name
        with pytest.raises(DataError, match=rf"metric {name}: targets hold class indices in \[-1,"):
            _once(ref, y, t)


def test_nothing_counted_is_nan_and_reset_starts_over():
    y, t = _multiclass()
    for name in ("accuracy", "top5", "precision", "mae", "perplexity"):
        m = get_metric(name)
        assert math.isnan(m.result()), name
        m.update(y, t if name != "mae" else y)
        m.reset()
        assert math.isnan(m.result()), name
    acc = Accuracy()
    acc.update(y, t, np.zeros(len(t), bool))
    assert math.isnan(acc.result())
    acc.update(y[:1], np.argmax(y[:1], 1))
    assert acc.result() == 1.0


# ----------------------------------------------------------------------------- by name, errors
def test_get_metric_by_name_and_dict():
    assert set(METRICS) == {"accuracy", "top_k_accuracy", "precision", "recall", "f1", "mae", "mse",
                            "perplexity"}
    for name, cls in METRICS.items():
        m = get_metric(name)
        assert type(m) is cls and m.type_name == name
        again = get_metric({"type": name, **m.get_config()})
        assert type(again) is cls and again.get_config() == m.get_config()
    assert get_metric("top5").k == 5 and get_metric("top_k_accuracy").k == 5
    assert get_metric({"type": "top3", "ignore_index": 0}).get_config() == {"k": 3, "ignore_index": 0}
    m = Accuracy()
    assert get_metric(m) is m
    assert get_metric("accuracy") is not get_metric("accuracy")


def test_an_unknown_metric_names_the_close_ones_and_lists_all():
    with pytest.raises(ConfigError, match=r"unknown metric 'acuracy' \(did you mean accuracy") as e:
        get_metric("acuracy")
    for name in METRICS:
        assert name in str(e.value)
    with pytest.raises(ConfigError, match=r"unknown metric 'precison' \(did you mean precision\?\)"):
        get_metric({"type": "precison"})
    with pytest.raises(ConfigError, match=r"unknown metric 'zzz'; metrics: accuracy, f1"):
        get_metric("zzz")


@pytest.mark.parametrize("spec,match", [
    ({"type": "top_k_accuracy", "k": 0}, "metric top_k_accuracy: k must be a positive int"),
    ({"type": "top_k_accuracy", "k": 2.0}, "metric top_k_accuracy: k"),
    ({"type": "top5", "k": 3}, "sets k already"),
    ({"type": "accuracy", "threshold": "0"}, "metric accuracy: threshold"),
    ({"type": "accuracy", "ignore_index": 1.5}, "metric accuracy: ignore_index"),
    ({"type": "mae", "reduction": "sum"}, "metric mae: bad config"),
    ({"k": 3}, "needs a 'type'"),
    (3, "a metric is a name or a dict"),
])
def test_bad_metric_config(spec, match):
    with pytest.raises(ConfigError, match=match):
        get_metric(spec)


def test_shapes_and_targets_are_checked():
    y, t = _multiclass()
    with pytest.raises(ShapeError, match=r"metric accuracy: outputs of shape \(203, 7\) do not fit "
                                         r"targets of shape \(202,\)"):
        Accuracy().update(y, t[:-1])
    with pytest.raises(ShapeError, match="metric top_k_accuracy: outputs of shape"):
        TopKAccuracy().update(y[:, 0], t)                  # no binary form
    with pytest.raises(ShapeError, match=r"mask of shape \(5,\) does not fit"):
        Accuracy().update(y, t, np.ones(5, bool))
    with pytest.raises(ShapeError, match="mask must be booleans"):
        Accuracy().update(y, t, np.ones(len(t), np.float32))
    with pytest.raises(DataError, match=r"targets hold class indices in \[1, 7\], the outputs "
                                        r"have 7 classes"):
        Accuracy().update(y, np.where(t == 0, 7, t))
    with pytest.raises(DataError, match="integer class indices"):
        Accuracy().update(y, t + 0.5)
    with pytest.raises(ShapeError, match="metric mse: outputs of shape"):
        MSE().update(y, y[:, :3])
    f1 = F1()
    f1.update(y, t)
    with pytest.raises(ShapeError, match="metric f1: a batch of binary after 7 classes"):
        f1.update(y[:, 0], t)
    with pytest.raises(ShapeError, match="metric recall: a batch of 4 classes after 7 classes"):
        r = Recall()
        r.update(y, t)
        r.update(y[:, :4], t % 4)
