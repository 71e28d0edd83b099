"""Losses: a mean over the batch, computed by one kernel call, returned as a Python float.

Core's: ``MSE``, ``L1``, ``Huber``, ``CrossEntropy`` (label smoothing, ignore_index),
``BCEWithLogits`` (pos_weight) and ``KLDiv`` (batchmean, log_target), each PyTorch's.

A loss tells the Trainer what its targets look like (``target_spec``) so the Trainer can plan a
targets Tensor per batch size, and writes ``dL/dy`` into the plan's ``dy`` when given. Extra
metrics (accuracy) are reported as per-batch sums, so the Trainer averages them over samples.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError, DataError, ShapeError
from ..tensor import Spec, Tensor
from ..validate import boolean, config_keys, integer, probability, real


class Loss:
    """Base of losses: ``loss(y, target, dy, k) -> float`` (mean over the batch)."""

    registry_name: ClassVar[str] = ""
    #: names of the metrics ``metric_sums`` returns, in order (e.g. ``("accuracy",)``)
    metrics: ClassVar[tuple[str, ...]] = ()

    def target_spec(self, output_shape: tuple[int, ...]) -> Spec:  # pragma: no cover - abstract
        """Per-sample shape and dtype of the targets for a model output of ``output_shape``."""
        raise NotImplementedError

    def __call__(self, y: Tensor, target: Tensor, dy: Tensor | None, k: Any) -> float:
        """The batch's loss of ``y`` against ``target`` (a mean), through kernel set ``k``; writes
        ``dL/dy`` into ``dy`` when given."""
        raise NotImplementedError  # pragma: no cover - abstract

    def metric_sums(self, y: Tensor, target: Tensor, k: Any) -> tuple[float, ...]:
        """Sum over the batch of each metric in ``metrics`` (the Trainer divides by samples)."""
        return ()

    def mean_count(self, target: Tensor) -> float:
        """How many terms this batch's loss is the mean of, up to a constant factor (default:
        its rows). Data-parallel ranks weigh their losses and gradients by it, so that the
        ranks together compute the mean one process would over the whole batch."""
        return float(target.shape[0])

    def check_targets(self, y: np.ndarray, output_shape: tuple[int, ...], what: str = "targets"
                      ) -> np.ndarray:
        """Validate a whole target array once (before training); returns it in the planned dtype."""
        spec = self.target_spec(output_shape)
        y = np.asarray(y)
        if tuple(y.shape[1:]) != spec.shape:
            want = "".join(", " + str(d) for d in spec.shape)
            raise ShapeError(f"{self.type_name}: {what} must have shape (N{want}) for model output "
                             f"(N, {', '.join(map(str, output_shape))}), got {y.shape}")
        if spec.dtype == "i32":
            if y.dtype.kind not in "iuf":
                raise ShapeError(f"{self.type_name}: {what} must be integer class indices, "
                                 f"got dtype {y.dtype}")
            if y.dtype.kind == "f":
                with np.errstate(invalid="ignore"):
                    bad = ~np.isfinite(y) | (y != np.round(y))
                if bad.any():
                    raise ShapeError(f"{self.type_name}: {what} must be integer class indices, "
                                     f"got dtype {y.dtype} with {_first(y, bad)}")
            if y.size and (y.min() < _I32.min or y.max() > _I32.max):   # a cast would wrap
                bad = (y < _I32.min) | (y > _I32.max)
                raise DataError(f"{self.type_name}: {what} must be class indices that fit int32, "
                                f"got {_first(y, bad)}")
            return np.ascontiguousarray(y, dtype=np.int32)
        if y.dtype.kind not in "fiu":
            raise ShapeError(f"{self.type_name}: {what} dtype {y.dtype} is not numeric")
        return np.ascontiguousarray(y, dtype=np.float32)

    @property
    def type_name(self) -> str:
        """The registered name (``core.MSELoss``), the class name for an unregistered one."""
        from ..registry import registered_name

        return registered_name(type(self), "loss") or type(self).__name__

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments, from which ``from_config`` rebuilds it (none here)."""
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Loss:
        """Build one from ``get_config``'s output; ConfigError for an unknown key or a bad value."""
        config_keys(cls, config, f"loss {cls.registry_name or cls.__name__}")
        try:
            return cls(**config)
        except TypeError as exc:
            name = cls.registry_name or cls.__name__
            raise ConfigError(f"loss {name}: bad config {config}: {exc}") from None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{self.type_name}({args})"


