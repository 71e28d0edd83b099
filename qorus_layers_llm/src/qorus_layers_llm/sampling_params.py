"""The sampling fields of a completion request, checked once: ``SamplingParams.parse``.

Defaults are llama-cpp-python's (``create_completion``: temperature 0.8, top_p 0.95, top_k
40, min_p 0.05, no penalties, 16 tokens for a completion, the rest of the context for a
chat). Fields follow OpenAI's names and ranges: temperature in [0, 2], top_p in (0, 1],
presence/frequency penalties in [-2, 2], ``logit_bias`` {token id (int or digit string):
bias in [-100, 100]}, ``stop`` a string or up to 4 strings, ``seed`` an int. A bad field is a
``RequestError`` naming it (HTTP 400).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from qorus_core.errors import ConfigError
from qorus_core.validate import integer, real

from .request_error import RequestError, param_error

MAX_STOPS = 4          # OpenAI's limit on stop strings
MAX_BIAS = 300         # OpenAI's limit on logit_bias entries
OWNER = "request"


@dataclass(frozen=True)
class SamplingParams:
    """How one request samples; ``max_tokens`` None: until the context is full."""

    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40                      # 0: all tokens
    min_p: float = 0.05                  # 0: off
    max_tokens: int | None = 16
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repeat_penalty: float = 1.0          # llama.cpp's: 1 is off
    logit_bias: tuple[tuple[int, float], ...] = field(default=())

    @classmethod
    def parse(cls, fields: Mapping[str, Any], vocab_size: int,
              defaults: SamplingParams | None = None) -> SamplingParams:
        """The params ``fields`` gives (None or absent: the default), each checked."""
        base = defaults or cls()
        got: dict[str, Any] = {}

        def take(name: str, check) -> None:
            v = fields.get(name)
            if v is None:
                return
            try:
                got[name] = check(v, name)
            except ConfigError as exc:
                raise param_error(exc, name) from None

        take("temperature", lambda v, n: real(v, n, OWNER, lo=0.0, hi=2.0))
        take("top_p", lambda v, n: real(v, n, OWNER, lo=0.0, hi=1.0, lo_open=True))
        take("top_k", lambda v, n: integer(v, n, OWNER, lo=0))
        take("min_p", lambda v, n: real(v, n, OWNER, lo=0.0, hi=1.0))
        take("max_tokens", lambda v, n: integer(v, n, OWNER, lo=1))
        if fields.get("max_tokens") is None and fields.get("max_completion_tokens") is not None:
            take("max_completion_tokens", lambda v, n: integer(v, n, OWNER, lo=1))
            got["max_tokens"] = got.pop("max_completion_tokens")
        take("seed", lambda v, n: integer(v, n, OWNER, lo=-(2**63), hi=2**64 - 1) % 2**64)
        take("presence_penalty", lambda v, n: real(v, n, OWNER, lo=-2.0, hi=2.0))
        take("frequency_penalty", lambda v, n: real(v, n, OWNER, lo=-2.0, hi=2.0))
        take("repeat_penalty", lambda v, n: real(v, n, OWNER, lo=0.0, hi=10.0, lo_open=True))
        if "stop" in fields and fields["stop"] is not None:
            got["stop"] = _stops(fields["stop"])
        if "logit_bias" in fields and fields["logit_bias"] is not None:
            got["logit_bias"] = _bias(fields["logit_bias"], vocab_size)
        return replace(base, **got)

    @property
    def greedy(self) -> bool:
        """Whether sampling is argmax (temperature 0)."""
        return self.temperature == 0.0


def _stops(v: Any) -> tuple[str, ...]:
    stops = [v] if isinstance(v, str) else v
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise RequestError(f"stop must be a string or a list of strings, got {v!r:.80}", "stop")
    if len(stops) > MAX_STOPS:
        raise RequestError(f"stop holds {len(stops)} strings, at most {MAX_STOPS}", "stop")
    if any(not s for s in stops):
        raise RequestError("stop strings must not be empty", "stop")
    return tuple(stops)


def _bias(v: Any, vocab_size: int) -> tuple[tuple[int, float], ...]:
    if not isinstance(v, Mapping):
        raise RequestError(f"logit_bias must map token ids to biases, got {v!r:.80}", "logit_bias")
    if len(v) > MAX_BIAS:
        raise RequestError(f"logit_bias holds {len(v)} entries, at most {MAX_BIAS}", "logit_bias")
    out = []
    for key, bias in v.items():
        tok = int(key) if isinstance(key, str) and key.isdigit() else key
        try:
            tok = integer(tok, f"logit_bias[{key!r}]", OWNER, lo=0, hi=vocab_size - 1,
                          want=f"a token id in [0, {vocab_size})")
            b = real(bias, f"logit_bias[{key!r}]", OWNER, lo=-100.0, hi=100.0)
        except ConfigError as exc:
            raise param_error(exc, "logit_bias") from None
        out.append((tok, b))
    return tuple(out)
