"""Optimizers with PyTorch's semantics, each step one kernel call over the flat buffers.

The model keeps params, grads and ``slots`` optimizer-state buffers as equally laid out
contiguous regions of one arena, so an optimizer holds no arrays of its own: ``bind(model)``
reserves its slots (before any plan is compiled) and ``step(lr)`` updates the whole model at
once. ``state_dict`` holds the step count; the buffers are saved with the model's arena.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from ..errors import ConfigError, NumericsError, QorusError
from ..validate import boolean, config_keys, real


class Optimizer:
    """Base: ``slots`` state buffers, a step count, a base ``lr`` (a schedule may override)."""

    registry_name: ClassVar[str] = ""
    #: names of the state buffers, in ``model.store.slots`` order (PyTorch's state names)
    slot_names: tuple[str, ...] = ()

    def __init__(self, lr: float) -> None:
        self.lr = real(lr, "lr", type(self).__name__, lo=0.0)
        self.steps = 0
        self.model: Any = None

    @property
    def slots(self) -> int:
        """How many state buffers the model reserves for it (``len(slot_names)``)."""
        return len(self.slot_names)

    def bind(self, model: Any) -> Optimizer:
        """Attach to ``model`` and reserve its state buffers (drops plans compiled before)."""
        model.reserve_optimizer_state(self.slots)
        self.model = model
        return self

    def _buffers(self):
        if self.model is None:
            raise QorusError(f"{type(self).__name__}.step: call bind(model) first")
        st = self.model.store
        return self.model.kernels, st.params, st.grads, st.slots

    def step(self, lr: float | None = None) -> None:
        """One update of every parameter from the current grads, at ``lr`` (default: self.lr)."""
        self.steps += 1
        self._update(self.lr if lr is None else float(lr))

    def _update(self, lr: float) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """The type name and the step count (the buffers are saved with the model's arena)."""
        return {"type": self.type_name, "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the step count; the state buffers are copied in separately (``restore_optimizer``)."""
        self.steps = int(state["steps"])

    @property
    def type_name(self) -> str:
        """The registered name (``core.AdamW``), the class name for an unregistered one."""
        from ..registry import registered_name

        return registered_name(type(self), "optimizer") or type(self).__name__

    def get_config(self) -> dict[str, Any]:  # pragma: no cover - abstract
        """The constructor arguments (``lr`` and the hyperparameters), from which ``from_config``
        rebuilds it."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Optimizer:
        """Build one from ``get_config``'s output; ConfigError for an unknown key or a bad value."""
        config_keys(cls, config, f"optimizer {cls.registry_name or cls.__name__}")
        try:
            return cls(**config)
        except TypeError as exc:
            raise ConfigError(f"optimizer {cls.registry_name or cls.__name__}: bad config "
                              f"{config}: {exc}") from None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{self.type_name}({args})"


class SGD(Optimizer):
    """torch.optim.SGD: weight decay (L2), momentum with dampening, Nesterov."""

    def __init__(self, lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        super().__init__(lr)
        self.momentum = real(momentum, "momentum", "SGD", lo=0.0)
        self.dampening = real(dampening, "dampening", "SGD", lo=0.0, hi=1.0)
        self.weight_decay = real(weight_decay, "weight_decay", "SGD", lo=0.0)
        self.nesterov = boolean(nesterov, "nesterov", "SGD")
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ConfigError("SGD: nesterov needs momentum > 0 and dampening = 0")
        self.slot_names = ("momentum_buffer",) if self.momentum else ()

    def _update(self, lr: float) -> None:
        k, p, g, s = self._buffers()
        k.sgd_step(p, g, s[0] if s else g, lr, self.momentum, self.dampening,
                   self.weight_decay, self.nesterov, self.steps == 1)

    def get_config(self) -> dict[str, Any]:
        """``lr``, ``momentum``, ``dampening``, ``weight_decay`` and ``nesterov``."""
        return {"lr": self.lr, "momentum": self.momentum, "dampening": self.dampening,
                "weight_decay": self.weight_decay, "nesterov": self.nesterov}


class Adam(Optimizer):
    """torch.optim.Adam: L2 weight decay added to the gradient; bias-corrected moments."""

    slot_names: tuple[str, ...] = ("exp_avg", "exp_avg_sq")
    decoupled: ClassVar[bool] = False

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] | list[float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(lr)
        name = type(self).__name__
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ConfigError(f"{name}: betas must be two numbers in [0, 1), got {betas!r}")
        self.betas = (real(betas[0], "betas[0]", name, lo=0.0, hi=1.0, hi_open=True),
                      real(betas[1], "betas[1]", name, lo=0.0, hi=1.0, hi_open=True))
        self.eps = real(eps, "eps", name, lo=0.0)
        self.weight_decay = real(weight_decay, "weight_decay", name, lo=0.0)

    def _update(self, lr: float) -> None:
        k, p, g, (m, v) = self._buffers()
        k.adam_step(p, g, m, v, lr, self.betas[0], self.betas[1], self.eps, self.weight_decay,
                    self.steps, self.decoupled)

    def get_config(self) -> dict[str, Any]:
        """``lr``, ``betas`` (as a list), ``eps`` and ``weight_decay`` (AdamW's too)."""
        return {"lr": self.lr, "betas": list(self.betas), "eps": self.eps,
                "weight_decay": self.weight_decay}


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay (p *= 1 - lr * weight_decay)."""

    decoupled: ClassVar[bool] = True

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] | list[float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2) -> None:
        super().__init__(lr, betas, eps, weight_decay)


def clip_grad_norm(model: Any, max_norm: float, step: int | None = None) -> float:
    """Scale all grads so their global L2 norm is at most ``max_norm``; return the norm before
    clipping (torch.nn.utils.clip_grad_norm_). One ``sumsq`` over the grads region, one ``scale``.

    Raises NumericsError (naming ``step`` when given) if the norm is not finite.
    """
    k, grads = model.kernels, model.grads
    if grads is None:
        raise QorusError("clip_grad_norm: the model has no gradients yet (compile a training plan)")
    norm = math.sqrt(k.sumsq(grads))
    if not math.isfinite(norm):
        where = f" at step {step}" if step is not None else ""
        raise NumericsError(f"gradient norm is {norm}{where}: the gradients hold NaN or inf")
    coef = float(max_norm) / (norm + 1e-6)
    if coef < 1.0:
        k.scale(grads, coef)
    return norm


#: what core registers, under ``core.<name>``
OPTIMIZERS: dict[str, type[Optimizer]] = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}
