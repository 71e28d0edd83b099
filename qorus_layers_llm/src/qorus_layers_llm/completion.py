"""One request's decoding bookkeeping, whoever runs the model (``api.LLM`` on its own
generator, ``qorus serve``'s scheduler on a slot): each ``advance(logits)`` samples a token
through the request's ``LogitsProcessor`` and ``Sampler``, decides whether generation ends
(an end-of-turn token, a stop string, ``max_tokens``, a full context) and returns the new
text, UTF-8 characters cut across tokens and text that may start a stop string held back.
``advance`` is ``sample`` (the draw) then ``emit`` (the text and the end), which a batched
server calls for all rows in that order.

``finish_reason`` is OpenAI's: "stop" (an end token or a stop string) or "length". The end
token is not part of the completion (nor counted); ``next_token`` is what to feed next.
"""

from __future__ import annotations

import codecs

import numpy as np

from qorus_core.errors import ConfigError

from .logit_processors import LogitsProcessor
from .request_error import ContextLengthError, RequestError
from .sampler import Sampler
from .sampling_params import SamplingParams
from .stop_strings import StopMatcher


class Completion:
    """Sampling state of one request over ``prompt_ids`` (already checked to fit)."""

    def __init__(self, tokenizer, params: SamplingParams, prompt_ids: list[int],
                 vocab_size: int, context: int, seed: int) -> None:
        self.tok = tokenizer
        self.params = params
        self.prompt_tokens = len(prompt_ids)
        self.sampler = Sampler(vocab_size, params.temperature, params.top_k or None,
                               params.top_p, seed)
        self.proc = LogitsProcessor(vocab_size, params, prompt_ids)
        self.stops = StopMatcher(params.stop)
        self._dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
        room = context - len(prompt_ids) + 1            # the last sampled token is not fed
        self.limit = room if params.max_tokens is None else min(room, params.max_tokens)
        self.tokens: list[int] = []
        self.text: list[str] = []
        self.next_token: int | None = None
        self._drawn: int | None = None               # sampled, its text not yet emitted
        self.finish_reason: str | None = None

    @property
    def done(self) -> bool:
        """Whether the completion has finished (``finish_reason`` set)."""
        return self.finish_reason is not None

    @property
    def completion_tokens(self) -> int:
        """The number of tokens generated so far."""
        return len(self.tokens)

    def advance(self, logits: np.ndarray) -> str:
        """Sample the next token from ``logits`` [V]; the text it adds (maybe ""):
        ``sample`` then ``emit``."""
        self.sample(logits)
        return self.emit()

    def sample(self, logits: np.ndarray) -> int:
        """Draw the next token from ``logits`` [V] (``next_token``, what a batched step feeds
        next, before any text work); ``emit`` then ends the request or gives its text. A
        server samples every row of a step first, so the rows' serial text work does not
        come between their draws."""
        token = self.sampler.sample(self.proc.apply(logits))
        self.next_token = self._drawn = token
        return token

    def emit(self) -> str:
        """The text the token drawn by ``sample`` adds (maybe ""), with the end it makes:
        an end token, a stop string or ``max_tokens``/the context (``next_token`` None)."""
        token, self._drawn = self._drawn, None
        if token is None:
            raise ConfigError("Completion.emit: no token drawn (call sample first, once per emit)")
        if token in self.tok.stop_ids:
            return self._finish("stop", "")
        self.tokens.append(token)
        self.proc.push(token)
        piece = "" if token in self.tok.special_ids else self._dec.decode(self.tok.token_bytes(token))
        out = self.stops.push(piece)
        if self.stops.stopped:
            return self._finish("stop", out)
        if len(self.tokens) >= self.limit:
            return self._finish("length", out)
        self.text.append(out)
        return out

    def _finish(self, reason: str, out: str) -> str:
        if not self.stops.stopped:
            out += self.stops.push(self._dec.decode(b"", final=True))
            out += self.stops.flush()
            if self.stops.stopped:
                reason = "stop"
        self.finish_reason = reason
        self.next_token = None
        self.text.append(out)
        return out

    def cancel(self) -> None:
        """End without a reason of OpenAI's (a client that went away)."""
        self.finish_reason = "cancelled"
        self.next_token = None

    def usage(self) -> dict[str, int]:
        """OpenAI's ``usage`` dict: prompt, completion and total tokens."""
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}


def check_fits(n_prompt: int, context: int, param: str) -> None:
    """ContextLengthError unless a prompt of ``n_prompt`` tokens leaves room to generate."""
    if n_prompt == 0:
        raise RequestError("the prompt is empty (no tokens)", param)
    if n_prompt >= context:
        raise ContextLengthError(f"the prompt is {n_prompt} tokens; the model's context is "
                                 f"{context} positions, so at most {context - 1} fit", param)
