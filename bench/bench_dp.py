"""Data-parallel training: global-batch steps/s on 2 MPI ranks x 1 thread against 1 process x 1
thread (and 1 process x 2 threads, the other use of two cores), for the MLP, CNN and GPT of
bench_mlp.py, bench_cnn.py and bench_gpt.py, with the gradient all-reduce's time per step.

    flock /tmp/qorus-bench.lock python bench/bench_dp.py [--runs 5] [--steps 20] [--json]
        [--models mlp cnn gpt]

Every figure comes from ``Trainer.fit`` on synthetic data (C kernels; progress off, no
validation): the median over ``--runs`` timed runs of ``--steps`` global batches, after a
warm-up run. Each configuration is its own process (``mpirun -n 2`` for the ranks, Open MPI
over shared memory), run one after the other in this command. The all-reduce row is rank 0's
median time of ``allreduce_sum`` over the model's flat gradient buffer, measured apart from
the steps (the steps include it), beside MPI's non-blocking all-reduce of the same buffer
(``Iallreduce`` polled with ``Test``: what buckets started during backward would use).
Needs ``mpirun`` and ``mpi4py`` (``pip install qorus-core[mpi]``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

MODELS = {"mlp": "MLP 784-512-256-10, batch 128, AdamW",
          "cnn": "CNN conv32-bn-pool conv64-bn-pool fc128 fc10 on 28x28, batch 128, AdamW",
          "gpt": "GPT 4 layers, d_model 256, 4 heads, T=128, vocab 256, batch 16, AdamW"}


def build(name: str):
    """(model, x, y, global batch) of benchmark ``name``."""
    import numpy as np

    from qorus_core import Model, Sequential

    rng = np.random.default_rng(0)
    if name == "mlp":
        from qorus_layers_mlp import Linear, ReLU

        net = Sequential([Linear(784, 512), ReLU(), Linear(None, 256), ReLU(), Linear(None, 10)])
        batch, x = 128, rng.standard_normal((128 * 4, 784)).astype(np.float32)
        return Model(net, (784,)), x, rng.integers(0, 10, len(x)).astype(np.int32), batch
    if name == "cnn":
        layers = [{"type": "cnn.Conv2d", "out_channels": 32, "kernel_size": 3, "padding": 1,
                   "bias": False}, {"type": "cnn.BatchNorm2d"}, {"type": "mlp.ReLU"},
                  {"type": "cnn.MaxPool2d", "kernel_size": 2},
                  {"type": "cnn.Conv2d", "out_channels": 64, "kernel_size": 3, "padding": 1,
                   "bias": False}, {"type": "cnn.BatchNorm2d"}, {"type": "mlp.ReLU"},
                  {"type": "cnn.MaxPool2d", "kernel_size": 2}, {"type": "cnn.Flatten"},
                  {"type": "mlp.Linear", "out_features": 128}, {"type": "mlp.ReLU"},
                  {"type": "mlp.Linear", "out_features": 10}]
        batch, x = 128, rng.random((128 * 2, 1, 28, 28), dtype=np.float32)
        return Model(Sequential(layers), (1, 28, 28)), x, \
            rng.integers(0, 10, len(x)).astype(np.int32), batch
    from qorus_layers_llm import GPT

    net = GPT(256, 256, 4, 4, 128, positional="learned", norm="layernorm", ffn="gelu",
              tie_embeddings=True)
    batch = 16
    ids = rng.integers(0, 256, (batch * 2, 129)).astype(np.int32)
    return Model(net, (128,), "i32"), ids[:, :-1].copy(), ids[:, 1:].copy(), batch


def worker(name: str, runs: int, steps: int) -> None:
    """One rank: time ``runs`` x ``steps`` global batches; rank 0 prints a JSON line."""
    import numpy as np

    from qorus_core.distributed import world
    from qorus_core.train import AdamW, CrossEntropyLoss, Trainer

    comm = world()
    model, x, y, batch = build(name)
    per_epoch = len(x) // batch
    epochs_per_run = max(1, steps // per_epoch)
    tr = Trainer(model, CrossEntropyLoss(), AdamW(lr=1e-4), batch_size=batch,
                 epochs=(runs + 1) * epochs_per_run, shuffle=True, progress=False)
    tr.fit(x, y, until_epoch=epochs_per_run)                   # warm-up: plans, scratch
    rates = []
    for r in range(runs):
        comm.barrier()
        t0 = time.perf_counter()
        tr.fit(x, y, until_epoch=(r + 2) * epochs_per_run)
        rates.append(epochs_per_run * per_epoch / (time.perf_counter() - t0))
    grads = model.grads.a
    times, nonblocking = [], []
    for _ in range(max(runs, 5) * 4):
        comm.barrier()
        t0 = time.perf_counter()
        comm.allreduce_sum(grads)
        times.append(time.perf_counter() - t0)
        if comm.size > 1:                  # MPI's non-blocking all-reduce, as buckets would use
            mpi = comm.MPI
            comm.barrier()
            t0 = time.perf_counter()
            req = comm.comm.Iallreduce(mpi.IN_PLACE, grads, mpi.SUM)
            while not req.Test():
                pass
            nonblocking.append(time.perf_counter() - t0)
    if comm.is_main:
        ms = (lambda t: float(np.median(t)) * 1e3) if comm.size > 1 else (lambda t: 0.0)
        print(json.dumps({"steps_per_s": float(np.median(rates)), "ranks": comm.size,
                          "allreduce_ms": ms(times), "nonblocking_allreduce_ms": ms(nonblocking),
                          "grad_bytes": int(grads.nbytes)}))


def launch(name: str, ranks: int, threads: int, args: argparse.Namespace) -> dict:
    env = dict(os.environ, QORUS_NUM_THREADS=str(threads), OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", QORUS_KERNELS="c", OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_btl="self,vader")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--runs",
           str(args.runs), "--steps", str(args.steps)]
    if ranks > 1:
        cmd = ["mpirun", "-n", str(ranks), "--bind-to", "core", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["mlp", "cnn", "gpt"])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", choices=sorted(MODELS), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.runs, args.steps)
        return 0
    rows = {}
    for name in args.models:
        one = launch(name, 1, 1, args)
        two_threads = launch(name, 1, 2, args)
        ranks = launch(name, 2, 1, args)
        rows[name] = {"model": MODELS[name],
                      "1 process x 1 thread": one["steps_per_s"],
                      "1 process x 2 threads": two_threads["steps_per_s"],
                      "2 ranks x 1 thread": ranks["steps_per_s"],
                      "speedup 2 ranks": ranks["steps_per_s"] / one["steps_per_s"],
                      "speedup 2 threads": two_threads["steps_per_s"] / one["steps_per_s"],
                      "allreduce_ms": ranks["allreduce_ms"],
                      "nonblocking_allreduce_ms": ranks["nonblocking_allreduce_ms"],
                      "allreduce share of a 2-rank step": ranks["allreduce_ms"] * 1e-3
                      * ranks["steps_per_s"],
                      "grad_bytes": ranks["grad_bytes"]}
    result = {"bench": "data_parallel", "runs": args.runs, "steps": args.steps,
              "kernels": "c", "rows": rows}
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return 0
    print(f"global-batch steps/s, median of {args.runs} runs x {args.steps} steps, C kernels")
    print(f"{'':5}{'1p x 1t':>10}{'1p x 2t':>10}{'2r x 1t':>10}{'2r/1p':>8}{'2t/1t':>8}"
          f"{'all-reduce':>12}{'share':>7}{'Iallreduce':>12}{'grads':>10}")
    for name, r in rows.items():
        print(f"{name:5}{r['1 process x 1 thread']:10.2f}{r['1 process x 2 threads']:10.2f}"
              f"{r['2 ranks x 1 thread']:10.2f}{r['speedup 2 ranks']:7.2f}x"
              f"{r['speedup 2 threads']:7.2f}x{r['allreduce_ms']:10.3f}ms"
              f"{r['allreduce share of a 2-rank step'] * 100:6.1f}%"
              f"{r['nonblocking_allreduce_ms']:10.3f}ms"
              f"{r['grad_bytes'] / 2**20:8.2f}MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
