"""Losses: a mean over the batch, computed by one kernel call, returned as a Python float.

A loss tells the Trainer what its targets look like (``target_spec``) so the Trainer can plan a
targets Tensor per batch size, and writes ``dL/dy`` into the plan's ``dy`` when given. Extra
metrics (accuracy) are reported as per-batch sums, so the Trainer averages them over samples.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError, DataError, ShapeError
from ..tensor import Spec, Tensor
from ..validate import probability


class Loss:
    """Base of losses: ``loss(y, target, dy, k) -> float`` (mean over the batch)."""

    registry_name: ClassVar[str] = ""
    #: names of the metrics ``metric_sums`` returns, in order (e.g. ``("accuracy",)``)
    metrics: ClassVar[tuple[str, ...]] = ()

    def target_spec(self, output_shape: tuple[int, ...]) -> Spec:  # pragma: no cover - abstract
        """Per-sample shape and dtype of the targets for a model output of ``output_shape``."""
        raise NotImplementedError

    def __call__(self, y: Tensor, target: Tensor, dy: Tensor | None, k: Any) -> float:
        raise NotImplementedError  # pragma: no cover - abstract

    def metric_sums(self, y: Tensor, target: Tensor, k: Any) -> tuple[float, ...]:
        """Sum over the batch of each metric in ``metrics`` (the Trainer divides by samples)."""
        return ()

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
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Loss:
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
        return Spec(tuple(output_shape), "f32")

    def __call__(self, y: Tensor, target: Tensor, dy: Tensor | None, k: Any) -> float:
        return k.mse(y, target, dy)


class CrossEntropyLoss(Loss):
    """Cross-entropy from logits (..., C) against int32 class indices (...), mean over rows.

    ``label_smoothing`` as in PyTorch: the target is (1 - eps) one-hot + eps / C uniform.
    Reports ``accuracy`` (argmax equals the target) through ``k.count_correct``.
    """

    metrics: ClassVar[tuple[str, ...]] = ("accuracy",)

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = probability(label_smoothing, "label_smoothing", "CrossEntropy")

    def target_spec(self, output_shape: tuple[int, ...]) -> Spec:
        if len(output_shape) < 1:
            raise ShapeError(f"CrossEntropy: model output needs a class dimension, got {output_shape}")
        return Spec(tuple(output_shape[:-1]), "i32")

    def check_targets(self, y: np.ndarray, output_shape: tuple[int, ...], what: str = "targets"
                      ) -> np.ndarray:
        out = super().check_targets(y, output_shape, what)
        c = output_shape[-1]
        if out.size and (int(out.min()) < 0 or int(out.max()) >= c):
            raise DataError(f"CrossEntropy: {what} hold class indices in [{int(out.min())}, "
                            f"{int(out.max())}], the model has {c} classes (0..{c - 1}); first "
                            f"out of range: {_first(out, (out < 0) | (out >= c))}")
        return out

    def __call__(self, y: Tensor, target: Tensor, dy: Tensor | None, k: Any) -> float:
        return k.cross_entropy(y, target, dy, self.label_smoothing)

    def metric_sums(self, y: Tensor, target: Tensor, k: Any) -> tuple[float, ...]:
        correct = k.count_correct(y, target)
        rows_per_sample = target.size // target.shape[0]   # > 1 for sequence outputs
        return (correct if rows_per_sample == 1 else correct / rows_per_sample,)

    def get_config(self) -> dict[str, Any]:
        return {"label_smoothing": self.label_smoothing}


_I32 = np.iinfo(np.int32)


def _first(y: np.ndarray, bad: np.ndarray) -> str:
    """Where the first ``bad`` element of ``y`` is: ``"row 3: 4294967297"`` (``"row 3,
    position 5: ..."`` for sequence targets)."""
    at = tuple(int(i) for i in np.argwhere(bad)[0])
    pos = f", position {', '.join(map(str, at[1:]))}" if len(at) > 1 else ""
    return f"row {at[0]}{pos}: {y[at].item()!r}"


#: what core registers, under ``core.<name>``
LOSSES: dict[str, type[Loss]] = {"MSE": MSELoss, "CrossEntropy": CrossEntropyLoss}
