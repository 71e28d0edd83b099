"""Shared plumbing of the model benchmarks (bench_mlp, bench_cnn, bench_rnn, bench_gpt).

Each script keeps its own model and torch code; this module holds what they do alike: the common
command-line options, pinning every library's thread count, timing a closure as a median rate,
the Qorus cross-entropy training step, the ratios against the torch row and the printed output.
It imports only the standard library at load time, so a script can import it (and parse its
options) before NumPy starts its thread pools.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

TORCH_ROW = "torch-2.13-eager"
THREAD_VARS = ("QORUS_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "BLIS_NUM_THREADS")


def thread_env(threads: int) -> dict[str, str]:
    """This process's environment with Qorus and every BLAS pinned to ``threads`` (for a
    subprocess; a script pinning itself sets ``os.environ.update(thread_env(n))`` first)."""
    return dict(os.environ, **{var: str(threads) for var in THREAD_VARS})


def parse_args(doc: str, *, runs: int, steps: int,
               add: Callable[[argparse.ArgumentParser], object] | None = None) -> argparse.Namespace:
    """Parse ``--threads --runs --steps``, the script's own options (``add``) and ``--json``,
    then pin the thread count: it must be in the environment before NumPy/torch load to apply."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=runs)
    ap.add_argument("--steps", type=int, default=steps, help="training steps per timed run")
    if add is not None:
        add(ap)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    os.environ.update(thread_env(args.threads))
    return args


def median_rate(fn: Callable[[], object], work: int, runs: int) -> float:
    """``work`` units per second over the median of ``runs`` timed calls of ``fn()`` (after warm-up).

    ``block_s=0`` makes every timed block a single call: ``fn`` already loops over many steps."""
    from qorus_core.kernels.bench import time_per_call  # lazily: it loads NumPy

    return work / time_per_call(fn, runs=runs, block_s=0.0)


def import_torch(threads: int) -> ModuleType | None:
    """PyTorch set to ``threads`` threads and seed 0, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    return torch


def ce_plan(model: Any, x: Any, y: Any, batch: int) -> tuple[Any, Callable[[], None]]:
    """``model``'s training plan for ``batch`` with ``x`` loaded, and a call that evaluates the
    cross-entropy loss against targets ``y`` and writes its gradient into the plan's ``dy``."""
    from qorus_core import Tensor
    from qorus_core.train.losses import CrossEntropyLoss

    loss = CrossEntropyLoss()
    plan = model.plan(batch, train=True)
    targets = Tensor.of(y)
    plan.x.a[...] = x
    k = model.kernels

    def loss_call() -> None:
        loss(plan.y, targets, plan.dy, k)

    return plan, loss_call


def ce_train(model: Any, opt: Any, x: Any, y: Any, batch: int, steps: int) -> Callable[[], None]:
    """A closure running ``steps`` Qorus training steps (zero_grad, forward, cross-entropy,
    backward, optimizer step) on one fixed batch."""
    plan, loss = ce_plan(model, x, y, batch)

    def train() -> None:
        for _ in range(steps):
            model.zero_grad()
            plan.forward()
            loss()
            plan.backward()
            opt.step()

    return train


def result_rows(rates: dict[str, Sequence[float]], keys: Sequence[str],
                ratio_keys: Sequence[str],
                convert: Sequence[Callable[[float], float]] | None = None) -> dict[str, dict[str, float]]:
    """JSON rows: ``keys[j]`` holds ``convert[j](rates[row][j])``, and, when the torch row is
    present, ``ratio_keys[j]`` holds the raw rate over torch's (> 1: faster than torch)."""
    conv = convert or [float] * len(keys)
    rows = {k: {key: c(v) for key, c, v in zip(keys, conv, vs)} for k, vs in rates.items()}
    ref = rates.get(TORCH_ROW)
    if ref is not None:
        for k, vs in rates.items():
            rows[k].update({rk: v / r for rk, v, r in zip(ratio_keys, vs, ref)})
    return rows


def dump_json(result: dict) -> None:
    """The result dict on stdout, indented, with a final newline."""
    json.dump(result, sys.stdout, indent=2)
    print()


def print_table(title: str, rows: dict[str, dict[str, float]],
                columns: Sequence[tuple[str, str, int, int, str]], missing: str = "columns") -> None:
    """``title``, then one line per row: for each column ``(header, key, width, decimals,
    ratio_key)`` the value and its ratio against torch (nan without torch)."""
    print(title)
    print(f"{'':18}" + "".join(f" {h:>{w}} {'vs torch':>9}" for h, _, w, _, _ in columns))
    for k, r in rows.items():
        print(f"{k:18}" + "".join(f" {r[key]:{w}.{d}f} {r.get(rk, float('nan')):8.2f}x"
                                  for _, key, w, d, rk in columns))
    if TORCH_ROW not in rows:
        print(f"(torch not installed: pip install torch==2.13.0 for the reference {missing})")
