"""The worker pool: cases sent one at a time to ``jobs`` worker subprocesses, each watched for
a crash (the worker dies: its signal), a hang (no answer within ``timeout`` seconds: sent
SIGABRT, so faulthandler logs where it is stuck, then killed) and a memory blow-up
(MemoryError under the worker's RLIMIT_AS); a dead or killed worker is replaced and the run
goes on. ``Report`` counts outcomes and groups the findings.
"""

from __future__ import annotations

import json
import os
import re
import select
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .seeds import FORMATS, TESTS, build_seeds
from .worker import CRASH, ERROR, HANG, HARNESS, INVALID, MEMORY, OK, QORUS, project_file

OUTCOMES = (OK, QORUS, ERROR, CRASH, HANG, MEMORY, INVALID, HARNESS)
BAD = (ERROR, CRASH, HANG, MEMORY, INVALID, HARNESS)
REPRO = "python bench/fuzz_formats.py --repro {id}"
_BOOT = ("import sys; sys.path.insert(0, {tests!r}); from fuzz.worker import main; main()")
_FRAME = re.compile(r'File "([^"]+)", line (\d+) in (\S+)')
ABORT_WAIT_S = 30.0   # how long a hung worker gets to write its stacks after SIGABRT


@dataclass
class Report:
    results: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def counts(self, fmt: str | None = None) -> Counter:
        return Counter(r["outcome"] for r in self.results if fmt is None or r["fmt"] == fmt)

    def bad(self, fmt: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.results if r["outcome"] in BAD and (fmt is None or r["fmt"] == fmt)]

    def findings(self, fmt: str | None = None) -> list[list[dict[str, Any]]]:
        """The bad results grouped by (outcome, exception type, where), largest first."""
        groups: dict[tuple, list] = defaultdict(list)
        for r in self.bad(fmt):
            groups[(r["outcome"], r["exc_type"], r["where"])].append(r)
        return sorted(groups.values(), key=lambda g: (-len(g), g[0]["id"]))

    def table(self) -> str:
        fmts = sorted({r["fmt"] for r in self.results}, key=lambda f: (FORMATS + (f,)).index(f))
        head = f"{'format':12}" + "".join(f"{o:>9}" for o in OUTCOMES) + f"{'total':>9}"
        rows = [head]
        for f in fmts + ["all"]:
            c = self.counts(None if f == "all" else f)
            rows.append(f"{f:12}" + "".join(f"{c[o]:>9}" for o in OUTCOMES) + f"{sum(c.values()):>9}")
        return "\n".join(rows)

    def summary(self, limit: int = 25) -> str:
        """The table, then one line per finding (its first case reproduces it)."""
        lines = [self.table(), f"{len(self.results)} cases in {self.seconds:.1f} s"]
        for g in self.findings()[:limit]:
            r = g[0]
            lines.append(f"  {len(g):5d} x {r['outcome']} {r['exc_type']} at {r['where']} [{r['stage']}]: "
                         f"{r['message'][:160]!r}  ({REPRO.format(id=r['id'])}; {r['desc'][:100]})")
        done = [r for r in self.results if r["outcome"] in (OK, QORUS)]
        slow = sorted(done, key=lambda r: -r["seconds"])[:3]
        if slow:
            lines.append("slowest: " + ", ".join(f"{r['id']} {r['seconds']:.2f}s ({r['stage']})"
                                                 for r in slow))
        return "\n".join(lines)


