"""Plugin code run isolated: in a bounded worker thread, whatever it raises caught.

Each plugin's import and registration hooks run in a worker thread of their own,
bounded by ``QORUS_PLUGIN_TIMEOUT`` seconds (default 30). Whatever that code raises -
``SystemExit`` from ``sys.exit``, a ``KeyboardInterrupt`` it raises itself, ``GeneratorExit``,
any ``BaseException`` - fails that plugin only. A plugin still running at the deadline fails
with "did not finish loading within N s"; what it registers later is never committed. A real
Ctrl-C still interrupts: Python runs signal handlers in the main thread only, and there the
registry merely waits for the worker, so a ``KeyboardInterrupt`` seen by the waiting thread
is a signal delivered to the process, never plugin code (no handler is installed, nothing to
restore). An interrupted load leaves the registry unloaded; the next use loads again. A hook
stuck in C code that holds the GIL, or ``os._exit``, cannot be contained by a thread. Hooks
that look names up see what is committed so far (plugins load in namespace order); a thread
a hook starts itself waits for the whole load instead, so a hook must not wait for such a
thread's lookup (it would run into its deadline). One exception to the worker: a first use
from a module's top-level code as it is imported (a plugin module looking a layer up at
import) loads in that thread, with no time bound, because a worker importing the same
modules would wait for the import locks that thread holds while it waits for the worker.
``call_plugin_hook`` calls one plugin's later hooks (commands, train-finished) the same
isolated way, bounded or in this thread.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import RegistryError

__all__ = ["PluginCodeFailed", "Outcome", "importing_here", "run_isolated", "describe_failure"]

_WAIT_SLICE_S = 0.25  # the waiting thread wakes this often, so a signal is handled promptly


class PluginCodeFailed(Exception):
    """Plugin code failed in its worker: the reason, the original exception and its traceback."""

    def __init__(self, reason: str, cause: BaseException | None, tb: str | None) -> None:
        super().__init__(reason)
        self.reason, self.cause, self.tb = reason, cause, tb


@dataclass
class Outcome:
    """What ``run_isolated`` left: ``done`` only when the call finished within the time."""

    done: bool = False
    value: Any = None
    error: BaseException | None = None
    traceback: str | None = None
    stack: str | None = None  # where a worker still running at the deadline was


def importing_here() -> bool:
    """Whether this thread is running a module's top-level code under ``import`` right now
    (holding that module's import lock), as when a module looks names up as it is imported."""
    frame = sys._getframe(1)
    while frame is not None:
        spec = frame.f_globals.get("__spec__")
        if frame.f_code.co_name == "<module>" and getattr(spec, "_initializing", False):
            return True
        frame = frame.f_back
    return False


def run_isolated(fn: Callable[[], Any], thread_name: str, timeout: float | None) -> Outcome:
    """Call ``fn`` catching whatever it raises (returned in the outcome, with its traceback).

    ``timeout`` None: in this thread; KeyboardInterrupt propagates (a Ctrl-C cannot be told
    from plugin code here). Else in a daemon worker thread, waited for up to ``timeout``
    seconds (``inf``: no bound): a worker still running then is abandoned (``done`` False;
    ``stack`` says where it was) and ends on its own. The waiting thread wakes every
    ``_WAIT_SLICE_S``, so a real Ctrl-C raises KeyboardInterrupt here promptly.
    """
    out = Outcome()
    if timeout is None:
        try:
            out.value = fn()
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - plugin code may raise anything
            out.error, out.traceback = exc, traceback.format_exc()
        out.done = True
        return out
    finished = threading.Event()

    def run() -> None:
        try:
            out.value = fn()
        except BaseException as exc:  # plugin code may raise anything, SystemExit included
            out.error, out.traceback = exc, traceback.format_exc()
        finally:
            finished.set()

    worker = threading.Thread(target=run, name=thread_name, daemon=True)
    worker.start()
    deadline = time.monotonic() + timeout
    while not finished.wait(min(_WAIT_SLICE_S, max(0.0, deadline - time.monotonic()))):
        if time.monotonic() >= deadline:
            frame = sys._current_frames().get(worker.ident or -1)
            out.stack = "".join(traceback.format_stack(frame)) if frame else None
            return out
    worker.join()  # it is past finished.set(): leaves no thread behind
    out.done = True
    return out


def describe_failure(exc: BaseException) -> str:
    """One line for what plugin code raised; the exits a host would otherwise die of, named."""
    if isinstance(exc, RegistryError):
        return str(exc)
    if isinstance(exc, SystemExit):
        return f"SystemExit({exc.code!r}): the plugin called sys.exit()"
    if isinstance(exc, KeyboardInterrupt):
        return "KeyboardInterrupt raised by the plugin's own code (not a Ctrl-C)"
    return f"{type(exc).__name__}: {exc}"
