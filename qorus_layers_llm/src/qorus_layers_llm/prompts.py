"""Request prompts to token ids: chat ``messages`` through the model's chat template, a
completion ``prompt`` (a string, one string in a list, or token ids) through its tokenizer.
Malformed input is a ``RequestError`` naming the field."""

from __future__ import annotations

from typing import Any

from qorus_core.errors import ConfigError

from .chat import chat_text, encode_chat_text
from .request_error import RequestError
from .tokenizer import check_text

ROLES = ("system", "developer", "user", "assistant", "tool")


def _content(m: dict, i: int) -> str:
    """A message's text: a string, None (an assistant turn with tool calls), or OpenAI's
    content parts, the text ones joined."""
    c = m.get("content")
    if c is None:
        return ""
    if isinstance(c, str):
        return c
    if isinstance(c, list):
        parts = []
        for j, p in enumerate(c):
            if not (isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)):
                raise RequestError(f"messages[{i}].content[{j}]: only text parts are supported, "
                                   f"got {p!r:.80}", "messages")
            parts.append(p["text"])
        return "".join(parts)
    raise RequestError(f"messages[{i}].content must be a string or a list of text parts, got "
                       f"{type(c).__name__}", "messages")


def chat_messages(messages: Any) -> list[dict[str, str]]:
    """``messages`` checked and reduced to [{"role", "content"}] of strings."""
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages must be a non-empty list of {role, content} objects",
                           "messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise RequestError(f"messages[{i}] must be an object, got {type(m).__name__}",
                               "messages")
        role = m.get("role")
        if role not in ROLES:
            raise RequestError(f"messages[{i}].role must be one of {', '.join(ROLES)}, got "
                               f"{role!r:.40}", "messages")
        text = _content(m, i)
        try:
            check_text(text, f"messages[{i}].content")
        except ConfigError as exc:
            raise RequestError(str(exc), "messages") from None
        out.append({"role": "system" if role == "developer" else role, "content": text})
    return out


def chat_ids(tokenizer, messages: Any) -> list[int]:
    """Token ids of the conversation with the assistant's turn opened (the chat template's
    generation prompt); a template that refuses the conversation is a RequestError."""
    msgs = chat_messages(messages)
    try:
        return encode_chat_text(tokenizer, chat_text(tokenizer, msgs))
    except RequestError:
        raise
    except ConfigError as exc:
        raise RequestError(str(exc), "messages") from None


def completion_ids(tokenizer, prompt: Any, vocab_size: int) -> list[int]:
    """Token ids of a completion prompt: a string (BOS as the tokenizer adds it), a list of
    one string, or token ids (a list of ints, or a list of one such list)."""
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]
    if isinstance(prompt, str):
        try:
            return tokenizer.encode(check_text(prompt, "prompt"))
        except ConfigError as exc:
            raise RequestError(str(exc), "prompt") from None
    if isinstance(prompt, list) and prompt and all(type(t) is int for t in prompt):
        bad = [t for t in prompt if not 0 <= t < vocab_size]
        if bad:
            raise RequestError(f"prompt token id {bad[0]} outside [0, {vocab_size})", "prompt")
        return list(prompt)
    raise RequestError("prompt must be a string or a list of token ids (one prompt: n > 1 "
                       "prompts are not supported)", "prompt")
