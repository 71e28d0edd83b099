"""Errors of an OpenAI-style request, each with the HTTP status and the OpenAI error body it
maps to (``{"error": {"message", "type", "param", "code"}}``): what ``api.LLM`` raises for a
bad argument and what ``qorus serve`` answers with."""

from __future__ import annotations

from typing import Any

from qorus_core.errors import ConfigError


class RequestError(ConfigError):
    """A request field that is missing, of the wrong type or out of range (400); ``param``
    names the field."""

    status = 400
    type = "invalid_request_error"

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param, self.code = param, code

    def body(self) -> dict[str, Any]:
        """The OpenAI error JSON."""
        return {"error": {"message": str(self), "type": self.type, "param": self.param,
                          "code": self.code}}


class ContextLengthError(RequestError):
    """The prompt does not fit the model's context (400, OpenAI's context_length_exceeded)."""

    def __init__(self, message: str, param: str = "messages") -> None:
        super().__init__(message, param, "context_length_exceeded")


class AuthError(RequestError):
    """No API key, or a wrong one, where the server has one (401)."""

    status = 401

    def __init__(self, message: str) -> None:
        super().__init__(message, None, "invalid_api_key")


class NotFoundError(RequestError):
    """An unknown path, or an endpoint the loaded model does not serve (404)."""

    status = 404


class TooLargeError(RequestError):
    """A request body over the server's limit (413)."""

    status = 413


class OverloadedError(RequestError):
    """The queue is full, or the server is shutting down (503, with Retry-After)."""

    status = 503
    type = "server_error"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message, None, "overloaded")
        self.retry_after = retry_after


def param_error(exc: ConfigError, param: str) -> RequestError:
    """A validator's ConfigError as a RequestError naming ``param``."""
    msg = str(exc)
    return RequestError(msg.split(": ", 1)[1] if msg.startswith("request: ") else msg, param)
