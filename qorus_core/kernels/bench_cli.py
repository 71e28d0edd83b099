"""``qorus bench kernels``: the kernel benchmark (qorus_core/kernels/bench.py) on the command line.

    qorus bench kernels                      # every case, default threads, median of 5 runs
    qorus bench kernels --threads 1 --runs 9 --filter gemm
    qorus bench kernels --quick --json       # small sizes, machine-readable

The core plugin registers it (``builtin_plugin.py``); this module does not import the CLI.
"""

from __future__ import annotations

import argparse
import json


def setup(p: argparse.ArgumentParser) -> None:
    """The arguments of ``qorus bench`` (``qorus bench kernels [--json] [--threads N] ...``)."""
    sub = p.add_subparsers(dest="bench_what", metavar="WHAT", required=True)
    k = sub.add_parser("kernels", help="GFLOP/s or GB/s per kernel: C vs NumPy vs PyTorch, "
                       "beside the machine's FMA peak and memory bandwidth",
                       description="Time each kernel on the C library, its NumPy twin and "
                       "PyTorch (when importable); print the machine line, then the table.")
    k.add_argument("--json", action="store_true", help="print the report as JSON")
    k.add_argument("--threads", type=int, default=0,
                   help="threads for the C pool, NumPy's BLAS and torch (0: the default)")
    k.add_argument("--runs", type=int, default=5, help="timed blocks per figure (median)")
    k.add_argument("--quick", action="store_true", help="small sizes: a few seconds in all")
    k.add_argument("--filter", default="", metavar="SUBSTR",
                   help="only cases whose name ('kernel case') contains SUBSTR")
    k.add_argument("--no-torch", action="store_true", help="skip the PyTorch column")


def run(args: argparse.Namespace) -> int:
    """Run ``qorus bench kernels``: time every kernel case and print the report (or its JSON)."""
    from .bench import format_report, run_benchmarks

    rep = run_benchmarks(threads=args.threads, runs=max(1, args.runs), quick=args.quick,
                         filter=args.filter, torch=not args.no_torch)
    if args.json:
        print(json.dumps(rep, indent=1))
    else:
        print(format_report(rep))
    return 0

