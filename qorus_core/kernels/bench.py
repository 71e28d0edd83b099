"""Kernel measurements behind ``qorus bench kernels``: the machine's FMA peak and memory
bandwidth, and a registry of kernel cases timed on the C kernels, their NumPy twins and PyTorch.

    from qorus_core.kernels.bench import run_benchmarks
    report = run_benchmarks(threads=2, runs=5)       # a dict, printable with format_report

Timing (``time_per_call``): one warm-up call, then ``runs`` blocks of calls (a block lasts about
``block_s``; small kernels are repeated), the median time per call. Every figure is a rate:
GFLOP/s for GEMM and attention, GB/s for the memory-bound kernels (bytes read + written; for
the quantized decode product, bytes of weight read). C/NumPy and C/torch are ratios of those
rates (higher: C faster). Implementations run one after the other (all C cases, then NumPy,
then torch, with a pause between), so one library's idle spinning threads never steal the
other's cores. On an AVX-512 host the C cases also run with the AVX2 tier forced (column
"C avx2", ratio "C/avx2"): the two SIMD tiers side by side in one run.

Machine: the FMA peak is the C probe ``qr_fma_peak_f32`` (independent FMA chains as wide as the
widest SIMD tier in effect, on every pool thread), best of 5, at 1 thread and at the requested
count; without the C library it falls back to numpy.matmul of 1024-square matrices (a lower
bound, flagged in ``peak_source``). The bandwidth is the best of 5 read passes over 256 MiB
(the C ``sumsq`` kernel and a NumPy dot), in GB/s.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..tensor import Tensor

__all__ = ["Case", "cases", "time_per_call", "fma_peak", "bandwidth", "run_benchmarks",
           "format_report", "IMPLS"]

IMPLS = ("c", "numpy", "torch")
BW_BYTES = 256 << 20          # the bandwidth buffer: well beyond the L3
COLD_BYTES = 96 << 20         # quantized weights cycled so each call streams from memory


# ----------------------------------------------------------------------------- timing
def time_per_call(fn: Callable[[], object], runs: int = 5, block_s: float = 0.02,
                  max_reps: int = 1000) -> float:
    """Median seconds per call of ``fn`` over ``runs`` blocks (after one warm-up call); a block
    repeats ``fn`` so that it lasts about ``block_s``."""
    fn()                                        # warm-up: page faults, pool start, caches
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    reps = max(1, min(max_reps, int(block_s / once)))
    times = []
    for _ in range(max(1, runs)):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        times.append((time.perf_counter() - t0) / reps)
    return statistics.median(times)


def best_time(fn: Callable[[], object], reps: int = 5) -> float:
    """Shortest of ``reps`` single calls, in seconds (for bandwidth: the least-disturbed pass)."""
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


# ----------------------------------------------------------------------------- machine
def fma_peak(ck, threads: int, seconds: float = 0.05) -> float | None:
    """GFLOP/s of the C FMA probe on ``threads`` pool threads (best of 5 calls of about
    ``seconds``), or None when the C library lacks it. The thread count is restored."""
    before = ck.threads
    ck.set_threads(threads)
    try:
        if ck.fma_peak(0) is None:
            return None
        probe = 20000
        t0 = time.perf_counter()
        ck.fma_peak(probe)
        dt = max(time.perf_counter() - t0, 1e-6)
        iters = max(probe, int(probe * seconds / dt))
        best = 0.0
        for _ in range(5):
            t0 = time.perf_counter()
            flops = ck.fma_peak(iters)
            best = max(best, flops / (time.perf_counter() - t0) / 1e9)
        return best
    finally:
        ck.set_threads(before)


def _numpy_peak(quick: bool) -> float:
    n = 256 if quick else 1024
    a = np.ones((n, n), np.float32)
    c = np.empty_like(a)
    np.matmul(a, a, out=c)
    return 2.0 * n ** 3 / best_time(lambda: np.matmul(a, a, out=c)) / 1e9


def bandwidth(ck=None) -> dict:
    """Read bandwidth in GB/s: best of 5 passes over 256 MiB with numpy.dot and (when ``ck``
    is given) the C sumsq kernel; ``best`` is the larger."""
    a = np.ones(BW_BYTES // 4, np.float32)
    out = {"numpy_dot": a.nbytes / best_time(lambda: np.dot(a, a)) / 1e9}
    if ck is not None:
        ta = Tensor(a)
        ck.sumsq(ta)
        out["c_sumsq"] = a.nbytes / best_time(lambda: ck.sumsq(ta)) / 1e9
    out["best"] = max(out.values())
    return out


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ----------------------------------------------------------------------------- cases
@dataclass
class Case:
    """One measured kernel at one size: ``work`` flops (unit GFLOP/s) or bytes (GB/s) a call;
    ``make(impl)`` builds the call for impl in IMPLS (None: that implementation has none)."""

    kernel: str
    case: str
    size: str
    unit: str
    work: float
    make: Callable[[str], Callable[[], object] | None]
    notes: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        """``"<kernel> <case>"``, the row label of the report."""
        return f"{self.kernel} {self.case}"


def _rng():
    return np.random.default_rng(0)


def _gemm_case(label: str, ta: bool, tb: bool, m: int, n: int, k: int, ks: dict) -> Case:
    op = ("T" if ta else "N") + ("T" if tb else "N")

    def make(impl: str):
        rng = _rng()
        a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
        c = np.zeros((m, n), np.float32)
        if impl == "torch":
            torch = ks["torch"]
            at, bt, ct = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c)
            at, bt = (at.T if ta else at), (bt.T if tb else bt)
            return lambda: torch.matmul(at, bt, out=ct)
        kern = ks[impl]
        A, B, C = Tensor(a), Tensor(b), Tensor(c)
        return lambda: kern.gemm(A, B, C, ta, tb)

    return Case("gemm", f"{label} {op}", f"M{m} N{n} K{k}", "GFLOP/s", 2.0 * m * n * k, make)


def _quant_case(qtype: str, k: int, n: int, ks: dict, cold: bool) -> Case:
    from .numpy_quant import QWeight, row_bytes

    nbytes = n * row_bytes(qtype, k)

    def make(impl: str):
        if impl == "torch":
            return None                         # torch has no ggml-format product
        kern = ks[impl]
        rng = _rng()
        w = QWeight.empty(qtype, n, k)
        ks["numpy"].quantize(Tensor(rng.standard_normal((n, k)).astype(np.float32)), w, qtype)
        copies = max(1, -(-COLD_BYTES // nbytes)) if cold else 1
        pool = np.empty((copies, nbytes), np.uint8)
        pool[:] = w.a
        ws = [QWeight(pool[i], qtype, n, k) for i in range(copies)]
        x = Tensor(rng.standard_normal((1, k)).astype(np.float32))
        y = Tensor(np.zeros((1, n), np.float32))
        it = iter(())

        def call():                             # cycles over the copies: each streams from DRAM
            nonlocal it
            wi = next(it, None)
            if wi is None:
                it = iter(ws)
                wi = next(it)
            kern.matmul_q(x, wi, y)
        return call

    where = "cold" if cold else "hot"
    return Case("matmul_q", f"{qtype} decode M=1", f"K{k} N{n} ({where})", "GB/s", nbytes, make,
                notes={"weight_bytes": nbytes})


def _attention_case(B: int, T: int, H: int, D: int, ks: dict) -> Case:
    def make(impl: str):
        rng = _rng()
        q, k, v = (rng.standard_normal((B, T, H, D), dtype=np.float32) for _ in range(3))
        if impl == "torch":
            torch = ks["torch"]
            F = torch.nn.functional
            qt, kt, vt = (torch.from_numpy(a).transpose(1, 2) for a in (q, k, v))

            def tf():
                with torch.no_grad():
                    return F.scaled_dot_product_attention(qt, kt, vt, is_causal=True)
            return tf
        kern = ks[impl]
        Q, K, V = Tensor(q), Tensor(k), Tensor(v)
        O, L = Tensor(np.zeros_like(q)), Tensor(np.zeros((B, H, T), np.float32))
        return lambda: kern.attention(Q, K, V, O, L, None, H, H, True)

    flops = 2.0 * B * H * T * T * D             # QK^T and PV, causal half of 4 B H T^2 D
    return Case("attention", "fwd causal", f"B{B} T{T} H{H} D{D}", "GFLOP/s", flops, make)


def _rope_case(B: int, T: int, H: int, D: int, ks: dict) -> Case:
    def make(impl: str):
        x = _rng().standard_normal((B, T, H, D), dtype=np.float32)
        if impl == "torch":
            torch = ks["torch"]
            inv = 1.0 / (10000.0 ** (torch.arange(0, D, 2, dtype=torch.float32) / D))
            ang = torch.outer(torch.arange(T, dtype=torch.float32), inv)
            c = torch.cat([ang.cos(), ang.cos()], -1)[None, :, None, :]
            s = torch.cat([ang.sin(), ang.sin()], -1)[None, :, None, :]
            xt = torch.from_numpy(x)
            return lambda: xt * c + torch.cat([-xt[..., D // 2:], xt[..., :D // 2]], -1) * s
        kern = ks[impl]
        X, Y = Tensor(x), Tensor(np.zeros_like(x))
        return lambda: kern.rope(X, Y, 0, 10000.0, True)

    return Case("rope", "half-split", f"{B}x{T}x{H}x{D}", "GB/s", 2.0 * 4 * B * T * H * D, make)


def _rowwise_cases(R: int, N: int, ks: dict) -> list[Case]:
    size = f"{R}x{N}"
    n = R * N

    def arrays(count: int):
        rng = _rng()
        return [rng.standard_normal((R, N), dtype=np.float32) for _ in range(count)]

    def swiglu(impl: str):
        g, u, y = arrays(3)
        if impl == "torch":
            torch = ks["torch"]
            gt, ut, yt = (torch.from_numpy(a) for a in (g, u, y))
            return lambda: torch.mul(torch.nn.functional.silu(gt), ut, out=yt)
        kern = ks[impl]
        G, U, Y = Tensor(g), Tensor(u), Tensor(y)
        return lambda: kern.swiglu(G, U, Y)

    def softmax(impl: str):
        x, y = arrays(2)
        if impl == "torch":
            torch = ks["torch"]
            xt = torch.from_numpy(x)
            return lambda: torch.softmax(xt, -1)
        kern = ks[impl]
        X, Y = Tensor(x), Tensor(y)
        return lambda: kern.softmax(X, Y)

    def layernorm(impl: str):
        x, y = arrays(2)
        gamma, beta = np.ones(N, np.float32), np.zeros(N, np.float32)
        if impl == "torch":
            torch = ks["torch"]
            xt = torch.from_numpy(x)
            gt, bt = torch.from_numpy(gamma), torch.from_numpy(beta)
            return lambda: torch.nn.functional.layer_norm(xt, (N,), gt, bt, 1e-5)
        kern = ks[impl]
        X, Y, Gm, Bt = Tensor(x), Tensor(y), Tensor(gamma), Tensor(beta)
        mean, rstd = Tensor(np.zeros(R, np.float32)), Tensor(np.zeros(R, np.float32))
        return lambda: kern.layernorm(X, Gm, Bt, Y, mean, rstd, 1e-5)

    def gelu(impl: str):
        x, y = arrays(2)
        if impl == "torch":
            torch = ks["torch"]
            xt = torch.from_numpy(x)
            return lambda: torch.nn.functional.gelu(xt)
        kern = ks[impl]
        X, Y = Tensor(x), Tensor(y)
        return lambda: kern.gelu(X, Y, False)

    return [Case("swiglu", "fwd", size, "GB/s", 3.0 * 4 * n, swiglu),
            Case("softmax", "rows", size, "GB/s", 2.0 * 4 * n, softmax),
            Case("layernorm", "fwd", size, "GB/s", 2.0 * 4 * n, layernorm),
            Case("gelu", "exact (erf)", size, "GB/s", 2.0 * 4 * n, gelu)]


MLP_SHAPES = [   # the MLP 784-512-256-10 at batch 128: forward, weight and input gradients
    ("mlp fc1 fwd", False, True, 128, 512, 784),
    ("mlp fc1 dW", True, False, 512, 784, 128),
    ("mlp fc1 dX", False, False, 128, 784, 512),
    ("mlp fc2 fwd", False, True, 128, 256, 512),
    ("mlp fc2 dW", True, False, 256, 512, 128),
    ("mlp fc2 dX", False, False, 128, 512, 256),
]


def cases(ks: dict, quick: bool = False) -> list[Case]:
    """The registry. ``ks`` maps "c" / "numpy" / "torch" to a kernel set (or the torch module);
    ``quick`` keeps every size small (a few seconds in all)."""
    out: list[Case] = []
    for n in ((64, 128) if quick else (256, 1024, 2048)):
        out.append(_gemm_case(f"square {n}", False, False, n, n, n, ks))
    for label, ta, tb, m, n, k in (MLP_SHAPES[:1] if quick else MLP_SHAPES):
        out.append(_gemm_case(label, ta, tb, m, n, k, ks))
    qk, qn = (256, 1024) if quick else (2048, 8192)
    for qt in ("q4_0", "q8_0"):
        out.append(_quant_case(qt, qk, qn, ks, cold=not quick))
    if quick:
        out.append(_attention_case(2, 32, 2, 32, ks))
        out.append(_rope_case(2, 32, 2, 32, ks))
        out += _rowwise_cases(64, 128, ks)
    else:
        out.append(_attention_case(16, 128, 4, 64, ks))
        out.append(_rope_case(16, 128, 4, 64, ks))
        out += _rowwise_cases(16 * 128, 256, ks)
    return out


# ----------------------------------------------------------------------------- running
def _blas_limit(threads: int):
    """A context limiting NumPy's BLAS to ``threads`` (threadpoolctl when installed)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib
        return contextlib.nullcontext(), False
    return threadpool_limits(limits=threads, user_api="blas"), True


