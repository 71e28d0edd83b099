"""Quantized matmul (y = x @ W^T, W in Q4_0 / Q4_1 / Q8_0 / F16): weight bytes read per second
against this machine's measured memory bandwidth.

    python bench/bench_quant.py                  # 1 and 2 threads, median of 15 runs
    python bench/bench_quant.py --threads 2 --runs 31 --json

Each thread count runs in its own subprocess with QORUS_NUM_THREADS and the BLAS thread
variables set to it, so NumPy's BLAS threads never compete with the Qorus pool.

Bandwidth (best of 5 over 512 MiB): a NumPy copy (bytes read + written), a NumPy dot of the
buffer with itself (read, NumPy's BLAS) and the C library's sum of squares (read, on the thread
count being measured); the largest read figure is "the bandwidth" the products are judged
against. Decode shapes (M = 1) run two ways: "hot", one weight called again and again (it may
sit in the 32 MiB L3), and "cold", cycling over copies of the weight that add up to >= 256 MiB,
so every call streams it from memory (median per call): the figure to hold against the bandwidth
(target >= 80%). "% of bw" divides the median cold rate by the best read bandwidth; "paired %"
is the median, over rounds, of (cold rate / a read-bandwidth pass timed just before it on the
same threads), which stays meaningful when other processes share the machine.
A prompt shape (M = 64) is reported in GFLOP/s beside numpy.matmul of the
dequantized float32 weight.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
from harness import thread_env

from qorus_core.kernels import NumpyKernels, get_kernels
from qorus_core.kernels.bench import best_time
from qorus_core.kernels.numpy_quant import QWeight
from qorus_core.tensor import Tensor

DECODE = [(576, 1536), (2048, 8192)]          # (K, N): a small model's FFN, a 7B-class FFN
PROMPT = [(64, 2048, 2048)]                   # (M, K, N)
QTYPES = ["q4_0", "q4_1", "q8_0", "f16"]
COLD_BYTES = 256 << 20


def bandwidth(ck, threads: int) -> dict:
    a = np.ones((512 << 20) // 4, np.float32)
    b = np.empty_like(a)
    ta = Tensor(a)
    ck.set_threads(threads)
    out = {
        "numpy_copy_GBs": 2 * a.nbytes / best_time(lambda: np.copyto(b, a)) / 1e9,
        "numpy_dot_read_GBs": a.nbytes / best_time(lambda: np.dot(a, a)) / 1e9,
        "c_sumsq_read_GBs": a.nbytes / best_time(lambda: ck.sumsq(ta)) / 1e9,
    }
    time.sleep(0.5)   # let the BLAS threads of np.dot stop spinning before Qorus runs
    return out


def _median_time(fn, runs: int) -> float:
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def decode(ck, qtype: str, k: int, n: int, runs: int, bwbuf: Tensor) -> dict:
    rng = np.random.default_rng(0)
    w = QWeight.empty(qtype, n, k)
    ck.quantize(Tensor(rng.standard_normal((n, k)).astype(np.float32)), w, qtype)
    x = Tensor(rng.standard_normal((1, k)).astype(np.float32))
    y = Tensor(np.zeros((1, n), np.float32))
    copies = max(2, -(-COLD_BYTES // w.nbytes))
    pool = np.empty((copies, w.nbytes), np.uint8)
    pool[:] = w.a
    ws = [QWeight(pool[i], qtype, n, k) for i in range(copies)]
    for _ in range(3):
        ck.matmul_q(x, w, y)
    hot = _median_time(lambda: ck.matmul_q(x, w, y), max(runs, 50))

    def sweep() -> list[float]:   # one call per copy, each timed
        ts = []
        for wi in ws:
            t = time.perf_counter()
            ck.matmul_q(x, wi, y)
            ts.append(time.perf_counter() - t)
        return ts

    cold, ratio = [], []
    for _ in range(runs):   # each round: one read-bandwidth pass, then one sweep over the copies
        t = time.perf_counter()
        ck.sumsq(bwbuf)
        t_bw = time.perf_counter() - t
        ts = sweep()
        cold += ts
        ratio.append((w.nbytes / float(np.median(ts))) / (4 * bwbuf.size / t_bw))
    c = float(np.median(cold))
    return {"qtype": qtype, "M": 1, "K": k, "N": n, "weight_bytes": w.nbytes,
            "hot_us": hot * 1e6, "hot_GBs": w.nbytes / hot / 1e9,
            "cold_us": c * 1e6, "cold_GBs": w.nbytes / c / 1e9,
            "paired_pct": 100.0 * float(np.median(ratio))}


def prompt(ck, qtype: str, m: int, k: int, n: int, runs: int) -> dict:
    rng = np.random.default_rng(1)
    w = QWeight.empty(qtype, n, k)
    ck.quantize(Tensor(rng.standard_normal((n, k)).astype(np.float32)), w, qtype)
    wd = Tensor(np.zeros((n, k), np.float32))
    NumpyKernels().dequantize(w, wd)
    x = Tensor(rng.standard_normal((m, k)).astype(np.float32))
    y = Tensor(np.zeros((m, n), np.float32))
    wt = wd.a.T
    ck.matmul_q(x, w, y)
    t = _median_time(lambda: ck.matmul_q(x, w, y), runs)
    tn = _median_time(lambda: np.matmul(x.a, wt), runs)
    flop = 2.0 * m * n * k
    return {"qtype": qtype, "M": m, "K": k, "N": n, "us": t * 1e6, "GFLOPs": flop / t / 1e9,
            "numpy_f32_GFLOPs": flop / tn / 1e9}


def worker(nt: int, runs: int, qtypes: list[str]) -> dict:
    """Everything for one thread count (run in a subprocess with the BLAS threads set)."""
    ck = get_kernels("c")
    ck.set_threads(nt)
    bwbuf = Tensor(np.ones(COLD_BYTES // 4, np.float32))
    bw = bandwidth(ck, nt)
    rows = [decode(ck, q, k, n, runs, bwbuf) for q in qtypes for k, n in DECODE]
    prows = [prompt(ck, q, m, k, n, runs) for q in qtypes for m, k, n in PROMPT]
    return {"threads_in_effect": ck.threads, "simd": ck.simd_path, "bandwidth": bw,
            "decode": rows, "prompt": prows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--runs", type=int, default=15, help="runs per figure (median), >= 5")
    ap.add_argument("--qtypes", nargs="*", default=QTYPES)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    runs = max(5, args.runs)
    if args.worker:
        json.dump(worker(args.worker, runs, args.qtypes), sys.stdout)
        return
    report = {"runs": runs, "threads": {}}
    for nt in args.threads:
        env = thread_env(nt)
        out = subprocess.run([sys.executable, __file__, "--worker", str(nt), "--runs", str(runs),
                              "--qtypes", *args.qtypes], env=env, check=True,
                             stdout=subprocess.PIPE, text=True).stdout
        report["threads"][nt] = json.loads(out)
    report["simd"] = next(iter(report["threads"].values()))["simd"]
    best_bw = max(max(v["bandwidth"]["numpy_dot_read_GBs"], v["bandwidth"]["c_sumsq_read_GBs"])
                  for v in report["threads"].values())
    report["bandwidth_GBs"] = best_bw
    for v in report["threads"].values():
        for r in v["decode"]:
            r["cold_pct_of_bandwidth"] = 100.0 * r["cold_GBs"] / best_bw
    if args.json:
        json.dump(report, sys.stdout, indent=1)
        print()
        return
    print(f"C kernels: simd={report['simd']}, median of {runs} runs; machine bandwidth "
          f"(best read figure) {best_bw:.1f} GB/s")
    for v in report["threads"].values():
        b = v["bandwidth"]
        print(f"\n== threads: {v['threads_in_effect']}   bandwidth: numpy copy "
              f"{b['numpy_copy_GBs']:.1f} GB/s (read+write), numpy dot {b['numpy_dot_read_GBs']:.1f}"
              f" GB/s, C sumsq {b['c_sumsq_read_GBs']:.1f} GB/s (read)")
        print(f"{'qtype':6} {'K':>5} {'N':>5} {'MiB':>6} {'hot us':>8} {'hot GB/s':>9} "
              f"{'cold us':>8} {'cold GB/s':>9} {'% of bw':>8} {'paired %':>9}")
        for r in v["decode"]:
            print(f"{r['qtype']:6} {r['K']:5d} {r['N']:5d} {r['weight_bytes'] / 2**20:6.2f} "
                  f"{r['hot_us']:8.1f} {r['hot_GBs']:9.1f} {r['cold_us']:8.1f} "
                  f"{r['cold_GBs']:9.1f} {r['cold_pct_of_bandwidth']:7.0f}% "
                  f"{r['paired_pct']:8.0f}%")
        for r in v["prompt"]:
            print(f"prompt {r['qtype']:5} M={r['M']} K={r['K']} N={r['N']}: {r['GFLOPs']:.1f} "
                  f"GFLOP/s (numpy.matmul f32 of the dequantized weight, same threads: "
                  f"{r['numpy_f32_GFLOPs']:.1f})")


if __name__ == "__main__":
    main()