class MSELoss(Loss):
    """Mean squared error over all output elements (torch's ``mse_loss``, reduction='mean')."""

    def target_spec(self, output_shape: tuple[int, ...]) -> Spec:
        """Float targets of the output's shape."""
        return Spec(tuple(output_shape), "f32")

    def __call__(self, y: Tensor, target: Tensor, dy: Tensor | None, k: Any) -> float:
        """The mean squared error of ``y`` against ``target``; writes its gradient into ``dy`` when given."""
        return k.mse(y, target, dy)


class L1Loss(Loss):
    """Mean absolute error over all output elements (torch's ``l1_loss``, reduction='mean');
    the gradient at y == target is 0."""

    def target_spec(self, output_shape: tuple[int, ...]) -> Spec:
        """Float targets of the output's shape."""
        return Spec(tuple(output_shape), "f32")

    def __call__(self, y: Tensor, target: Tensor, dy: Tensor | None, k: Any) -> float:
        """The mean absolute error of ``y`` against ``target``; writes its gradient (sign / n) into ``dy``
        when given."""
        return k.l1(y, target, dy)


class HuberLoss(Loss):
    """torch.nn.HuberLoss(delta) over all output elements (mean): quadratic within ``delta``
    of the target, linear (slope ``delta``) beyond."""

    def __init__(self, delta: float = 1.0) -> None:
        self.delta = real(delta, "delta", "Huber", lo=0.0, lo_open=True)

    def target_spec(self, output_shape: tuple[int, ...]) -> Spec:
        """Float targets of the output's shape."""
        return Spec(tuple(output_shape), "f32")

    def __call__(self, y: Tensor, target: Tensor, dy: Tensor | None, k: Any) -> float:
        """The mean Huber loss of ``y`` against ``target`` at ``delta``; writes its gradient into ``dy``
        when given."""
        return k.huber(y, target, dy, self.delta)

    def get_config(self) -> dict[str, Any]:
        """``delta``."""
        return {"delta": self.delta}


class BCEWithLogitsLoss(Loss):
    """torch.nn.BCEWithLogitsLoss: binary cross-entropy of logits (sigmoid folded in,
    numerically stable) against float targets of the output's shape, probabilities in
    [0, 1], mean over all elements. ``pos_weight`` (one weight >= 0 per entry of the output's
    last dimension, or None) weighs the positive term of each label as in PyTorch."""

    def __init__(self, pos_weight: Any = None) -> None:
        self.pos_weight = _weights(pos_weight, "pos_weight", "BCEWithLogits")
        self._pw = None if self.pos_weight is None else \
            Tensor(np.array(self.pos_weight, np.float32), "pos_weight")

    def target_spec(self, output_shape: tuple[int, ...]) -> Spec:
        """Float targets of the output's shape; ShapeError when ``pos_weight`` does not have one
        weight per entry of the output's last dimension."""
        if self.pos_weight is not None and (not output_shape
                                            or output_shape[-1] != len(self.pos_weight)):
            raise ShapeError(f"BCEWithLogits: pos_weight has {len(self.pos_weight)} weights, the "
                             f"model output (N, {', '.join(map(str, output_shape))}) has "
                             f"{output_shape[-1] if output_shape else 1} in its last dimension")
        return Spec(tuple(output_shape), "f32")

    def check_targets(self, y: np.ndarray, output_shape: tuple[int, ...], what: str = "targets"
                      ) -> np.ndarray:
        """The base checks, then every target a probability in [0, 1] (NaN refused)."""
        out = super().check_targets(y, output_shape, what)
        with np.errstate(invalid="ignore"):
            bad = ~((out >= 0.0) & (out <= 1.0))          # NaN too
        if bad.any():
            raise DataError(f"BCEWithLogits: {what} must be probabilities in [0, 1], got "
                            f"{_first(out, bad)}")
        return out

    def __call__(self, y: Tensor, target: Tensor, dy: Tensor | None, k: Any) -> float:
        """The mean binary cross-entropy of logits ``y`` against ``target`` (``pos_weight`` applied);
        writes its gradient into ``dy`` when given."""
        return k.bce_with_logits(y, target, dy, self._pw)

    def get_config(self) -> dict[str, Any]:
        """``pos_weight``, as a list (or None)."""
        return {"pos_weight": None if self.pos_weight is None else list(self.pos_weight)}