class _Worker:
    def __init__(self, k: int, root: Path, run_dir: Path, timeout: float, mem_bytes: int) -> None:
        self.k, self.root, self.timeout, self.mem = k, root, timeout, mem_bytes
        self.workdir = run_dir / f"worker{k}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = run_dir / f"worker{k}.log"
        self.proc: subprocess.Popen | None = None
        self.buf = b""
        self.case: tuple[str, int, int] | None = None
        self.started = 0.0
        self.log_at = 0

    def start(self) -> None:
        env = dict(os.environ, QORUS_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                   PYTHONHASHSEED="0")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT.format(tests=str(TESTS)), str(self.root), str(self.workdir),
                 str(self.mem)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env, cwd=self.workdir)
        self.buf = b""
        line = self._read_line(60.0)
        if line != "ready":
            raise RuntimeError(f"fuzz worker {self.k} did not start: {self.log_tail(0)[-2000:]}")

    def _read_line(self, timeout: float) -> str | None:
        assert self.proc is not None and self.proc.stdout is not None
        end = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = end - time.monotonic()
            if left <= 0:
                return None
            sel = selectors.DefaultSelector()
            sel.register(fd, selectors.EVENT_READ)
            ready = sel.select(left)
            sel.close()
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    return None
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def poll(self) -> bool:
        """Read what the worker has written so far, without blocking; False once it died."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf and select.select([fd], [], [], 0)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                return False
            self.buf += chunk
        return True

    def abort(self) -> None:
        """Stop a hung worker with SIGABRT: faulthandler writes every thread's stack to the
        log before the process dies (its exit says the dump is complete), then reap it."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGABRT)
        try:
            self.proc.wait(ABORT_WAIT_S)
        except subprocess.TimeoutExpired:
            pass
        self.stop()

    def send(self, case: tuple[str, int, int]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.case, self.started = case, time.monotonic()
        self.log_at = self.log_path.stat().st_size
        self.proc.stdin.write("{} {} {}\n".format(*case).encode())
        self.proc.stdin.flush()

    def log_tail(self, start: int) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(start)
            return f.read(200_000).decode("utf-8", "replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
            for s in (self.proc.stdin, self.proc.stdout):
                try:
                    s.close()
                except (OSError, AttributeError):
                    pass
        self.proc = None


def _stack_where(log: str) -> tuple[str, str]:
    """(deepest Qorus frame, the first lines of the dump) from a faulthandler dump."""
    frames = _FRAME.findall(log)
    for filename, line, fn in frames:          # most recent call first
        rel = project_file(filename)
        if rel:
            return f"{rel}:{line} ({fn})", log
    if frames:
        filename, line, fn = frames[0]
        return f"{filename}:{line} ({fn})", log
    return "?", log


def _lost(w: _Worker, outcome: str, detail: str) -> dict[str, Any]:
    """The result of a case whose worker died or was killed, from the worker's log."""
    fmt, seed, index = w.case or ("?", 0, 0)
    log = w.log_tail(w.log_at)
    loc, _ = _stack_where(log)
    if outcome == CRASH:
        fatal = re.search(r"Fatal Python error: (.*)", log)
        lines = [x for x in log.splitlines()[1:] if x.strip() and not x.startswith("=== case")]
        message = fatal.group(1) if fatal else (lines[0].strip() if lines else "(no output)")
    else:
        message = f"no answer within {w.timeout:g} s"
    stage = next((f"{Path(fn).name}:{line} ({name})" for fn, line, name in _FRAME.findall(log)
                  if fn.endswith("targets.py")), "")
    return {"id": f"{fmt}:{seed}:{index}", "fmt": fmt, "seed": seed, "index": index, "outcome": outcome,
            "exc_type": detail, "message": message[:400], "where": loc, "stage": stage, "desc": "",
            "seed_name": "", "seconds": round(time.monotonic() - w.started, 3)}


def run(formats: tuple[str, ...] = FORMATS, seed: int = 0, count: int = 100, start: int = 0,
        jobs: int = 1, timeout: float = 10.0, mem_bytes: int = 2 << 30, work: Path | None = None,
        progress: bool = False, cases: list[tuple[str, int, int]] | None = None) -> Report:
    """Run cases ``start .. start + count - 1`` of every format (interleaved), or the
    ``cases`` given as ``(format, seed, index)``, on ``jobs`` workers; returns the report.
    ``mem_bytes``: each worker's RLIMIT_AS (0: none)."""
    tmp = None
    if work is None:
        tmp = tempfile.TemporaryDirectory(prefix="qorus-fuzz-")
        work = Path(tmp.name)
    work = Path(work)
    root = build_seeds(work / "seeds")
    todo = deque(cases if cases is not None else
                 ((f, seed, i) for i in range(start, start + count) for f in formats))
    report = Report()
    t0 = time.monotonic()
    workers = [_Worker(k, root, work / "run", timeout, mem_bytes) for k in range(max(1, jobs))]
    last_print = t0
    try:
        for w in workers:
            w.start()
        while todo or any(w.case for w in workers):
            for w in workers:
                if w.case is None and todo:
                    w.send(todo.popleft())
            sel = selectors.DefaultSelector()
            for w in workers:
                if w.case is not None:
                    sel.register(w.proc.stdout.fileno(), selectors.EVENT_READ, w)
            now = time.monotonic()
            wait = max(0.0, min(w.started + timeout - now for w in workers if w.case is not None))
            events = sel.select(wait) if not any(b"\n" in w.buf for w in workers) else []
            sel.close()
            for w in workers:
                if w.case is None:
                    continue
                # Time overdue is checked against what the worker wrote by now: the runner
                # may have been busy (restarting another worker) when the answer came.
                overdue = time.monotonic() - w.started > timeout
                if (any(key.data is w for key, _ in events) or overdue) and not w.poll():
                    rc = w.proc.wait()          # the worker died: a crash of this case
                    why = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit status {rc}"
                    report.results.append(_describe(_lost(w, CRASH, why), root, work))
                    w.case = None
                    w.stop()
                    w.start()
                    continue
                if b"\n" in w.buf:
                    line, w.buf = w.buf.split(b"\n", 1)
                    report.results.append(json.loads(line))
                    w.case = None
                elif overdue:
                    w.abort()
                    report.results.append(_describe(_lost(w, HANG, "timeout"), root, work))
                    w.case = None
                    w.start()
            if progress and time.monotonic() - last_print > 10:
                last_print = time.monotonic()
                c = report.counts()
                print(f"  {len(report.results)} cases, {time.monotonic() - t0:.0f} s: " +
                      ", ".join(f"{o} {c[o]}" for o in OUTCOMES if c[o]), file=sys.stderr, flush=True)
    finally:
        for w in workers:
            w.stop()
        report.seconds = time.monotonic() - t0
        if tmp is not None:
            tmp.cleanup()
    report.results.sort(key=lambda r: (r["fmt"], r["index"]))
    return report


def _describe(res: dict[str, Any], root: Path, work: Path) -> dict[str, Any]:
    """Fill in a lost case's description by generating it again here (cheap, no loading)."""
    from .cases import make_case

    if res["fmt"] == "?":
        return res
    scratch = work / "describe"
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        case = make_case(res["fmt"], res["seed"], res["index"], root, scratch)
        res.update(desc=case.desc[:300], seed_name=case.seed_name)
    except Exception as exc:   # noqa: BLE001 - the description is best effort
        res.update(desc=f"(cannot regenerate: {exc})")
    return res


def findings_markdown(report: Report, command: str) -> str:
    """The findings as Markdown, grouped by the file where each exception leaves Qorus."""
    by_file: dict[str, list[list[dict[str, Any]]]] = defaultdict(list)
    for g in report.findings():
        by_file[g[0]["where"].split(":")[0]].append(g)
    out = [f"Run: `{command}`, {len(report.results)} cases in {report.seconds:.0f} s.", "",
           "```", report.table(), "```", ""]
    if not by_file:
        out.append("No findings: every case loaded or raised a QorusError.")
    for file in sorted(by_file):
        out.append(f"### {file}")
        for g in by_file[file]:
            r = g[0]
            fmts = ", ".join(sorted({x["fmt"] for x in g}))
            out.append(f"- **{r['outcome']} `{r['exc_type']}`** at `{r['where']}`, {len(g)} case(s) "
                       f"({fmts}; stage: {r['stage'] or '?'})")
            out.append(f"  - message: `{r['message'][:240]}`")
            out.append(f"  - mutation: {r['desc'][:200]} (seed file {r['seed_name']})")
            others = ", ".join(x["id"] for x in g[1:4])
            also = f" (also {others})" if others else ""
            out.append(f"  - reproduce: `{REPRO.format(id=r['id'])}`{also}")
        out.append("")
    return "\n".join(out)
