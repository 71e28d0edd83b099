"""``qorus serve MODEL``: an OpenAI-compatible HTTP server (the ``[serve]`` extra of this
plugin: ``pip install 'qorus-layers-llm[serve]'``).

Built on Starlette and uvicorn, the ASGI stack llama-cpp-python's server uses (through
FastAPI, which is Starlette underneath): both are small, widely deployed and maintained, and
give streaming responses, disconnect events and graceful shutdown without any of our own
HTTP code. ``serve_app`` holds the endpoints, ``serve_scheduler`` the slots.

The server binds 127.0.0.1 unless told otherwise and prints ``qorus serve: listening on
http://HOST:PORT`` to stderr once it accepts connections (``--port 0``: an ephemeral port).
SIGTERM (or Ctrl-C) stops accepting, answers 503 to requests on open connections, lets the
running ones finish for up to ``--drain`` seconds, then exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import sys

from qorus_core.errors import ConfigError


def _need_stack():
    try:
        import starlette  # noqa: F401
        import uvicorn
    except ImportError:
        raise ConfigError("qorus serve needs Starlette and uvicorn: pip install "
                          "'qorus-layers-llm[serve]'") from None
    return uvicorn


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"qorus serve: cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def make_server(llm, parallel: int = 1, api_key: str | None = None, max_queue: int = 64,
                drain: float = 30.0, batched: bool = True, max_body: int | None = None,
                on_started=None):
    """(uvicorn.Server, ServeApp) serving ``llm`` (an ``api.LLM``); ``server.run(sockets=
    [bind(...)])`` runs it until SIGTERM or ``server.should_exit``. ``on_started``: called
    once the server accepts connections."""
    uvicorn = _need_stack()
    from .serve_app import MAX_BODY, ServeApp
    from .serve_scheduler import Scheduler

    scheduler = (Scheduler(llm, parallel, max_queue, batched=batched)
                 if llm.llm is not None else None)
    front = ServeApp(llm, scheduler, api_key, MAX_BODY if max_body is None else max_body)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if on_started is not None:
            on_started()
        yield
        if scheduler is not None:
            scheduler.close(timeout=drain)

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            front.draining = True                 # requests on open connections: 503
            super().handle_exit(sig, frame)

    config = uvicorn.Config(front.app(lifespan), log_level="warning", lifespan="on",
                            timeout_graceful_shutdown=max(1, int(drain)), access_log=False)
    return Server(config), front


# ----------------------------------------------------------------------------- the command
def setup(p: argparse.ArgumentParser) -> None:
    """``qorus serve``'s options."""
    p.add_argument("model", help="a GGUF file, a Hugging Face decoder directory, or an encoder "
                   "directory (embeddings only)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (8000; 0: any free one)")
    p.add_argument("--parallel", type=int, default=1,
                   help="sequences decoded at once, each in its own KV-cache slot (1)")
    p.add_argument("--ctx", type=int, help="context (KV-cache) length of each slot; default "
                   "min(model's, 2048)")
    p.add_argument("--api-key", help="require Authorization: Bearer KEY on /v1/ requests")
    p.add_argument("--max-queue", type=int, default=64,
                   help="requests waiting for a slot before new ones get 503 (64)")
    p.add_argument("--drain", type=float, default=30.0,
                   help="seconds running requests may take to finish at SIGTERM (30)")
    p.add_argument("--name", help="the model id in responses (default: the file name)")
    p.add_argument("--seed", type=int, default=0, help="seeds requests that give none (0)")
    p.add_argument("--kernels", choices=("auto", "c", "numpy"), help="kernel set")
    p.add_argument("--no-batch", action="store_true",
                   help="step the slots one after another instead of in one batched pass")


def run(args: argparse.Namespace) -> int:
    """Load the model and serve it until SIGINT/SIGTERM (then drain); the exit status."""
    from qorus_core.validate import integer

    from .api import LLM

    _need_stack()
    integer(args.parallel, "--parallel", "qorus serve", lo=1, hi=64)
    integer(args.max_queue, "--max-queue", "qorus serve", lo=0)
    integer(args.port, "--port", "qorus serve", lo=0, hi=65535)
    sock = bind(args.host, args.port)
    llm = LLM(args.model, n_ctx=args.ctx, seed=args.seed, kernels=args.kernels,
              model_name=args.name)
    host, port = sock.getsockname()[:2]
    server, _ = make_server(llm, args.parallel, args.api_key, args.max_queue, args.drain,
                            batched=not args.no_batch, on_started=lambda: print(
                                f"qorus serve: listening on http://{host}:{port} "
                                f"({llm.model_name}, {args.parallel} slot(s))",
                                file=sys.stderr, flush=True))
    previous = signal.signal(signal.SIGTERM, _drained)   # uvicorn re-raises it when done
    try:
        server.run(sockets=[sock])
    except _Drained:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


class _Drained(Exception):
    """SIGTERM after uvicorn's graceful shutdown: a clean exit."""


def _drained(sig, frame) -> None:
    raise _Drained
