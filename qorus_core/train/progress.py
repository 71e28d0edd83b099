"""Progress on stderr, no dependency: on a terminal (or ``force=True``) a bar redrawn with
``\\r`` at most every ``interval`` seconds (one clock read per step) and the epoch's summary
over it; elsewhere (a pipe, CI, a notebook) one plain line per epoch, as Keras' ``verbose=2``.
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
        self.enabled = bool(enabled)
        self.live = self.enabled and (force or bool(isatty and isatty()))   # the redrawn bar
        self.interval = interval
        self.width = width
        self._next = 0.0
        self._t0 = 0.0
        self._label = ""
        self._total = 1

    def start(self, epoch: int, epochs: int, total: int) -> None:
        """Begin epoch ``epoch`` of ``epochs``, of ``total`` samples: start its clock and label."""
        self._t0 = time.perf_counter()
        self._next = 0.0
        self._label = f"epoch {epoch}/{epochs}"
        self._total = max(1, total)

    def update(self, done: int, loss: float) -> None:
        """Redraw the bar at ``done`` samples with the running ``loss`` (live only; at most every ``interval``
        seconds, the last sample always)."""
        if not self.live:
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
        """Write the epoch's ``summary`` line (over the bar when live); nothing when disabled."""
        if not self.enabled:
            return
        if self.live:
            self.stream.write(f"\r{self._label} {summary}\x1b[K\n")
        else:
            self.stream.write(f"{self._label} {summary}\n")
        self.stream.flush()
