"""Byte-level GPT training (4 layers, d_model 256, 4 heads, T=128, batch 16, vocab 256, AdamW):
tokens/s of Qorus (C kernels) against PyTorch 2.13 eager on the same model, in one run.

    flock /tmp/qorus-bench.lock python bench/bench_gpt.py [--threads 2] [--runs 5] [--profile]

GPT-2 layout on both sides: token + learned position embeddings, pre-LayerNorm blocks with
biased causal attention (no RoPE) and a GELU MLP (4 d), final LayerNorm, head tied to the
token embedding. A step is zero_grad, forward, cross-entropy, backward and one AdamW update.
Each figure is the median of ``--runs`` timed runs after warm-up; ratio > 1: Qorus faster.
``--profile`` adds the seconds per step spent in each kind of Qorus layer (forward and
backward) and in the loss and the optimizer.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict

from harness import (
    TORCH_ROW,
    ce_plan,
    ce_train,
    dump_json,
    import_torch,
    median_rate,
    parse_args,
    print_table,
    result_rows,
)


def _options(ap) -> None:
    ap.add_argument("--kernels", default="c", help="Qorus kernel sets to time, comma-separated")
    ap.add_argument("--profile", action="store_true", help="per-layer time of the Qorus steps")


ARGS = parse_args(__doc__, runs=5, steps=5, add=_options)

import numpy as np  # noqa: E402

from qorus_core import Model, get_kernels  # noqa: E402
from qorus_core.kernels import c_status  # noqa: E402
from qorus_core.train.optimizers import AdamW  # noqa: E402
from qorus_layers_llm import GPT  # noqa: E402

V, D, L, H, T, B = 256, 256, 4, 4, 128, 16
TOKENS = B * T


def qorus_model(kernels: str) -> tuple[Model, AdamW]:
    net = GPT(V, D, L, H, T, positional="learned", norm="layernorm", ffn="gelu",
              tie_embeddings=True)
    model = Model(net, (T,), "i32", seed=0, kernels=get_kernels(kernels))
    return model, AdamW(lr=1e-3).bind(model)


def qorus_case(kernels: str, x: np.ndarray, y: np.ndarray) -> float:
    model, opt = qorus_model(kernels)
    train = ce_train(model, opt, x, y, B, ARGS.steps)

    return median_rate(train, ARGS.steps * TOKENS, ARGS.runs)


def qorus_profile(kernels: str, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Seconds per step by layer kind and direction (timers wrap each planned call)."""
    model, opt = qorus_model(kernels)
    plan, loss = ce_plan(model, x, y, B)
    spent: dict[str, float] = defaultdict(float)

    def timed(fn, key):
        def run(*a):
            t0 = time.perf_counter()
            fn(*a)
            spent[key] += time.perf_counter() - t0
        return run

    def kind(ctx) -> str:
        return ctx.path.split(".")[-1] if ctx.path else "root"

    plan._fwd = [(timed(f, f"fwd {kind(ctx)}"), xx, ctx) for f, xx, ctx in plan._fwd]
    plan._bwd = [(None if f is None else timed(f, f"bwd {kind(ctx)}"), dy, ctx, adds)
                 for f, dy, ctx, adds in plan._bwd]
    steps = max(ARGS.steps, 3)
    for i in range(steps + 1):
        if i == 1:
            spent.clear()
        t0 = time.perf_counter()
        model.zero_grad()
        plan.forward()
        t1 = time.perf_counter()
        loss()
        t2 = time.perf_counter()
        plan.backward()
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        spent["loss"] += t2 - t1
        spent["optimizer (AdamW)"] += t4 - t3
        spent["step total"] += t4 - t0
    return {key: v / steps for key, v in sorted(spent.items(), key=lambda kv: -kv[1])}


def torch_case(x: np.ndarray, y: np.ndarray) -> float | None:
    torch = import_torch(ARGS.threads)
    if torch is None:
        return None
    nn, F = torch.nn, torch.nn.functional

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
            self.qkv, self.o = nn.Linear(D, 3 * D), nn.Linear(D, D)
            self.fc, self.proj = nn.Linear(D, 4 * D), nn.Linear(4 * D, D)

        def forward(self, h):
            q, k, v = self.qkv(self.ln1(h)).view(B, T, 3, H, D // H).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            h = h + self.o(a.transpose(1, 2).reshape(B, T, D))
            return h + self.proj(F.gelu(self.fc(self.ln2(h))))

    class TorchGPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(V, D), nn.Embedding(T, D)
            nn.init.normal_(self.wte.weight, std=0.02)
            nn.init.normal_(self.wpe.weight, std=0.02)
            self.blocks = nn.ModuleList(Block() for _ in range(L))
            self.ln_f = nn.LayerNorm(D)

        def forward(self, ids):
            h = self.wte(ids) + self.wpe.weight[:ids.shape[1]]
            for blk in self.blocks:
                h = blk(h)
            return self.ln_f(h) @ self.wte.weight.T          # tied head

    net = TorchGPT()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x).long(), torch.from_numpy(y).long().reshape(-1)

    def train():
        for _ in range(ARGS.steps):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(xt).reshape(-1, V), yt).backward()
            opt.step()

    return median_rate(train, ARGS.steps * TOKENS, ARGS.runs)


def main() -> int:
    rng = np.random.default_rng(0)
    x = rng.integers(0, V, (B, T)).astype(np.int32)
    y = rng.integers(0, V, (B, T)).astype(np.int32)
    rows: dict[str, float] = {}
    for kernels in ARGS.kernels.split(","):
        if kernels == "c" and not c_status()[0]:
            continue
        rows[f"qorus-{kernels}"] = qorus_case(kernels, x, y)
    ref = torch_case(x, y)
    if ref is not None:
        rows[TORCH_ROW] = ref
    result: dict = {"threads": ARGS.threads, "runs": ARGS.runs, "steps_per_run": ARGS.steps,
                    "model": f"GPT {L} layers, d_model {D}, {H} heads, T={T}, vocab {V}, tied",
                    "batch": B, "optimizer": "AdamW",
                    "rows": result_rows({k: (r,) for k, r in rows.items()}, ("train_tokens_per_s",),
                                        ("ratio_vs_torch",))}
    if ARGS.profile:
        result["profile_s_per_step"] = qorus_profile(ARGS.kernels.split(",")[0], x, y)
    if ARGS.json:
        dump_json(result)
        return 0
    print_table(f"{result['model']}, batch {B}, AdamW, {ARGS.threads} threads, median of "
                f"{ARGS.runs} runs of {ARGS.steps} steps", result["rows"],
                [("train tokens/s", "train_tokens_per_s", 15, 0, "ratio_vs_torch")], missing="row")
    if ARGS.profile:
        prof = result["profile_s_per_step"]
        total = prof["step total"]
        print(f"Qorus profile ({ARGS.kernels.split(',')[0]} kernels), ms per step:")
        for key, s in prof.items():
            print(f"  {key:24} {1e3 * s:8.2f}  {100 * s / total:5.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
