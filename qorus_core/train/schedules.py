"""Learning-rate schedules: callables ``step -> lr`` (``step`` counts updates from 0).

A schedule may leave its peak ``lr`` and ``total_steps`` unset: ``setup`` fills them from the
optimizer's lr and the Trainer's step count, so a TOML config needs to say only the shape
(``type = "cosine"``, ``warmup_steps = 50``). Warm-up is linear and never gives lr 0: update
``s`` of a warm-up of ``w`` steps uses ``lr * (s + 1) / w``.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import ConfigError
from ..validate import maybe, nonneg_int, positive_int, real


class Schedule:
    """Base: ``lr`` (peak) and ``total_steps`` may be None until ``setup``."""

    name = ""

    def __init__(self, lr: float | None = None, warmup_steps: int = 0) -> None:
        owner = f"schedule {self.name}"
        self.lr = maybe(real, lr, "lr", owner, lo=0.0)
        self.warmup_steps = nonneg_int(warmup_steps, "warmup_steps", owner)
        self.total_steps: int | None = None

    def setup(self, lr: float, total_steps: int) -> Schedule:
        """Fill what the config left open: the peak lr and the run's number of updates."""
        if self.lr is None:
            self.lr = float(lr)
        if self.total_steps is None:
            self.total_steps = int(total_steps)
        return self

    def _warmup(self, step: int) -> float:
        return min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0

    def __call__(self, step: int) -> float:  # pragma: no cover - abstract
        """The lr for update ``step`` (counted from 0)."""
        raise NotImplementedError

    def _peak(self) -> float:
        if self.lr is None:
            raise ConfigError(f"schedule {self.name}: no lr (pass lr= or call setup)")
        return self.lr

    def get_config(self) -> dict[str, Any]:
        """``type``, ``lr`` and ``warmup_steps``: what ``make_schedule`` takes."""
        return {"type": self.name, "lr": self.lr, "warmup_steps": self.warmup_steps}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.get_config()})"


class Constant(Schedule):
    """The same lr at every step (after an optional linear warm-up)."""

    name = "constant"

    def __call__(self, step: int) -> float:
        """The lr at ``step``: ``lr``, ramped up linearly during the warm-up."""
        return self._peak() * self._warmup(step)


class LinearWarmup(Constant):
    """Linear warm-up over ``warmup_steps`` to ``lr``, then constant."""

    name = "linear_warmup"


class Cosine(Schedule):
    """Linear warm-up, then cosine decay from ``lr`` to ``min_lr`` at ``total_steps``
    (the shape of HuggingFace's ``get_cosine_schedule_with_warmup`` with a floor)."""

    name = "cosine"

    def __init__(self, lr: float | None = None, warmup_steps: int = 0, total_steps: int | None = None,
                 min_lr: float = 0.0) -> None:
        super().__init__(lr, warmup_steps)
        self.total_steps = maybe(positive_int, total_steps, "total_steps", "schedule cosine")
        self.min_lr = real(min_lr, "min_lr", "schedule cosine", lo=0.0)

    def __call__(self, step: int) -> float:
        """The lr at ``step``: linear warm-up, then a half cosine from ``lr`` down to ``min_lr``
        at ``total_steps`` (``min_lr`` after it)."""
        peak = self._peak()
        if step < self.warmup_steps:
            return peak * self._warmup(step)
        if self.total_steps is None:
            raise ConfigError("schedule cosine: total_steps unknown (pass it or call setup)")
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_lr + (peak - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def get_config(self) -> dict[str, Any]:
        """The base config plus ``total_steps`` and ``min_lr``."""
        return {**super().get_config(), "total_steps": self.total_steps, "min_lr": self.min_lr}


SCHEDULES: dict[str, type[Schedule]] = {c.name: c for c in (Constant, LinearWarmup, Cosine)}


def make_schedule(config: dict[str, Any] | None, where: str = "schedule") -> Schedule | None:
    """Build a schedule from ``{"type": name, **kwargs}`` (None -> no schedule)."""
    if config is None:
        return None
    config = dict(config)
    name = str(config.pop("type", "constant")).lower()
    cls = SCHEDULES.get(name)
    if cls is None:
        raise ConfigError(f"{where}: unknown schedule type {name!r}; known: {', '.join(SCHEDULES)}")
    try:
        return cls(**config)
    except (TypeError, ValueError) as exc:   # ConfigError is a ValueError too
        raise ConfigError(f"{where}: bad {name} schedule settings {config}: {exc}") from None
