"""``qorus train CONFIG.toml [--out DIR] [--epochs N] [--data SOURCE] [--kernels c|numpy] [--resume]
[--trust-code]``; ``mpirun -n N qorus train ...`` trains data-parallel on N ranks.

The core plugin registers ``_setup`` and ``_run`` (``builtin_plugin.py``); this module does
not import the CLI.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="training config (TOML): model layers, data, loss, optimizer, ...")
    p.add_argument("--out", help="output directory for checkpoint/ and metrics.json "
                                 "(default: runs/<config name>)")
    p.add_argument("--epochs", type=int, help="override [train] epochs")
    p.add_argument("--data", help="override [data] source: a source string ('text:PATH') or a "
                                  "path for the configured kind (e.g. any file for a text model)")
    p.add_argument("--kernels", choices=("auto", "c", "numpy"),
                   help="kernel set (default: QORUS_KERNELS or auto)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint if it exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--trust-code", action="store_true",
                   help="allow layer types written as 'module:Class', which import (run) that "
                        "Python module; only for configs you trust (default: registered names only)")


def _run(args: argparse.Namespace) -> int:
    from ..distributed import run_or_abort, world
    from .config import run_training

    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    comm = world()
    m = run_or_abort(comm, lambda: run_training(
        args.config, out, epochs=args.epochs, kernels=args.kernels, progress=not args.no_progress,
        resume=args.resume, data=args.data, allow_import=args.trust_code))
    if not comm.is_main:
        return 0
    parts = [f"{split} " + " ".join(f"{k} {v:.4f}" for k, v in m[split].items())
             for split in ("train", "validation", "test") if m[split]]
    ranks = f", {m['world_size']} ranks" if m["world_size"] > 1 else ""
    print(f"{m['epochs']} epochs in {m['seconds']:.2f}s, {m['parameters']:,} parameters, "
          f"kernels {m['kernels']}{ranks}")
    print("\n".join(parts))
    if m.get("unigram_baseline"):
        print(f"unigram baseline (train byte frequencies on validation) loss "
              f"{m['unigram_baseline']['validation']:.4f}")
    print(f"wrote {out / 'checkpoint'} and {out / 'metrics.json'}", file=sys.stderr)
    return 0
