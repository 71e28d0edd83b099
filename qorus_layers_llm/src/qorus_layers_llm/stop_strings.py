"""Stop strings over streamed text: a stop string may span several tokens, so text that could
be the start of one is held back until it is known not to be (OpenAI's semantics: the output
ends before the stop string, which is not returned)."""

from __future__ import annotations

from collections.abc import Sequence


class StopMatcher:
    """``push(text)`` -> the text safe to emit now; ``stopped`` once a stop string appeared
    (the text before it has been emitted, nothing after). ``flush()`` -> what was held back,
    at the end of generation."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self._held = ""
        self.stopped = False

    def push(self, text: str) -> str:
        """Add generated ``text``; returns what can be shown now: text up to a stop string (then nothing
        more), holding back a tail that may begin one."""
        if self.stopped:
            return ""
        if not self.stops:
            return text
        held = self._held + text
        cut = min((i for i in (held.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped, self._held = True, ""
            return held[:cut]
        keep = self._partial(held)
        self._held = held[len(held) - keep:] if keep else ""
        return held[:len(held) - keep]

    def _partial(self, text: str) -> int:
        """The length of the longest suffix of ``text`` that starts a stop string."""
        best = 0
        for s in self.stops:
            for n in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:n]):
                    best = n
                    break
        return best

    def flush(self) -> str:
        """The held-back tail at the end of generation (nothing once stopped)."""
        out, self._held = ("" if self.stopped else self._held), ""
        return out
