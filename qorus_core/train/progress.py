"""A plain-text progress bar on stderr: ``\\r`` updates, loss and samples/s, no dependency.

Shown only when the stream is a terminal (or ``force=True``), and redrawn at most every
``interval`` seconds, so it costs one clock read per step.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``start(epoch, epochs, total)``, ``update(done, loss)`` per step, ``end(summary)``."""

    def __init__(self, enabled: bool = True, stream: TextIO | None = None, force: bool = False,
                 interval: float = 0.1, width: int = 24) -> None:
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = bool(enabled) and (force or bool(isatty and isatty()))
        self.interval = interval
        self.width = width
        self._next = 0.0
        self._t0 = 0.0
        self._label = ""
        self._total = 1

    def start(self, epoch: int, epochs: int, total: int) -> None:
        self._t0 = time.perf_counter()
        self._next = 0.0
        self._label = f"epoch {epoch}/{epochs}"
        self._total = max(1, total)

    def update(self, done: int, loss: float) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if now < self._next and done < self._total:
            return
        self._next = now + self.interval
        rate = done / max(now - self._t0, 1e-9)
        filled = self.width * done // self._total
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r{self._label} [{bar}] {done}/{self._total} "
                          f"loss {loss:.4f} {rate:,.0f} samples/s")
        self.stream.flush()

    def end(self, summary: str) -> None:
        if not self.enabled:
            return
        self.stream.write(f"\r{self._label} {summary}\x1b[K\n")
        self.stream.flush()