class KLDivLoss(Loss):
    """torch.nn.KLDivLoss(reduction='batchmean'): the model output holds log-probabilities,
    the targets (the output's shape) probabilities, or log-probabilities with ``log_target``;
    the sum of target (log target - output) over each batch, divided by its samples."""

    def __init__(self, log_target: bool = False) -> None:
        self.log_target = boolean(log_target, "log_target", "KLDiv")

    def target_spec(self, output_shape: tuple[int, ...]) -> Spec:
        """Float targets of the output's shape."""
        return Spec(tuple(output_shape), "f32")

    def check_targets(self, y: np.ndarray, output_shape: tuple[int, ...], what: str = "targets"
                      ) -> np.ndarray:
        """The base checks, then finite log-probabilities (``log_target``) or finite probabilities >= 0."""
        out = super().check_targets(y, output_shape, what)
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(out) if self.log_target else ~((out >= 0.0) & (out < np.inf))
        if bad.any():
            want = "finite log-probabilities" if self.log_target else \
                "probabilities (finite, >= 0)"
            raise DataError(f"KLDiv: {what} must be {want}, got {_first(out, bad)}")
        return out

    def __call__(self, y: Tensor, target: Tensor, dy: Tensor | None, k: Any) -> float:
        """KL(``target`` || exp(``y``)) summed and divided by the batch's samples; writes its gradient
        into ``dy`` when given."""
        return k.kl_div(y, target, dy, self.log_target)

    def get_config(self) -> dict[str, Any]:
        """``log_target``."""
        return {"log_target": self.log_target}


