"""MLP 784-512-256-10, batch 128, AdamW: training steps/s and batch-1 inference latency,
Qorus (C and NumPy kernels) against PyTorch 2.13 eager, in one run, same thread count.

    python bench/bench_mlp.py [--threads 2] [--runs 7] [--json]

Each figure is the median of ``--runs`` timed runs (after warm-up); ratios > 1 mean Qorus is
faster. Set before NumPy/torch load, the thread count applies to every library.
"""

from __future__ import annotations

import sys

from harness import (
    TORCH_ROW,
    ce_train,
    dump_json,
    import_torch,
    median_rate,
    parse_args,
    print_table,
    result_rows,
)

ARGS = parse_args(__doc__, runs=7, steps=30, add=lambda ap: ap.add_argument(
    "--calls", type=int, default=300, help="inference calls per timed run"))

import numpy as np  # noqa: E402

from qorus_core import Model, Sequential, get_kernels  # noqa: E402
from qorus_core.kernels import c_status  # noqa: E402
from qorus_core.train.optimizers import AdamW  # noqa: E402
from qorus_layers_mlp import Linear, ReLU  # noqa: E402

SIZES, BATCH = (784, 512, 256, 10), 128


def qorus_case(kernels: str, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    net = Sequential([Linear(SIZES[0], SIZES[1]), ReLU(), Linear(None, SIZES[2]), ReLU(),
                      Linear(None, SIZES[3])])
    model = Model(net, (SIZES[0],), kernels=get_kernels(kernels))
    train = ce_train(model, AdamW(lr=1e-3).bind(model), x, y, BATCH, ARGS.steps)

    one = model.plan(1, train=False)
    one.x.a[...] = x[:1]

    def infer():
        for _ in range(ARGS.calls):
            one.forward()

    return median_rate(train, ARGS.steps, ARGS.runs), median_rate(infer, ARGS.calls, ARGS.runs)


def torch_case(x: np.ndarray, y: np.ndarray) -> tuple[float, float] | None:
    torch = import_torch(ARGS.threads)
    if torch is None:
        return None
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
        rows[TORCH_ROW] = ref
    result = {"threads": ARGS.threads, "runs": ARGS.runs, "model": "784-512-256-10 ReLU",
              "batch": BATCH, "optimizer": "AdamW",
              "rows": result_rows(rows, ("train_steps_per_s", "infer_batch1_us"),
                                  ("train_ratio_vs_torch", "infer_speedup_vs_torch"),
                                  (float, lambda i: 1e6 / i))}
    if ARGS.json:
        dump_json(result)
        return 0
    print_table(f"MLP {result['model']}, batch {BATCH}, AdamW, {ARGS.threads} threads, "
                f"median of {ARGS.runs} runs", result["rows"],
                [("train steps/s", "train_steps_per_s", 14, 1, "train_ratio_vs_torch"),
                 ("infer b=1 us", "infer_batch1_us", 13, 1, "infer_speedup_vs_torch")])
    return 0

if __name__ == "__main__":
    sys.exit(main())