def _extra_tiers(ck, tiers) -> list[str]:
    """The SIMD tiers timed beside the one in effect: ``tiers`` as given, or by default avx2
    where the tier in effect is avx512. Each is tried first, so a tier this CPU or build
    cannot run raises (SimdTierError, naming why) before anything is timed."""
    if ck is None:
        return []
    if tiers is None:
        tiers = ["avx2"] if ck.simd_path == "avx512" else []
    now = ck.simd_path
    try:
        for t in tiers:
            ck.set_simd_path(t)
    finally:
        if tiers:
            ck.set_simd_path("auto")        # as after each tier's run below
    return [t for t in tiers if t != now]


def run_benchmarks(threads: int | None = None, runs: int = 5, quick: bool = False,
                   filter: str = "", torch: bool = True,
                   tiers: list[str] | None = None) -> dict:
    """Measure the machine and every case whose name contains ``filter``; a JSON-ready dict.
    ``tiers``: SIMD tiers to time the C cases under as well (default: avx2 on an AVX-512
    host); a tier this CPU lacks raises KernelError."""
    from . import NumpyKernels, c_status, get_kernels
    from .info import backend_info

    info = backend_info()
    ok, reason = c_status()
    ck = None
    if ok and get_kernels().name == "c":
        ck = get_kernels("c")
        c_reason = None
    else:
        c_reason = reason if not ok else (
            f"QORUS_KERNELS={os.environ.get('QORUS_KERNELS', '')} selects the NumPy kernels")
    nthreads = int(threads) if threads and threads > 0 else info["threads"]
    before = ck.threads if ck is not None else None
    tmod, torch_reason = None, "disabled (--no-torch)"
    if torch:
        try:
            import torch as tmod
            torch_reason = None
        except ImportError as exc:
            tmod, torch_reason = None, f"not importable: {exc}"
    tthreads = None
    if tmod is not None:
        tthreads = tmod.get_num_threads()
        tmod.set_num_threads(nthreads)
    block_s = 0.002 if quick else 0.02
    limit, blas_limited = _blas_limit(nthreads)
    try:
        with limit:
            if ck is not None:
                ck.set_threads(nthreads)
            machine = _machine(info, ck, nthreads, quick, c_reason)
            machine["numpy_blas_threads"] = nthreads if blas_limited else None
            machine["torch"] = getattr(tmod, "__version__", None)
            machine["torch_threads"] = nthreads if tmod is not None else None
            machine["torch_reason"] = torch_reason
            ks = {"c": ck, "numpy": NumpyKernels(), "torch": tmod}
            todo = [c for c in cases(ks, quick) if filter.lower() in c.name.lower()]
            rates: dict[str, dict[str, float | None]] = {c.name: {} for c in todo}
            extra = _extra_tiers(ck, tiers)
            runs_of = [("c", "c", None)] + [("c", f"c_{t}", t) for t in extra] + \
                [(i, i, None) for i in IMPLS[1:]]
            for impl, col, tier in runs_of:   # one at a time: no thread contention
                if ks[impl] is None:
                    continue
                if tier is not None:
                    ck.set_simd_path(tier)
                time.sleep(0.0 if quick else 0.3)   # the previous library's spinners go idle
                try:
                    for case in todo:
                        fn = case.make(impl)
                        if fn is None:
                            continue
                        with np.errstate(all="ignore"):
                            t = time_per_call(fn, runs, block_s)
                        rates[case.name][col] = case.work / t / 1e9
                        del fn
                finally:
                    if tier is not None:
                        ck.set_simd_path("auto")
    finally:
        if ck is not None:
            ck.set_threads(before)
        if tmod is not None and tthreads:
            tmod.set_num_threads(tthreads)
    rows = []
    peak = machine["fma_peak_gflops"]
    for case in todo:
        r = rates[case.name]
        c, n, t = r.get("c"), r.get("numpy"), r.get("torch")
        row = {"kernel": case.kernel, "case": case.case, "size": case.size, "unit": case.unit,
               "c": c, "numpy": n, "torch": t,
               "c_vs_numpy": c / n if c and n else None,
               "c_vs_torch": c / t if c and t else None}
        for tier in extra:
            ct = r.get(f"c_{tier}")
            row[f"c_{tier}"] = ct
            row[f"c_vs_c_{tier}"] = c / ct if c and ct else None
            if case.kernel == "gemm":
                row[f"c_{tier}_pct_peak"] = 100.0 * ct / peak if ct and peak else None
        if case.kernel == "gemm":
            row["c_pct_peak"] = 100.0 * c / peak if c and peak else None
            row["numpy_pct_peak"] = 100.0 * n / peak if n and peak else None
        if case.kernel == "matmul_q":
            bw = machine["bandwidth_gbs"]
            row["c_pct_bandwidth"] = 100.0 * c / bw if c and bw else None
        row.update(case.notes)
        rows.append(row)
    return {"machine": machine, "runs": runs, "quick": quick, "filter": filter,
            "c_available": ck is not None, "c_reason": c_reason, "tiers": extra, "rows": rows}


