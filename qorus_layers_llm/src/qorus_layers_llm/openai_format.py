"""OpenAI's response shapes, exactly: chat completions and their stream chunks, text
completions and theirs, embeddings, the model list. Plain dicts (JSON-ready)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any


def new_id(prefix: str) -> str:
    """``chatcmpl-...`` / ``cmpl-...``: a prefix and 24 random hex digits."""
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    """The current time in whole seconds, OpenAI's ``created``."""
    return int(time.time())


class Shape:
    """The response of one request: its id, creation time and model, and the object names of
    its kind ("chat" or "text")."""

    def __init__(self, kind: str, model: str) -> None:
        self.chat = kind == "chat"
        self.id = new_id("chatcmpl" if self.chat else "cmpl")
        self.created = now()
        self.model = model

    def _head(self, obj: str) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    def response(self, text: str, finish_reason: str, usage: dict[str, int]) -> dict[str, Any]:
        """The whole (non-streamed) response."""
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text},
                      "logprobs": None, "finish_reason": finish_reason}
            out = self._head("chat.completion")
        else:
            choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}
            out = self._head("text_completion")
        out.update(choices=[choice], usage=usage)
        return out

    def chunk(self, text: str | None, finish_reason: str | None = None,
              role: bool = False) -> dict[str, Any]:
        """A stream chunk: new text (``role``: the chat's opening delta, role and ""), or the
        last one with ``finish_reason`` (an empty delta)."""
        if self.chat:
            delta: dict[str, Any] = {}
            if role:
                delta["role"] = "assistant"
            if text is not None:
                delta["content"] = text
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            out = self._head("chat.completion.chunk")
        else:
            choice = {"text": text or "", "index": 0, "logprobs": None,
                      "finish_reason": finish_reason}
            out = self._head("text_completion")
        out["choices"] = [choice]
        return out

    def usage_chunk(self, usage: dict[str, int]) -> dict[str, Any]:
        """The stream's last chunk with ``stream_options.include_usage``: no choices."""
        out = self._head("chat.completion.chunk" if self.chat else "text_completion")
        out.update(choices=[], usage=usage)
        return out


def embeddings(vectors, model: str, prompt_tokens: int) -> dict[str, Any]:
    """OpenAI's ``/v1/embeddings`` response for ``vectors``."""
    return {"object": "list",
            "data": [{"object": "embedding", "embedding": [float(v) for v in row], "index": i}
                     for i, row in enumerate(vectors)],
            "model": model, "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}


def model_list(model: str, created: int) -> dict[str, Any]:
    """OpenAI's ``/v1/models`` response: the one model served."""
    return {"object": "list",
            "data": [{"id": model, "object": "model", "created": created, "owned_by": "qorus"}]}


def stream(shape: Shape, events: Iterable[tuple[str, Any]], include_usage: bool = False
           ) -> Iterator[dict[str, Any]]:
    """The chunks of a streamed response from ``events`` ((new text, the request's
    ``Completion``) per token): (chat) the role, each non-empty piece of text as it comes,
    the finish reason, then (``include_usage``) the usage."""
    if shape.chat:
        yield shape.chunk("", role=True)
    done = None
    for text, done in events:  # noqa: B007 - done: the last event's completion
        if text:
            yield shape.chunk(text)
    yield shape.chunk(None, done.finish_reason)
    if include_usage:
        yield shape.usage_chunk(done.usage())
