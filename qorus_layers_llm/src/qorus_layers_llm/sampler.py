"""Choosing the next token from logits: greedy, temperature, top-k, top-p, seeded.

Every buffer is made in ``__init__``; ``sample`` works in place (ufuncs with ``out=``, in-place
``partition`` and ``sort``), so a decode step allocates no array.
"""

from __future__ import annotations

import numpy as np

from qorus_core.errors import ConfigError, ShapeError


class Sampler:
    """``temperature`` 0 is greedy (argmax); otherwise softmax(logits / temperature) restricted
    to the ``top_k`` most likely tokens and to the smallest set whose probability reaches
    ``top_p`` (Hugging Face's order: top-k, then top-p), drawn with a seeded generator."""

    def __init__(self, vocab_size: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int = 0) -> None:
        if not temperature >= 0:
            raise ConfigError(f"temperature must be >= 0, got {temperature}")
        if top_k is not None and int(top_k) <= 0:
            raise ConfigError(f"top_k must be positive, got {top_k}")
        if top_p is not None and not 0 < float(top_p) <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {top_p}")
        self.vocab_size = V = int(vocab_size)
        self.temperature = float(temperature)
        self.top_k = None if top_k is None or int(top_k) >= V else int(top_k)
        self.top_p = None if top_p is None or float(top_p) >= 1 else float(top_p)
        self.rng = np.random.default_rng(seed)
        self._p = np.empty(V, np.float32)        # probabilities
        self._s = np.empty(V, np.float32)        # sorted copy (thresholds)
        self._c = np.empty(V, np.float32)        # cumulative sums (float32: a float64 out
                                                 # would make cumsum allocate a cast buffer)
        self._m = np.empty(V, np.bool_)          # masked-out tokens

    def sample(self, logits: np.ndarray) -> int:
        """The next token id for ``logits`` [V] (not modified)."""
        if logits.shape != (self.vocab_size,):
            raise ShapeError(f"sampler: logits {logits.shape}, expected ({self.vocab_size},)")
        if self.temperature == 0:
            return int(np.argmax(logits))
        p, s, c, m = self._p, self._s, self._c, self._m
        np.multiply(logits, np.float32(1.0 / self.temperature), out=p)
        np.subtract(p, p.max(), out=p)
        np.exp(p, out=p)
        if self.top_k is not None:               # keep values >= the k-th largest
            s[...] = p
            s.partition(self.vocab_size - self.top_k)
            np.less(p, s[self.vocab_size - self.top_k], out=m)
            np.copyto(p, 0, where=m)
        if self.top_p is not None:               # keep the most likely tokens reaching top_p
            s[...] = p
            s.sort()
            np.cumsum(s[::-1], out=c)
            k = int(np.searchsorted(c, self.top_p * c[-1]))   # smallest prefix reaching top_p
            np.less(p, s[self.vocab_size - 1 - min(k, self.vocab_size - 1)], out=m)
            np.copyto(p, 0, where=m)
        np.cumsum(p, out=c)
        u = self.rng.random() * c[-1]
        return int(min(np.searchsorted(c, u, side="right"), self.vocab_size - 1))
