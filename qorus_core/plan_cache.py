"""PlanCache: compiled plans by key, least recently used first out, compiled under a lock.

Each distinct batch size (or sequence length) compiles a plan with its own activation arena;
without a bound, a caller cycling through batch sizes keeps every one of them. The cache
keeps ``capacity`` plans: a plan that falls out is only forgotten by the cache, so whoever
still holds it (a Generator holds its own plans) keeps using it unchanged, and its memory is
freed once nobody does.
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

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = positive_int(capacity, "capacity", "PlanCache")
        self._plans: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.RLock()

    def get(self, key: tuple, make: Callable[[], Any]) -> Any:
        """The plan for ``key``, compiled by ``make()`` on a miss (once, even when several
        threads ask at the same time); the least recently used one beyond capacity is dropped."""
        with self._lock:
            p = self._plans.get(key)
            if p is not None:
                self._plans.move_to_end(key)
                return p
            p = self._plans[key] = make()
            while len(self._plans) > self.capacity:
                self._plans.popitem(last=False)
            return p

    def clear(self) -> None:
        with self._lock:
            self._plans.clear()

    def items(self) -> list[tuple[tuple, Any]]:
        with self._lock:
            return list(self._plans.items())

    def __contains__(self, key: object) -> bool:
        return key in self._plans

    def __iter__(self) -> Iterator[tuple]:
        return iter([k for k, _ in self.items()])

    def __len__(self) -> int:
        return len(self._plans)
