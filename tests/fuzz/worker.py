"""One case, run and classified: ``run_case`` (in process, for ``--repro``) and ``main`` (the
worker subprocess the runner starts: case ids on stdin, one JSON line per case on the
protocol pipe, its stdout and stderr going to a log where faulthandler writes the stack of a
crash, or of a case past its timeout when the runner sends SIGABRT).
"""

from __future__ import annotations

import faulthandler
import json
import os
import resource
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("qorus_core", "qorus_layers_mlp", "qorus_layers_llm", "plugins")
OK, QORUS, ERROR, CRASH, HANG, MEMORY, INVALID, HARNESS = (
    "ok", "qorus", "error", "crash", "hang", "memory", "invalid", "harness")


def project_file(filename: str) -> str | None:
    """``filename`` relative to the repository when it is Qorus code (not tests, not deps)."""
    try:
        rel = Path(filename).resolve().relative_to(ROOT)
    except ValueError:
        return None
    return str(rel) if rel.parts and rel.parts[0] in PROJECT else None


def where(tb: Any) -> str:
    """The deepest Qorus frame of a traceback (where the exception leaves Qorus's code)."""
    frames = traceback.extract_tb(tb)
    mine = [f for f in frames if project_file(f.filename)]
    f = (mine or frames or [None])[-1]
    if f is None:
        return "?"
    return f"{project_file(f.filename) or f.filename}:{f.lineno} ({f.name})"


def run_case(fmt: str, seed: int, index: int, root: Path, workdir: Path,
             keep_traceback: bool = False) -> dict[str, Any]:
    """Generate case ``(fmt, seed, index)`` under ``workdir``, run its target, classify."""
    from qorus_core.errors import QorusError

    from .cases import make_case, write_case
    from .targets import TARGETS, Invariant, Stage

    res: dict[str, Any] = {"id": f"{fmt}:{seed}:{index}", "fmt": fmt, "seed": seed, "index": index,
                           "outcome": OK, "exc_type": "", "message": "", "where": "", "stage": "",
                           "desc": "", "seed_name": "", "seconds": 0.0}
    case_dir, scratch = workdir / "case", workdir / "scratch"
    for d in (case_dir, scratch):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    try:
        case = make_case(fmt, seed, index, root, scratch)
        path = write_case(case, case_dir)
    except Exception as exc:   # noqa: BLE001 - a bug of the harness, reported as such
        res.update(outcome=HARNESS, exc_type=type(exc).__name__, message=str(exc)[:400],
                   where=where(exc.__traceback__), stage="generating the case")
        return res
    res.update(desc=case.desc[:300], seed_name=case.seed_name)
    stage = Stage()
    t0 = time.perf_counter()
    try:
        TARGETS[fmt](path, stage)
    except BaseException as exc:   # noqa: BLE001 - classifying is the point
        outcome = (QORUS if isinstance(exc, QorusError) else MEMORY if isinstance(exc, MemoryError)
                   else INVALID if isinstance(exc, Invariant) else ERROR)
        res.update(outcome=outcome, exc_type=type(exc).__name__, message=str(exc)[:400],
                   where=f"oracle: {exc.key}" if isinstance(exc, Invariant) else where(exc.__traceback__))
        if keep_traceback:
            res["traceback"] = "".join(traceback.format_exception(exc))
        del exc
    res.update(stage=stage.name[:120], seconds=round(time.perf_counter() - t0, 4))
    return res


def _warm_up() -> None:
    """Import what every target needs (lazy imports would bill the first case)."""
    import qorus_core.io.gguf  # noqa: F401
    import qorus_core.io.safetensors  # noqa: F401
    import qorus_core.train.checkpoint  # noqa: F401
    import qorus_core.train.config  # noqa: F401
    import qorus_layers_llm.chat  # noqa: F401
    import qorus_layers_llm.generate  # noqa: F401
    import qorus_layers_llm.llama  # noqa: F401
    from qorus_core.kernels import get_kernels
    from qorus_core.registry import get_registry

    from . import cases, targets  # noqa: F401

    get_registry().entries()
    get_kernels()


def main(argv: list[str] | None = None) -> None:
    """``worker ROOT WORKDIR MEM_BYTES``: serve cases until stdin closes (the runner times
    them)."""
    root, workdir, mem = argv or sys.argv[1:]
    signal.signal(signal.SIGINT, signal.SIG_IGN)        # the runner stops us
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)                                       # a loader's prints go to the log
    sys.stdout = os.fdopen(1, "w", buffering=1)
    faulthandler.enable(file=sys.stderr, all_threads=True)   # SIGSEGV, SIGABRT, ...: the stacks
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))         # and no core file
    _warm_up()
    if int(mem) > 0:
        resource.setrlimit(resource.RLIMIT_AS, (int(mem), int(mem)))
    proto.write("ready\n")
    for line in sys.stdin:
        fmt, seed, index = line.split()
        print(f"\n=== case {fmt}:{seed}:{index}", file=sys.stderr, flush=True)
        res = run_case(fmt, int(seed), int(index), Path(root), Path(workdir))
        proto.write(json.dumps(res) + "\n")
