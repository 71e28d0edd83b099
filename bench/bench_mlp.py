"""MLP 784-512-256-10, batch 128, AdamW: training steps/s and batch-1 inference latency,
Qorus (C and NumPy kernels) against PyTorch 2.13 eager, in one run, same thread count.

    python bench/bench_mlp.py [--threads 2] [--runs 7] [--json]

Each figure is the median of ``--runs`` timed runs (after warm-up); ratios > 1 mean Qorus is
faster. Set before NumPy/torch load, the thread count applies to every library.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--steps", type=int, default=30, help="training steps per timed run")
    ap.add_argument("--calls", type=int, default=300, help="inference calls per timed run")
    ap.add_argument("--json", action="store_true")
    return ap.parse_args()


ARGS = _args()
for var in ("QORUS_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402

from qorus_core import Model, Sequential, Tensor, get_kernels  # noqa: E402
from qorus_core.kernels import c_status  # noqa: E402
from qorus_core.train.losses import CrossEntropyLoss  # noqa: E402
from qorus_core.train.optimizers import AdamW  # noqa: E402
from qorus_layers_mlp import Linear, ReLU  # noqa: E402

SIZES, BATCH = (784, 512, 256, 10), 128


def median_rate(fn, work: int, runs: int) -> float:
    """Median of ``runs`` timings of ``fn()`` as work units per second (after one warm-up)."""
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return work / statistics.median(times)


def qorus_case(kernels: str, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    net = Sequential([Linear(SIZES[0], SIZES[1]), ReLU(), Linear(None, SIZES[2]), ReLU(),
                      Linear(None, SIZES[3])])
    model = Model(net, (SIZES[0],), kernels=get_kernels(kernels))
    opt = AdamW(lr=1e-3).bind(model)
    loss = CrossEntropyLoss()
    plan = model.plan(BATCH, train=True)
    targets = Tensor.of(y)
    plan.x.a[...] = x
    k = model.kernels

    def train():
        for _ in range(ARGS.steps):
            model.zero_grad()
            plan.forward()
            loss(plan.y, targets, plan.dy, k)
            plan.backward()
            opt.step()

    one = model.plan(1, train=False)
    one.x.a[...] = x[:1]

    def infer():
        for _ in range(ARGS.calls):
            one.forward()

    return median_rate(train, ARGS.steps, ARGS.runs), median_rate(infer, ARGS.calls, ARGS.runs)


def torch_case(x: np.ndarray, y: np.ndarray) -> tuple[float, float] | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(ARGS.threads)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(SIZES[0], SIZES[1]), torch.nn.ReLU(),
                              torch.nn.Linear(SIZES[1], SIZES[2]), torch.nn.ReLU(),
                              torch.nn.Linear(SIZES[2], SIZES[3]))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()

    def train():
        for _ in range(ARGS.steps):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(xt), yt).backward()
            opt.step()

    x1 = xt[:1].clone()

    def infer():
        with torch.inference_mode():
            for _ in range(ARGS.calls):
                net(x1)

    return median_rate(train, ARGS.steps, ARGS.runs), median_rate(infer, ARGS.calls, ARGS.runs)


def main() -> int:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[3], BATCH).astype(np.int32)
    rows = {}
    if c_status()[0]:
        rows["qorus-c"] = qorus_case("c", x, y)
    rows["qorus-numpy"] = qorus_case("numpy", x, y)
    ref = torch_case(x, y)
    if ref is not None:
        rows["torch-2.13-eager"] = ref
    result = {"threads": ARGS.threads, "runs": ARGS.runs, "model": "784-512-256-10 ReLU",
              "batch": BATCH, "optimizer": "AdamW",
              "rows": {k: {"train_steps_per_s": t, "infer_batch1_us": 1e6 / i}
                       for k, (t, i) in rows.items()}}
    if ref is not None:
        for k, (t, i) in rows.items():
            result["rows"][k]["train_ratio_vs_torch"] = t / ref[0]
            result["rows"][k]["infer_speedup_vs_torch"] = i / ref[1]
    if ARGS.json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return 0
    print(f"MLP {result['model']}, batch {BATCH}, AdamW, {ARGS.threads} threads, "
          f"median of {ARGS.runs} runs")
    print(f"{'':18} {'train steps/s':>14} {'vs torch':>9} {'infer b=1 us':>13} {'vs torch':>9}")
    for k, r in result["rows"].items():
        print(f"{k:18} {r['train_steps_per_s']:14.1f} {r.get('train_ratio_vs_torch', float('nan')):8.2f}x"
              f" {r['infer_batch1_us']:13.1f} {r.get('infer_speedup_vs_torch', float('nan')):8.2f}x")
    if ref is None:
        print("(torch not installed: pip install torch==2.13.0 for the reference columns)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
