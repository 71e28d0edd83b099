"""The HTTP side of ``qorus serve``: a Starlette app with OpenAI's endpoints.

``POST /v1/chat/completions``, ``POST /v1/completions`` (``stream``: server-sent events,
``data: {chunk}`` lines then ``data: [DONE]``), ``POST /v1/embeddings`` (an encoder model),
``GET /v1/models``, ``GET /health`` (open without the key: slots and counters). Errors are
OpenAI's JSON (``{"error": {message, type, param, code}}``): 400 a bad request, 401 a missing
or wrong key (``Authorization: Bearer KEY``, where the server has one), 404 an unknown path,
405 a wrong method, 413 a body over ``max_body`` bytes, 503 with ``Retry-After`` when the
queue is full or the server is draining, 500 anything else.

Generation runs on the scheduler's worker thread; each request gets its pieces of text
through an ``asyncio.Queue``, every request's events of a decode step handed to the event
loop in one wake-up (``LoopChannel``). A client that disconnects (streaming or not) cancels its job,
which frees its slot before the next decode step.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from qorus_core.errors import QorusError

from .openai_format import Shape, embeddings, model_list, now
from .request_error import (
    AuthError,
    NotFoundError,
    OverloadedError,
    RequestError,
    TooLargeError,
)
from .serve_scheduler import Job

MAX_BODY = 1 << 20            # bytes of a request body (1 MiB: a long prompt is ~100 KB)


def _json(item: Any) -> bytes:
    return json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()


def error_response(exc: RequestError) -> JSONResponse:
    """The OpenAI-shaped error body of ``exc`` with its status (and Retry-After or
    WWW-Authenticate where it calls for one)."""
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, OverloadedError) else None
    if isinstance(exc, AuthError):
        headers = {"WWW-Authenticate": "Bearer"}
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


class LoopChannel:
    """The scheduler's events for the requests of one event loop: each phase's, every
    request's, in one ``call_soon_threadsafe`` (one wake-up of the loop a decode step, not
    one a token), each put on its request's queue there."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def post(self, items: list) -> None:
        """On the worker thread: hand ``items`` ((sink, kind, value), in order) to the loop."""
        try:
            self.loop.call_soon_threadsafe(_deliver, items)
        except RuntimeError:                                # the loop has closed: nobody reads
            pass


def _deliver(items: list) -> None:
    for sink, kind, value in items:
        sink(kind, value)


class _Job:
    """A request's link to the scheduler: the job and the queue its events arrive on."""

    def __init__(self, state, req, seed: int) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()
        self.scheduler = state.scheduler

        def sink(kind: str, value: Any) -> None:            # on the event loop's thread
            self.queue.put_nowait((kind, value))

        self.job = Job(req, seed, sink, state.channel(asyncio.get_running_loop()))
        self.finished = False

    async def events(self) -> AsyncIterator[tuple[str, Any]]:
        while not self.finished:
            kind, value = await self.queue.get()
            self.finished = kind != "text"
            yield kind, value

    def cancel(self) -> None:
        if not self.finished:
            self.scheduler.cancel(self.job)


async def _disconnected(request: Request) -> None:
    """Returns when the client has gone away (the body was read before)."""
    while True:
        if (await request.receive())["type"] == "http.disconnect":
            return


