"""Sequence: one sequence's run-time state over a loaded model, the weights shared.

A model's weights and persistent buffers are read-only at inference; what a forward writes
is the plan's activation arena, the non-persistent state buffers (an LLM's KV caches, an
RNN's carried state) and ``run.pos`` (the number of tokens already cached). A ``Sequence``
owns its own of all three: its own inference plans (compiled from the model's network, over
the model's weights, never copying them), its own ``StateStore`` and its own ``RunState``.
So several sequences live on one loaded model (chat sessions, a server's slots), each giving
exactly what it gives alone, in one thread or each in its own.

One sequence is driven by one thread at a time (like a file object); different sequences
need no lock. If the model's plans go stale (its state arena grows for training, moving the
weights, or ``set_kernels``), the sequence recompiles on its next ``plan`` and keeps its
states; a plan of it held from before raises ``StalePlanError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .plan import Plan, RunState
from .plan_cache import DEFAULT_CAPACITY, PlanCache
from .states import StateStore

if TYPE_CHECKING:
    from .model import Model


class Sequence:
    """Own state buffers, position and inference plans over ``model``'s weights."""

    def __init__(self, model: Model, max_plans: int = DEFAULT_CAPACITY) -> None:
        self.model = model
        self.run = RunState()
        self.states = StateStore(model.seed, shared=model.states)
        self._plans = PlanCache(max_plans, model.store)   # drops stale plans by itself

    @property
    def version(self) -> int:
        """The model's ``plans_version`` this sequence's cached plans were compiled at."""
        return self._plans.generation

    def plan(self, batch: int, shape: tuple[int, ...] | None = None) -> Plan:
        """This sequence's inference plan for ``batch`` rows (``shape``: the per-example input
        shape, e.g. a chunk of ``n`` tokens); cached, least recently used dropped."""
        m = self.model
        key = m.plan_key(batch, False, False, shape)
        return self._plans.get(key, lambda: m.compile_plan(key, self.run, self.states))

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """``Model.predict`` through this sequence's plans and states (no model lock)."""
        return self.model.predict_with(self.plan, x, batch_size)

    def buffers(self) -> dict[str, np.ndarray]:
        """Name -> live view of this sequence's state buffers (and the model's persistent ones)."""
        return self.states.arrays()

    def memory_report(self) -> dict[str, Any]:
        """Bytes of this sequence's own state buffers and of each of its plans."""
        return {"states": self.states.nbytes(),
                "plans": {f"batch={b},shape={s}": p.memory() for (b, _, _, s), p in self._plans.items()}}

    def __repr__(self) -> str:
        return f"Sequence(pos={self.run.pos}, plans={len(self._plans)}, model={self.model!r})"