class CrossEntropyLoss(Loss):
    """Cross-entropy from logits (..., C) against int32 class indices (...), mean over rows.

    ``label_smoothing`` as in PyTorch: the target is (1 - eps) one-hot + eps / C uniform.
    ``ignore_index`` as in PyTorch: rows whose target equals it count in neither the loss nor
    the mean (a batch of ignored rows only: loss 0, where PyTorch gives NaN).
    Reports ``accuracy`` (argmax equals the target) through ``k.count_correct``: over the
    rows not ignored of each batch, weighted by its samples (the Trainer averages the sums
    over samples; exact when no row is ignored).
    """

    metrics: ClassVar[tuple[str, ...]] = ("accuracy",)

    def __init__(self, label_smoothing: float = 0.0, ignore_index: int = -100) -> None:
        self.label_smoothing = probability(label_smoothing, "label_smoothing", "CrossEntropy")
        self.ignore_index = integer(ignore_index, "ignore_index", "CrossEntropy",
                                    lo=int(_I32.min), hi=int(_I32.max),
                                    want="an int that fits int32")

    def target_spec(self, output_shape: tuple[int, ...]) -> Spec:
        """int32 class indices of the output's shape less its class dimension; ShapeError for a
        0-d output."""
        if len(output_shape) < 1:
            raise ShapeError(f"CrossEntropy: model output needs a class dimension, got {output_shape}")
        return Spec(tuple(output_shape[:-1]), "i32")

    def check_targets(self, y: np.ndarray, output_shape: tuple[int, ...], what: str = "targets"
                      ) -> np.ndarray:
        """The base checks, then every index in ``[0, C)`` unless it is ``ignore_index``."""
        out = super().check_targets(y, output_shape, what)
        c = output_shape[-1]
        kept = out != self.ignore_index
        vals = out[kept]
        if vals.size and (int(vals.min()) < 0 or int(vals.max()) >= c):
            also = f" (or ignore_index {self.ignore_index})" if not kept.all() else ""
            raise DataError(f"CrossEntropy: {what} hold class indices in [{int(vals.min())}, "
                            f"{int(vals.max())}], the model has {c} classes (0..{c - 1}){also}; "
                            f"first out of range: {_first(out, ((out < 0) | (out >= c)) & kept)}")
        return out

    def __call__(self, y: Tensor, target: Tensor, dy: Tensor | None, k: Any) -> float:
        """The mean cross-entropy of logits ``y`` against class indices ``target`` (``label_smoothing``;
        ``ignore_index`` rows skipped); writes its gradient into ``dy`` when given."""
        return k.cross_entropy(y, target, dy, self.label_smoothing, self.ignore_index)

    def _ignored(self, target: Tensor) -> int:
        tg, ign = target.a, self.ignore_index
        return int(np.count_nonzero(tg == ign)) if tg.min() <= ign <= tg.max() else 0

    def mean_count(self, target: Tensor) -> float:
        """The targets not ignored: the loss is their mean."""
        return float(target.size - self._ignored(target))

    def metric_sums(self, y: Tensor, target: Tensor, k: Any) -> tuple[float, ...]:
        """``(accuracy sum,)``: the correct rows per sample; with ignored rows, the accuracy over
        the rows kept times the batch's samples."""
        correct = k.count_correct(y, target, self.ignore_index)
        rows_per_sample = target.size // target.shape[0]   # > 1 for sequence outputs
        ignored = self._ignored(target)
        if not ignored:
            return (correct if rows_per_sample == 1 else correct / rows_per_sample,)
        kept = target.size - ignored
        return (target.shape[0] * correct / kept if kept else 0.0,)

    def get_config(self) -> dict[str, Any]:
        """``label_smoothing``, and ``ignore_index`` unless it is the default -100 (so configs saved
        before it stay equal)."""
        config: dict[str, Any] = {"label_smoothing": self.label_smoothing}
        if self.ignore_index != -100:                        # configs saved before it stay equal
            config["ignore_index"] = self.ignore_index
        return config


def _weights(value: Any, field: str, owner: str) -> tuple[float, ...] | None:
    """None, or a non-empty list of finite numbers >= 0 (a 1-D array too) as a tuple."""
    if value is None:
        return None
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{owner}: {field} must be a non-empty list of numbers >= 0 or None, "
                          f"got {value!r}")
    return tuple(real(v, f"{field}[{i}]", owner, lo=0.0) for i, v in enumerate(value))


_I32 = np.iinfo(np.int32)


def _first(y: np.ndarray, bad: np.ndarray) -> str:
    """Where the first ``bad`` element of ``y`` is: ``"row 3: 4294967297"`` (``"row 3,
    position 5: ..."`` for sequence targets)."""
    at = tuple(int(i) for i in np.argwhere(bad)[0])
    pos = f", position {', '.join(map(str, at[1:]))}" if len(at) > 1 else ""
    return f"row {at[0]}{pos}: {y[at].item()!r}"


#: what core registers, under ``core.<name>``
LOSSES: dict[str, type[Loss]] = {"MSE": MSELoss, "CrossEntropy": CrossEntropyLoss,
                                 "BCEWithLogits": BCEWithLogitsLoss, "L1": L1Loss,
                                 "Huber": HuberLoss, "KLDiv": KLDivLoss}
