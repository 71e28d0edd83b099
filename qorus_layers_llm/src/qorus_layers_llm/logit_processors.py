"""What a request does to the logits before the ``Sampler`` draws: logit bias, repetition
penalties and min-p, in llama.cpp's order (bias, penalties, then min-p on the untempered
logits). ``LogitsProcessor.apply`` works on its own buffer, made once: a decode step
allocates no array.

- ``logit_bias``: ``l[t] += bias`` (OpenAI's; -100 bans a token in effect).
- penalties over the last ``last_n`` tokens (prompt and completion, llama.cpp's
  ``penalty_last_n`` 64): each token seen ``c`` times there gets ``l / repeat_penalty`` (l > 0)
  or ``l * repeat_penalty`` (l <= 0), then ``- c * frequency_penalty - presence_penalty``.
- ``min_p``: tokens whose probability is below ``min_p`` times the most likely one's are left
  out (their logit set to ``LOW``, finite, so the sampler's non-finite check still catches a
  model that overflowed).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable

import numpy as np

from .sampling_params import SamplingParams

LAST_N = 64                                   # llama.cpp's penalty_last_n
LOW = np.float32(-3.0e38)                     # a left-out token's logit: exp() gives 0


class LogitsProcessor:
    """The bias, penalties and min-p of ``params`` over a vocabulary of ``vocab_size``;
    ``history``: the prompt's tokens (the penalty window starts with them). Single-user, as
    the Sampler is."""

    def __init__(self, vocab_size: int, params: SamplingParams, history: Iterable[int] = (),
                 last_n: int = LAST_N) -> None:
        self.bias = params.logit_bias
        self.repeat = float(params.repeat_penalty)
        self.frequency, self.presence = float(params.frequency_penalty), float(params.presence_penalty)
        self.penalize = self.repeat != 1.0 or self.frequency != 0.0 or self.presence != 0.0
        self.min_p = 0.0 if params.greedy else float(params.min_p)
        self._log_min_p = math.log(self.min_p) if self.min_p > 0 else 0.0
        self.active = bool(self.bias) or self.penalize or self.min_p > 0
        self._l = np.empty(vocab_size, np.float32) if self.active else None
        self._m = np.empty(vocab_size, np.bool_) if self.min_p > 0 else None
        self._window: deque[int] = deque(maxlen=last_n)
        self._counts: dict[int, int] = {}
        if self.penalize:
            for t in list(history)[-last_n:]:
                self.push(t)

    def push(self, token: int) -> None:
        """Record a sampled token (the penalty window moves on)."""
        if not self.penalize:
            return
        w, counts = self._window, self._counts
        if len(w) == w.maxlen:
            old = w[0]
            counts[old] -= 1
            if not counts[old]:
                del counts[old]
        w.append(token)
        counts[token] = counts.get(token, 0) + 1

    def apply(self, logits: np.ndarray) -> np.ndarray:
        """The processed logits: ``logits`` itself when nothing applies, else this
        processor's buffer (valid until the next call)."""
        if not self.active:
            return logits
        x = self._l
        np.copyto(x, logits)
        for t, b in self.bias:
            x[t] += b
        if self.penalize:
            rp, fq, pr = self.repeat, self.frequency, self.presence
            for t, c in self._counts.items():
                v = float(x[t])
                v = v / rp if v > 0 else v * rp
                x[t] = v - c * fq - pr
        if self._m is not None:
            hi = float(x.max())
            if math.isfinite(hi):                # else the sampler names the bad logit
                np.less(x, hi + self._log_min_p, out=self._m)
                np.copyto(x, LOW, where=self._m)
        return x