class EventStream(Response):
    """Server-sent events from ``events`` (JSON-able dicts), then ``data: [DONE]``; a
    client that goes away stops it at once, and ``on_close`` runs either way."""

    media_type = "text/event-stream"

    def __init__(self, events: AsyncIterator[dict[str, Any]], on_close) -> None:
        self.status_code, self.background = 200, None
        self.raw_headers = [(b"content-type", b"text/event-stream; charset=utf-8"),
                            (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
        self.events, self.on_close = events, on_close

    async def __call__(self, scope, receive, send) -> None:
        """The ASGI response: each event as ``data:``, then ``[DONE]``; it stops early when the
        client disconnects, and calls ``on_close`` at the end either way."""
        async def body() -> None:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async for item in self.events:
                data = b"data: " + _json(item) + b"\n\n"
                await send({"type": "http.response.body", "body": data, "more_body": True})
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n",
                        "more_body": False})

        async def gone() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        tasks = [asyncio.ensure_future(body()), asyncio.ensure_future(gone())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is tasks[0] and t.exception() is not None:
                    raise t.exception()
        except OSError:
            pass                                   # the client went away mid-send
        finally:
            for t in tasks:
                t.cancel()
            self.on_close()


class ServeApp:
    """The endpoints over an ``api.LLM`` and (for a decoder) its ``Scheduler``."""

    def __init__(self, llm, scheduler=None, api_key: str | None = None,
                 max_body: int = MAX_BODY) -> None:
        self.llm, self.scheduler = llm, scheduler
        self.api_key, self.max_body = api_key, max_body
        self.draining = False
        self.created = now()
        self._channels: dict[int, LoopChannel] = {}

    def channel(self, loop: asyncio.AbstractEventLoop) -> LoopChannel:
        """The scheduler's channel to ``loop`` (made on first use)."""
        ch = self._channels.get(id(loop))
        if ch is None or ch.loop is not loop:
            ch = self._channels[id(loop)] = LoopChannel(loop)
        return ch

    # ----------------------------------------------------------------- plumbing
    def _check_key(self, request: Request) -> None:
        if self.api_key is None:
            return
        auth = request.headers.get("authorization", "")
        scheme, _, key = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(key.strip().encode(),
                                                                 self.api_key.encode()):
            raise AuthError("a valid API key is required: send Authorization: Bearer <key>"
                            if auth else "no API key: send Authorization: Bearer <key>")

    async def _body(self, request: Request) -> Any:
        n = request.headers.get("content-length")
        if n is not None and n.isdigit() and int(n) > self.max_body:
            raise TooLargeError(f"the request body is {int(n):,} bytes, over the limit of "
                                f"{self.max_body:,}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise TooLargeError(f"the request body is over the limit of {self.max_body:,} bytes")
            chunks.append(chunk)
        try:
            return json.loads(b"".join(chunks))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RequestError(f"the request body is not valid JSON: {exc}") from None

    def _guard(self, handler):
        async def endpoint(request: Request) -> Response:
            try:
                if self.draining:
                    raise OverloadedError("the server is shutting down", retry_after=5)
                self._check_key(request)
                return await handler(request)
            except RequestError as exc:
                return error_response(exc)
            except QorusError as exc:           # a model-side refusal of the input
                return error_response(RequestError(str(exc)))
        return endpoint

    # ----------------------------------------------------------------- endpoints
    async def health(self, request: Request) -> Response:
        """``GET /health``: ok (200) or draining (503), the model and the slots' status."""
        body: dict[str, Any] = {"status": "draining" if self.draining else "ok",
                                "model": self.llm.model_name}
        if self.scheduler is not None:
            body.update(self.scheduler.status())
        return JSONResponse(body, status_code=503 if self.draining else 200)

    async def models(self, request: Request) -> Response:
        """``GET /v1/models``: the one model served."""
        return JSONResponse(model_list(self.llm.model_name, self.created))

    async def chat(self, request: Request) -> Response:
        """``POST /v1/chat/completions`` (streamed with ``stream: true``)."""
        return await self._complete(request, "chat")

    async def completions(self, request: Request) -> Response:
        """``POST /v1/completions`` (streamed with ``stream: true``)."""
        return await self._complete(request, "text")

    async def _complete(self, request: Request, kind: str) -> Response:
        body = await self._body(request)
        req = self.llm.parse(kind, body)
        if self.scheduler is None:
            raise RequestError(f"{self.llm.model_name} serves embeddings only", "model",
                               "model_not_supported")
        link = _Job(self, req, self.llm.request_seed(req.params.seed))
        self.scheduler.submit(link.job)
        shape = Shape(kind, self.llm.model_name)
        if req.stream:
            return EventStream(self._chunks(link, shape, req.include_usage), link.cancel)
        return await self._whole(request, link, shape)

    async def _whole(self, request: Request, link: _Job, shape: Shape) -> Response:
        gone = asyncio.ensure_future(_disconnected(request))
        text: list[str] = []
        try:
            events = link.events()
            while True:
                nxt = asyncio.ensure_future(events.__anext__())
                done, _ = await asyncio.wait({nxt, gone}, return_when=asyncio.FIRST_COMPLETED)
                if nxt not in done:
                    nxt.cancel()
                    link.cancel()
                    return Response(status_code=499)     # nobody reads it
                kind, value = nxt.result()
                if kind == "text":
                    text.append(value)
                elif kind == "done":
                    return JSONResponse(shape.response("".join(text), value.finish_reason,
                                                       value.usage()))
                elif kind == "error":
                    return self._failed(value)
                else:
                    raise OverloadedError("the request was cancelled: the server is shutting down")
        finally:
            gone.cancel()

    async def _chunks(self, link: _Job, shape: Shape, include_usage: bool
                      ) -> AsyncIterator[dict[str, Any]]:
        if shape.chat:
            yield shape.chunk("", role=True)
        async for kind, value in link.events():
            if kind == "text":
                yield shape.chunk(value)
            elif kind == "done":
                yield shape.chunk(None, value.finish_reason)
                if include_usage:
                    yield shape.usage_chunk(value.usage())
            elif kind == "error":
                err = value if isinstance(value, RequestError) else RequestError(str(value))
                yield {**err.body()}

    def _failed(self, exc: BaseException) -> Response:
        if isinstance(exc, RequestError):
            return error_response(exc)
        return JSONResponse({"error": {"message": f"{type(exc).__name__}: {exc}",
                                       "type": "server_error", "param": None, "code": None}},
                            status_code=500)

    async def embeddings(self, request: Request) -> Response:
        """``POST /v1/embeddings``: one vector per input text, encoded off the event loop."""
        body = await self._body(request)
        if not isinstance(body, dict) or "input" not in body:
            raise RequestError("input is required", "input")
        loop = asyncio.get_running_loop()
        vectors, n = await loop.run_in_executor(None, self.llm.encode_texts, body["input"])
        return JSONResponse(embeddings(vectors, self.llm.model_name, n))

    # ----------------------------------------------------------------- the app
    def app(self, lifespan=None) -> Starlette:
        """The Starlette app: the routes, each /v1/ one behind the guard (the API key, and
        503 while draining), and OpenAI-shaped errors for unknown paths."""
        g = self._guard
        routes = [Route("/health", self.health, methods=["GET"]),
                  Route("/v1/models", g(self.models), methods=["GET"]),
                  Route("/v1/chat/completions", g(self.chat), methods=["POST"]),
                  Route("/v1/completions", g(self.completions), methods=["POST"]),
                  Route("/v1/embeddings", g(self.embeddings), methods=["POST"])]

        async def http_error(request: Request, exc: HTTPException) -> Response:
            if exc.status_code == 404:
                return error_response(NotFoundError(f"no endpoint {request.method} "
                                                    f"{request.url.path}"))
            err = RequestError(f"{exc.detail}: {request.method} {request.url.path}")
            err.status = exc.status_code
            return error_response(err)

        async def server_error(request: Request, exc: Exception) -> Response:
            return self._failed(exc)

        return Starlette(routes=routes, lifespan=lifespan,
                         exception_handlers={HTTPException: http_error, Exception: server_error})
