"""Small CNN on 28x28 images, batch 128, AdamW: training steps/s and forward-only batches/s,
Qorus (C kernels) against PyTorch 2.13 eager, in one run, same thread count.

    flock /tmp/qorus-bench.lock python bench/bench_cnn.py [--threads 2] [--runs 5] [--json]

The network is examples/fashion_cnn.toml's (without its dropout): Conv(1->32, 3x3, pad 1, no
bias) BN ReLU MaxPool(2), Conv(32->64, 3x3, pad 1, no bias) BN ReLU MaxPool(2), Flatten,
Linear(3136->128) ReLU, Linear(10).
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

ARGS = parse_args(__doc__, runs=5, steps=10, add=lambda ap: ap.add_argument(
    "--numpy", action="store_true", help="also time the NumPy kernels (slow)"))

import numpy as np  # noqa: E402

from qorus_core import Model, Sequential, get_kernels  # noqa: E402
from qorus_core.kernels import c_status  # noqa: E402
from qorus_core.train.optimizers import AdamW  # noqa: E402

BATCH = 128
NET = [
    {"type": "cnn.Conv2d", "out_channels": 32, "kernel_size": 3, "padding": 1, "bias": False},
    {"type": "cnn.BatchNorm2d"}, {"type": "mlp.ReLU"}, {"type": "cnn.MaxPool2d", "kernel_size": 2},
    {"type": "cnn.Conv2d", "out_channels": 64, "kernel_size": 3, "padding": 1, "bias": False},
    {"type": "cnn.BatchNorm2d"}, {"type": "mlp.ReLU"}, {"type": "cnn.MaxPool2d", "kernel_size": 2},
    {"type": "cnn.Flatten"}, {"type": "mlp.Linear", "out_features": 128}, {"type": "mlp.ReLU"},
    {"type": "mlp.Linear", "out_features": 10},
]


def qorus_case(kernels: str, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    model = Model(Sequential(NET), (1, 28, 28), kernels=get_kernels(kernels))
    train = ce_train(model, AdamW(lr=1e-3).bind(model), x, y, BATCH, ARGS.steps)

    infer_plan = model.plan(BATCH, train=False)
    infer_plan.x.a[...] = x

    def infer():
        for _ in range(ARGS.steps):
            infer_plan.forward()

    return median_rate(train, ARGS.steps, ARGS.runs), median_rate(infer, ARGS.steps, ARGS.runs)


def torch_case(x: np.ndarray, y: np.ndarray) -> tuple[float, float] | None:
    torch = import_torch(ARGS.threads)
    if torch is None:
        return None
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1, bias=False),
                        nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()

    def train():
        net.train()
        for _ in range(ARGS.steps):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(xt), yt).backward()
            opt.step()

    def infer():
        net.eval()
        with torch.inference_mode():
            for _ in range(ARGS.steps):
                net(xt)

    return median_rate(train, ARGS.steps, ARGS.runs), median_rate(infer, ARGS.steps, ARGS.runs)


def main() -> int:
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, BATCH).astype(np.int32)
    rows = {}
    if c_status()[0]:
        rows["qorus-c"] = qorus_case("c", x, y)
    if ARGS.numpy or not rows:
        rows["qorus-numpy"] = qorus_case("numpy", x, y)
    ref = torch_case(x, y)
    if ref is not None:
        rows[TORCH_ROW] = ref
    result = {"threads": ARGS.threads, "runs": ARGS.runs, "steps_per_run": ARGS.steps,
              "model": "conv32-bn-pool conv64-bn-pool fc128 fc10", "batch": BATCH,
              "optimizer": "AdamW",
              "rows": result_rows(rows, ("train_steps_per_s", "forward_batches_per_s"),
                                  ("train_ratio_vs_torch", "forward_ratio_vs_torch"))}
    if ARGS.json:
        dump_json(result)
        return 0
    print_table(f"CNN {result['model']}, batch {BATCH}, AdamW, {ARGS.threads} threads, "
                f"median of {ARGS.runs} runs of {ARGS.steps} steps", result["rows"],
                [("train steps/s", "train_steps_per_s", 14, 2, "train_ratio_vs_torch"),
                 ("forward b/s", "forward_batches_per_s", 12, 2, "forward_ratio_vs_torch")])
    return 0

if __name__ == "__main__":
    sys.exit(main())
