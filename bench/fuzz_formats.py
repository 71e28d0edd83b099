"""Fuzz Qorus's file loaders: mutated GGUF, safetensors, checkpoint and TOML files, each run
through the real loaders in worker subprocesses (a crash, hang or memory blow-up is caught and
attributed to its case). Exits 1 unless every case loaded or raised a QorusError.

    python bench/fuzz_formats.py --mutations 100000 --jobs 2      # the long run (tox -e fuzz)
    python bench/fuzz_formats.py --mutations 4000 --formats gguf --findings /tmp/f.md
    python bench/fuzz_formats.py --repro gguf:0:123               # one case, in process, same limits
    python bench/fuzz_formats.py --repro gguf:0:123 --dump /tmp/case   # and keep its files

A case is ``FORMAT:SEED:INDEX``; the mutation is a pure function of it (tests/fuzz/cases.py),
so the same id gives the same file on every run. Outcomes: ok, qorus (a QorusError: the
expected refusal), error (any other exception), crash (the worker died), hang (no answer
within --timeout), memory (MemoryError under the worker's RLIMIT_AS), invalid (loaded, but a
consistency check failed), harness (the harness's own bug). All but ok and qorus must be 0.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import math
import resource
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fuzz.runner import BAD, findings_markdown, run  # noqa: E402
from fuzz.seeds import FORMATS, build_seeds  # noqa: E402


def repro(case_id: str, dump: Path | None, timeout: float, mem_bytes: int) -> int:
    """Run one case here, under the workers' limits: the address space is capped and a case
    still running after ``timeout`` seconds prints its stack and exits."""
    from fuzz.cases import make_case, write_case
    from fuzz.worker import _warm_up, run_case

    fmt, seed, index = case_id.split(":")
    faulthandler.enable()
    with tempfile.TemporaryDirectory(prefix="qorus-fuzz-") as tmp:
        root = build_seeds(Path(tmp) / "seeds")
        _warm_up()
        if mem_bytes > 0:
            resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))
        faulthandler.dump_traceback_later(timeout, exit=True)
        res = run_case(fmt, int(seed), int(index), root, Path(tmp) / "work", keep_traceback=True)
        faulthandler.cancel_dump_traceback_later()
        if dump is not None:
            dump.mkdir(parents=True, exist_ok=True)
            scratch = Path(tmp) / "dump-scratch"
            scratch.mkdir()
            case = make_case(fmt, int(seed), int(index), root, scratch)
            print(f"files written to {write_case(case, dump)}")
            shutil.copytree(root, dump / "seeds", dirs_exist_ok=True)
    tb = res.pop("traceback", "")
    print(json.dumps(res, indent=1))
    if tb:
        print(tb)
    return 1 if res["outcome"] in BAD else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mutations", type=int, default=4000, help="cases in all, split over the formats")
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", type=int, default=0, help="first case index")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds a case may take")
    ap.add_argument("--mem-gb", type=float, default=2.0, help="each worker's address-space limit")
    ap.add_argument("--findings", type=Path, help="write the findings (Markdown) here")
    ap.add_argument("--json", type=Path, help="write every case's result (JSON) here")
    ap.add_argument("--repro", metavar="FORMAT:SEED:INDEX", help="run one case in this process")
    ap.add_argument("--dump", type=Path, help="with --repro: write the case's files here")
    a = ap.parse_args(argv)
    if a.repro:
        return repro(a.repro, a.dump, a.timeout, int(a.mem_gb * (1 << 30)))
    formats = tuple(f for f in a.formats.split(",") if f)
    per = math.ceil(a.mutations / len(formats))
    report = run(formats, a.seed, per, a.start, a.jobs, a.timeout, int(a.mem_gb * (1 << 30)), progress=True)
    print(report.summary())
    command = "python bench/fuzz_formats.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if a.findings:
        a.findings.write_text(findings_markdown(report, command.strip()) + "\n")
    if a.json:
        a.json.write_text(json.dumps(report.results))
    return 1 if report.bad() else 0


if __name__ == "__main__":
    sys.exit(main())