def _machine(info: dict, ck, nthreads: int, quick: bool, c_reason: str | None) -> dict:
    seconds = 0.01 if quick else 0.05
    peak1 = peakn = None
    if ck is not None:
        peak1 = fma_peak(ck, 1, seconds)
        peakn = peak1 if nthreads == 1 else fma_peak(ck, nthreads, seconds)
    if peakn is not None:
        source = f"C FMA probe ({ck.simd_path})"
    else:
        source = (f"numpy.matmul lower bound (C probe unavailable: "
                  f"{c_reason or 'library predates peak.c'})")
        peak1 = None
        peakn = _numpy_peak(quick)
    bw = bandwidth(ck)
    return {"cpu_model": _cpu_model(),
            "cpu_features": sorted(k for k, v in info["cpu"].items() if v),
            "simd": ck.simd_path if ck is not None else "none",
            "simd_families": ck.simd_families() if ck is not None else {},
            "threads": nthreads, "numpy": np.__version__, "numpy_blas": info["numpy_blas"],
            "fma_peak_gflops_1t": peak1, "fma_peak_gflops": peakn, "peak_source": source,
            "bandwidth_gbs": bw["best"], "bandwidth_detail": bw}


# ----------------------------------------------------------------------------- printing
def _f(v: float | None, w: int, fmt: str = ".1f") -> str:
    return f"{'-':>{w}}" if v is None else f"{v:>{w}{fmt}}"


