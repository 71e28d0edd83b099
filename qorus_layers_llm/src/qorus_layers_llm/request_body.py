"""A chat or text completion request (OpenAI's JSON body, or ``api.LLM``'s keyword
arguments) checked and turned into what decoding needs: ``Request`` (prompt ids, sampling
params, streaming options). Fields Qorus cannot honour (``n`` > 1, ``best_of``, ``echo``,
``logprobs``, ``suffix``) are refused rather than ignored; unknown fields are ignored, as
OpenAI-compatible servers do (clients send ``user``, ``tools``, ...)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .completion import check_fits
from .prompts import chat_ids, completion_ids
from .request_error import RequestError
from .sampling_params import SamplingParams

CHAT_DEFAULTS = SamplingParams(max_tokens=None)     # a chat answers to the end of its turn
TEXT_DEFAULTS = SamplingParams()                    # a completion: 16 tokens (OpenAI's)


@dataclass(frozen=True)
class Request:
    """``kind`` "chat" or "text"; ``ids`` the prompt's tokens."""

    kind: str
    ids: list[int]
    params: SamplingParams
    stream: bool = False
    include_usage: bool = False


def _flag(body: Mapping[str, Any], name: str) -> bool:
    v = body.get(name, False)
    if v is None:
        return False
    if not isinstance(v, bool):
        raise RequestError(f"{name} must be true or false, got {v!r:.40}", name)
    return v


def _refuse_unsupported(body: Mapping[str, Any]) -> None:
    for name, ok in (("n", 1), ("best_of", 1)):
        v = body.get(name)
        if v is not None and v != ok:
            raise RequestError(f"{name} must be 1: one choice a request is supported", name)
    for name in ("echo", "logprobs"):
        if body.get(name) not in (None, False):
            raise RequestError(f"{name} is not supported", name)
    if body.get("suffix"):
        raise RequestError("suffix is not supported", "suffix")


def parse_request(kind: str, body: Any, tokenizer, vocab_size: int, context: int) -> Request:
    """The checked request of ``kind`` ("chat": ``messages``; "text": ``prompt``)."""
    if not isinstance(body, Mapping):
        raise RequestError("the request body must be a JSON object")
    _refuse_unsupported(body)
    if kind == "chat":
        if "messages" not in body:
            raise RequestError("messages is required", "messages")
        ids, param, defaults = chat_ids(tokenizer, body["messages"]), "messages", CHAT_DEFAULTS
    else:
        if "prompt" not in body:
            raise RequestError("prompt is required", "prompt")
        ids = completion_ids(tokenizer, body["prompt"], vocab_size)
        param, defaults = "prompt", TEXT_DEFAULTS
    check_fits(len(ids), context, param)
    params = SamplingParams.parse(body, vocab_size, defaults)
    stream = _flag(body, "stream")
    opts = body.get("stream_options")
    if opts is not None and not isinstance(opts, Mapping):
        raise RequestError("stream_options must be an object", "stream_options")
    usage = _flag(opts or {}, "include_usage")
    return Request(kind, ids, params, stream, usage)
