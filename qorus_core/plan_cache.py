"""PlanCache: compiled plans by key, least recently used first out, compiled under a lock.

Each distinct batch size (or sequence length) compiles a plan with its own activation arena;
without a bound, a caller cycling through batch sizes keeps every one of them. The cache
keeps ``capacity`` plans: a plan that falls out is only forgotten by the cache, so whoever
still holds it (a Generator holds its own plans) keeps using it unchanged, and its memory is
freed once nobody does.

Given the model's ``ParamStore``, the cache also forgets every plan at once when they go
stale (the store's ``generation`` moved: the weights were reallocated, or the kernels
changed), so the model and each sequence recompile by themselves; ``generation`` is the
one its plans were compiled at. A plan that went stale while it was being compiled (the
weights moved meanwhile, from another thread) is compiled again, never cached stale.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from .validate import positive_int

DEFAULT_CAPACITY = 16


class PlanCache:
    """Key -> Plan, at most ``capacity`` of them; lookups and compiles are thread-safe."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY, store: Any = None) -> None:
        """``store``: the ``ParamStore`` whose ``generation`` makes plans stale (None: never)."""
        self.capacity = positive_int(capacity, "capacity", "PlanCache")
        self._store = store
        self.generation = 0 if store is None else store.generation
        self._plans: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.RLock()

    def get(self, key: tuple, make: Callable[[], Any]) -> Any:
        """The plan for ``key``, compiled by ``make()`` on a miss (once, even when several
        threads ask at the same time); the least recently used one beyond capacity is dropped."""
        with self._lock:
            self._drop_stale()
            p = self._plans.get(key)
            if p is not None:
                self._plans.move_to_end(key)
                return p
            for _ in range(3):
                p = make()
                self._drop_stale()   # compiling a training plan may have moved the weights
                if self._store is None or p.generation == self.generation:
                    break            # else they moved while it was wired (another thread): again
            self._plans[key] = p
            while len(self._plans) > self.capacity:
                self._plans.popitem(last=False)
            return p

    def _drop_stale(self) -> None:
        if self._store is not None and self._store.generation != self.generation:
            self._plans.clear()
            self.generation = self._store.generation

    def clear(self) -> None:
        """Drop every cached plan."""
        with self._lock:
            self._plans.clear()

    def items(self) -> list[tuple[tuple, Any]]:
        """``(key, plan)`` of every plan still valid (stale ones are dropped first)."""
        with self._lock:
            self._drop_stale()
            return list(self._plans.items())

    def __contains__(self, key: object) -> bool:
        with self._lock:
            self._drop_stale()
            return key in self._plans

    def __iter__(self) -> Iterator[tuple]:
        return iter([k for k, _ in self.items()])

    def __len__(self) -> int:
        return len(self.items())
