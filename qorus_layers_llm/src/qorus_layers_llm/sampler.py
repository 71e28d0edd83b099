"""Choosing the next token from logits: greedy, temperature, top-k, top-p, seeded.

Every buffer is made in ``__init__``; ``sample`` works in place (ufuncs with ``out=``, in-place
``partition`` and ``sort``), so a decode step allocates no array.

Numerics. The probabilities are ``exp((logits - max) * (1 / T))``: the subtraction comes first,
so every exponent is <= 0 and overflows at worst to -inf (probability 0, which is right). The
only float32 overflow left is ``1 / T`` itself: below ``GREEDY_BELOW`` (1 / float32 max,
about 2.9e-39) it would be inf, and ``0 * inf`` NaN. Such a temperature is a limit of T -> 0,
so it samples greedily (argmax), as T = 0 does. Non-finite logits (NaN, +-inf: a model that
overflowed) raise NumericsError naming the token, instead of a NaN distribution that always
gives token 0.
"""

from __future__ import annotations

import math

import numpy as np

from qorus_core.errors import NumericsError, ShapeError
from qorus_core.validate import maybe, nonneg_int, positive_int, probability, real

#: temperatures below this are greedy: 1 / T would overflow float32 (see the module docstring)
GREEDY_BELOW = 1.0 / float(np.finfo(np.float32).max)


class Sampler:
    """``temperature`` 0 is greedy (argmax); otherwise softmax(logits / temperature) restricted
    to the ``top_k`` most likely tokens and to the smallest set whose probability reaches
    ``top_p`` (Hugging Face's order: top-k, then top-p), drawn with a seeded generator.

    Hyperparameters are checked here, once (ConfigError naming the field): ``temperature`` a
    finite number >= 0, ``top_k`` a positive int, ``top_p`` in (0, 1], ``seed`` an int >= 0.
    A sampler is single-user: its buffers and random generator are its own state, so one
    thread at a time draws from it (``generate`` makes one per call)."""

    def __init__(self, vocab_size: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int = 0) -> None:
        self.vocab_size = V = positive_int(vocab_size, "vocab_size", "sampler")
        self.temperature = real(temperature, "temperature", "sampler", lo=0.0)
        top_k = maybe(positive_int, top_k, "top_k", "sampler")
        top_p = maybe(probability, top_p, "top_p", "sampler", lo_open=True)
        seed = nonneg_int(seed, "seed", "sampler")
        self.greedy = self.temperature < GREEDY_BELOW
        self._scale = np.float32(0.0 if self.greedy else 1.0 / self.temperature)
        self.top_k = None if top_k is None or top_k >= V else top_k
        self.top_p = None if top_p is None or top_p >= 1 else top_p
        self.seed = seed
        self.steps = 0                           # tokens sampled so far (named in errors)
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
        if self.greedy:                          # argmax gives the first NaN if there is one
            top = int(np.argmax(logits))
            hi = logits[top]
        else:
            hi = logits.max()                    # NaN propagates into it
        if not (math.isfinite(hi) and math.isfinite(logits.min())):   # +inf in hi, -inf in min
            self._non_finite(logits)
        self.steps += 1
        if self.greedy:
            return top
        p, s, c, m = self._p, self._s, self._c, self._m
        with np.errstate(over="ignore"):          # overflow here is to -inf: probability 0
            np.subtract(logits, hi, out=p)       # <= 0: exp cannot overflow
            np.multiply(p, self._scale, out=p)
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

    def _non_finite(self, logits: np.ndarray) -> None:
        bad = np.flatnonzero(~np.isfinite(logits))
        i = int(bad[0])
        raise NumericsError(f"sampler: non-finite logits for generated token {self.steps}: "
                            f"logits[{i}] (token id {i}) is {float(logits[i])} ({len(bad)} of "
                            f"{self.vocab_size} non-finite)")
