"""GEMM throughput: the Qorus C kernel against numpy.matmul (NumPy's BLAS), in GFLOP/s.

    python bench/bench_gemm.py                 # 1 and 2 threads, median of 7 runs per block
    python bench/bench_gemm.py --threads 2 --runs 15 --shapes mlp

Each thread count runs in its own subprocess with QORUS_NUM_THREADS and OPENBLAS_NUM_THREADS
(and the other BLAS variables) set, so neither library's idle spinning workers slow the other:
blocks of runs alternate between the two libraries with a pause in between, and the reported
figure is the median over all blocks. On a shared (noisy) machine, ``--clock thread`` times
1-thread runs in CPU time of the calling thread (both libraries compute on it), which
discounts time the thread was preempted; 2-thread runs always use wall time.
Shapes: the MLP 784-512-256-10 at batch 128 (forward X W^T, weight gradient dY^T X, input
gradient dY W) and squares 256..2048. ``--simd avx512 avx2`` runs each thread count once per
SIMD tier (QORUS_SIMD in the subprocess), so the tiers compare in one session; each row also
gives the share of the C FMA probe's peak at that tier and thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from harness import thread_env

# (name, trans_a, trans_b, M, N, K)
MLP = [
    ("fc1 fwd  X@W1^T", False, True, 128, 512, 784),
    ("fc1 dW   dY^T@X", True, False, 512, 784, 128),
    ("fc1 dX   dY@W1", False, False, 128, 784, 512),
    ("fc2 fwd", False, True, 128, 256, 512),
    ("fc2 dW", True, False, 256, 512, 128),
    ("fc2 dX", False, False, 128, 512, 256),
    ("fc3 fwd", False, True, 128, 10, 256),
    ("fc3 dW", True, False, 10, 256, 128),
]
SQUARE = [(f"square {n}", False, False, n, n, n) for n in (256, 512, 768, 1024, 2048)]
SQUARE += [("square 512 NT", False, True, 512, 512, 512), ("square 512 TN", True, False, 512, 512, 512)]


def worker(threads: int, runs: int, blocks: int, shapes: list, clock: str) -> list[dict]:
    import numpy as np

    try:
        import qorus_core  # noqa: F401
    except ImportError:   # run from a source checkout without installing
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    from qorus_core.kernels import c_status, get_kernels
    from qorus_core.tensor import Tensor

    ok, why = c_status()
    if not ok:
        raise SystemExit(f"C kernels unavailable: {why}")
    from qorus_core.kernels.bench import fma_peak

    ck = get_kernels("c")
    ck.set_threads(threads)
    peak = fma_peak(ck, threads)
    rng = np.random.default_rng(0)
    timer = time.thread_time if clock == "thread" and threads == 1 else time.perf_counter
    rows = []
    for name, ta, tb, m, n, k in shapes:
        a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
        c = np.zeros((m, n), np.float32)
        A, B, C = Tensor(a), Tensor(b), Tensor(c)
        aop, bop = (a.T if ta else a), (b.T if tb else b)
        flops = 2.0 * m * n * k
        reps = max(runs, min(200, int(0.05 / (flops / 50e9)) + 1))   # ~50 ms a block

        def q(A=A, B=B, C=C, ta=ta, tb=tb):
            ck.gemm(A, B, C, ta, tb)

        def npy(aop=aop, bop=bop, c=c):
            np.matmul(aop, bop, out=c)

        times: dict[str, list[float]] = {"qorus": [], "numpy": []}
        for _ in range(blocks):
            for label, fn in (("qorus", q), ("numpy", npy)):
                time.sleep(0.25)          # let the other library's spinning workers go idle
                fn()
                for _ in range(reps):
                    t0 = timer()
                    fn()
                    times[label].append(timer() - t0)
        tq, tn = statistics.median(times["qorus"]), statistics.median(times["numpy"])
        rows.append(dict(shape=name, op=("T" if ta else "N") + ("T" if tb else "N"), m=m, n=n,
                         k=k, threads=threads, simd=ck.simd_path, peak_gflops=peak,
                         qorus_gflops=flops / tq / 1e9,
                         numpy_gflops=flops / tn / 1e9, ratio=tn / tq,
                         qorus_best=flops / min(times["qorus"]) / 1e9,
                         numpy_best=flops / min(times["numpy"]) / 1e9))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--runs", type=int, default=7, help="runs per block (at least)")
    ap.add_argument("--blocks", type=int, default=3, help="alternating blocks per library")
    ap.add_argument("--shapes", choices=["all", "mlp", "square"], default="all")
    ap.add_argument("--clock", choices=["wall", "thread"], default="wall",
                    help="thread: CPU time of the calling thread for 1-thread runs")
    ap.add_argument("--simd", nargs="*", default=["auto"],
                    help="SIMD tiers to run (QORUS_SIMD per subprocess), e.g. avx512 avx2")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    shapes = {"all": MLP + SQUARE, "mlp": MLP, "square": SQUARE}[args.shapes]
    if args.worker:
        print(json.dumps(worker(args.worker, args.runs, args.blocks, shapes, args.clock)))
        return
    rows = []
    for t in args.threads:
        for tier in args.simd:
            env = dict(thread_env(t), QORUS_SIMD=tier)
            out = subprocess.run([sys.executable, __file__, "--worker", str(t), "--runs",
                                  str(args.runs), "--blocks", str(args.blocks), "--shapes",
                                  args.shapes, "--clock", args.clock], env=env, check=True,
                                 capture_output=True, text=True)
            rows += json.loads(out.stdout.strip().splitlines()[-1])
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    import numpy as np

    print(f"numpy {np.__version__}; GFLOP/s, median of >= {args.runs} runs x {args.blocks} "
          f"blocks (best run in brackets); {args.clock} clock; higher is better")
    print(f"{'shape':<18} {'op':<3} {'M':>5} {'N':>5} {'K':>5} {'thr':>3} {'simd':>8} "
          f"{'qorus':>14} {'numpy':>14} {'q/np':>5} {'%peak':>6}")
    for r in rows:
        pct = 100.0 * r["qorus_gflops"] / r["peak_gflops"] if r["peak_gflops"] else None
        print(f"{r['shape']:<18} {r['op']:<3} {r['m']:>5} {r['n']:>5} {r['k']:>5} "
              f"{r['threads']:>3} {r['simd']:>8} {r['qorus_gflops']:>6.1f} "
              f"[{r['qorus_best']:>5.1f}] {r['numpy_gflops']:>6.1f} [{r['numpy_best']:>5.1f}] "
              f"{r['ratio']:>5.2f} " + (f"{pct:>5.0f}%" if pct is not None else f"{'-':>6}"))


if __name__ == "__main__":
    main()