def _x(v: float | None) -> str:
    return f"{'-':>8}" if v is None else f"{v:>7.2f}x"


def format_report(rep: dict) -> str:
    """The report as text: the machine line (FMA peak, read bandwidth), then one line per kernel
    case."""
    m = rep["machine"]
    p1 = m["fma_peak_gflops_1t"]
    lines = [
        f"machine: {m['cpu_model']} [{' '.join(m['cpu_features'])}], simd {m['simd']}, "
        f"{m['threads']} threads; FMA peak "
        + (f"{p1:.1f} GFLOP/s (1 thread), " if p1 is not None else "")
        + f"{m['fma_peak_gflops']:.1f} GFLOP/s ({m['threads']} threads) [{m['peak_source']}]; "
        f"read bandwidth {m['bandwidth_gbs']:.1f} GB/s (256 MiB, best of 5)",
        f"numpy {m['numpy']} ({m['numpy_blas'] or 'BLAS ?'}, "
        f"{m['numpy_blas_threads'] or 'default'} threads); torch "
        + (f"{m['torch']} ({m['torch_threads']} threads)" if m["torch"] else
           f"- ({m['torch_reason']})")
        + f"; median of {rep['runs']} runs" + (" (quick sizes)" if rep["quick"] else ""),
    ]
    if not rep["c_available"]:
        lines.append(f"C kernels unavailable: {rep['c_reason']}")
    extra = rep.get("tiers", [])
    hdr = (f"{'kernel':<10} {'case':<18} {'size':<22} {'unit':<8} {'C':>8} "
           + "".join(f"{'C ' + t:>9} " for t in extra)
           + f"{'NumPy':>8} {'torch':>8} {'C/NumPy':>8} {'C/torch':>8} "
           + "".join(f"{'C/' + t:>8} " for t in extra) + f"{'note':>12}")
    lines += [f"C: SIMD tier {m['simd']}" + (f"; C {', '.join(extra)}: the same cases with that "
                                              "tier forced" if extra else ""),
              hdr, "-" * len(hdr)]
    for r in rep["rows"]:
        note = ""
        if r.get("c_pct_peak") is not None:
            note = f"{r['c_pct_peak']:.0f}% peak"
        elif r.get("c_pct_bandwidth") is not None:
            note = f"{r['c_pct_bandwidth']:.0f}% bw"
        lines.append(f"{r['kernel']:<10} {r['case']:<18} {r['size']:<22} {r['unit']:<8} "
                     f"{_f(r['c'], 8)} " + "".join(f"{_f(r.get('c_' + t), 9)} " for t in extra)
                     + f"{_f(r['numpy'], 8)} {_f(r['torch'], 8)} "
                     f"{_x(r['c_vs_numpy'])} {_x(r['c_vs_torch'])} "
                     + "".join(f"{_x(r.get('c_vs_c_' + t))} " for t in extra)
                     + f"{note:>12}")
    return "\n".join(lines)
