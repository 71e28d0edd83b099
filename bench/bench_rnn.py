"""LSTM (2 layers, hidden 256, T=64, batch 32, input 128): training steps/s (forward,
backward through time, AdamW) and inference forwards/s, Qorus (C and NumPy kernels) against
PyTorch 2.13's nn.LSTM eager, in one run, same thread count.

    flock /tmp/qorus-bench.lock python bench/bench_rnn.py [--threads 2] [--runs 5] [--json]

Each figure is the median of ``--runs`` timed runs (after warm-up); ratios > 1 mean Qorus is
faster. The loss is sum(y * r) for a fixed r (its gradient r is written straight into dy on
both sides), so the step times the network, not a loss function.
"""

from __future__ import annotations

import sys

from harness import TORCH_ROW, dump_json, import_torch, median_rate, parse_args, print_table, result_rows


def _options(ap) -> None:
    ap.add_argument("--calls", type=int, default=10, help="inference forwards per timed run")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--input", type=int, default=128)
    ap.add_argument("--no-numpy", action="store_true", help="skip the (slow) NumPy kernel row")


ARGS = parse_args(__doc__, runs=5, steps=5, add=_options)

import numpy as np  # noqa: E402

from qorus_core import Model, get_kernels  # noqa: E402
from qorus_core.kernels import c_status  # noqa: E402
from qorus_core.train.optimizers import AdamW  # noqa: E402
from qorus_layers_rnn import LSTM  # noqa: E402


def qorus_case(kernels: str, x: np.ndarray, r: np.ndarray) -> tuple[float, float]:
    model = Model(LSTM(ARGS.input, ARGS.hidden, num_layers=ARGS.layers), x.shape[1:],
                  kernels=get_kernels(kernels))
    opt = AdamW(lr=1e-3).bind(model)
    plan = model.plan(ARGS.batch, train=True)
    plan.x.a[...] = x

    def train():
        for _ in range(ARGS.steps):
            model.zero_grad()
            plan.forward()
            plan.dy.a[...] = r
            plan.backward()
            opt.step()

    infer_plan = model.plan(ARGS.batch, train=False)
    infer_plan.x.a[...] = x

    def infer():
        for _ in range(ARGS.calls):
            infer_plan.forward()

    return median_rate(train, ARGS.steps, ARGS.runs), median_rate(infer, ARGS.calls, ARGS.runs)


def torch_case(x: np.ndarray, r: np.ndarray) -> tuple[float, float] | None:
    torch = import_torch(ARGS.threads)
    if torch is None:
        return None
    net = torch.nn.LSTM(ARGS.input, ARGS.hidden, num_layers=ARGS.layers, batch_first=True)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    xt, rt = torch.from_numpy(x), torch.from_numpy(r)

    def train():
        for _ in range(ARGS.steps):
            opt.zero_grad(set_to_none=True)
            out, _ = net(xt)
            out.backward(rt)
            opt.step()

    def infer():
        with torch.inference_mode():
            for _ in range(ARGS.calls):
                net(xt)

    return median_rate(train, ARGS.steps, ARGS.runs), median_rate(infer, ARGS.calls, ARGS.runs)


def main() -> int:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((ARGS.batch, ARGS.seq, ARGS.input)).astype(np.float32)
    r = rng.standard_normal((ARGS.batch, ARGS.seq, ARGS.hidden)).astype(np.float32)
    rows = {}
    if c_status()[0]:
        rows["qorus-c"] = qorus_case("c", x, r)
    if not ARGS.no_numpy:
        rows["qorus-numpy"] = qorus_case("numpy", x, r)
    ref = torch_case(x, r)
    if ref is not None:
        rows[TORCH_ROW] = ref
    model = (f"LSTM {ARGS.layers}x{ARGS.hidden}, input {ARGS.input}, T={ARGS.seq}, "
             f"batch {ARGS.batch}")
    result = {"threads": ARGS.threads, "runs": ARGS.runs, "model": model, "optimizer": "AdamW",
              "rows": result_rows(rows, ("train_steps_per_s", "infer_forwards_per_s"),
                                  ("train_ratio_vs_torch", "infer_ratio_vs_torch"))}
    if ARGS.json:
        dump_json(result)
        return 0
    print_table(f"{model}, AdamW, {ARGS.threads} threads, median of {ARGS.runs} runs", result["rows"],
                [("train steps/s", "train_steps_per_s", 14, 2, "train_ratio_vs_torch"),
                 ("forwards/s", "infer_forwards_per_s", 11, 2, "infer_ratio_vs_torch")])
    return 0

if __name__ == "__main__":
    sys.exit(main())
