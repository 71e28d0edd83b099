"""Vision Transformer training on Fashion-MNIST-sized input (examples/vit_fashion.py's network:
28x28 images, 7x7 patches, d 64, 4 pre-norm layers, 4 heads, FFN 128, batch 64, AdamW,
cross-entropy): training steps/s, Qorus (C kernels) against the same network in PyTorch 2.13
eager, in one run, same thread count.

    flock /tmp/qorus-bench.lock python bench/bench_vit.py [--threads 2] [--runs 5] [--json]

Each figure is the median of ``--runs`` timed runs of ``--steps`` steps (after warm-up);
ratios > 1 mean Qorus is faster. Random images and labels (the speed does not depend on them).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

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

ARGS = parse_args(__doc__, runs=5, steps=10,
                  add=lambda ap: ap.add_argument("--batch", type=int, default=64))

import numpy as np  # noqa: E402

from qorus_core.kernels import c_status  # noqa: E402
from qorus_core.train.optimizers import AdamW  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
D, HEADS, LAYERS, FFN, PATCH = 64, 4, 4, 128, 7


def _example():
    spec = importlib.util.spec_from_file_location("vit_fashion", EXAMPLES / "vit_fashion.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def qorus_case(x: np.ndarray, y: np.ndarray) -> float:
    model = _example().build(28, PATCH, D, HEADS, LAYERS, FFN, 10, dropout=0.0, kernels="c")
    train = ce_train(model, AdamW(lr=1e-3).bind(model), x, y, ARGS.batch, ARGS.steps)
    return median_rate(train, ARGS.steps, ARGS.runs)


def torch_case(x: np.ndarray, y: np.ndarray) -> float | None:
    torch = import_torch(ARGS.threads)
    if torch is None:
        return None
    nn = torch.nn

    class ViT(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch = nn.Conv2d(1, D, PATCH, stride=PATCH)
            self.cls = nn.Parameter(torch.zeros(1, 1, D))
            self.pos = nn.Parameter(torch.zeros(1, (28 // PATCH) ** 2 + 1, D))
            layer = nn.TransformerEncoderLayer(D, HEADS, FFN, 0.0, "gelu", batch_first=True,
                                               norm_first=True)
            self.enc = nn.TransformerEncoder(layer, LAYERS, norm=nn.LayerNorm(D),
                                             enable_nested_tensor=False)
            self.head = nn.Linear(D, 10)

        def forward(self, img):
            p = self.patch(img).flatten(2).transpose(1, 2)
            h = torch.cat([self.cls.expand(img.shape[0], 1, D), p], 1) + self.pos
            return self.head(self.enc(h)[:, 0])

    net = ViT()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()

    def train():
        for _ in range(ARGS.steps):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(xt), yt).backward()
            opt.step()

    return median_rate(train, ARGS.steps, ARGS.runs)


def main() -> int:
    rng = np.random.default_rng(0)
    x = rng.random((ARGS.batch, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, ARGS.batch).astype(np.int32)
    rows = {}
    if c_status()[0]:
        rows["qorus-c"] = (qorus_case(x, y),)
    ref = torch_case(x, y)
    if ref is not None:
        rows[TORCH_ROW] = (ref,)
    model = f"ViT 28x28/{PATCH}, d{D} x{LAYERS} h{HEADS} ffn{FFN}, batch {ARGS.batch}"
    result = {"threads": ARGS.threads, "runs": ARGS.runs, "model": model, "optimizer": "AdamW",
              "rows": result_rows(rows, ("train_steps_per_s",), ("train_ratio_vs_torch",))}
    if ARGS.json:
        dump_json(result)
        return 0
    print_table(f"{model}, AdamW, {ARGS.threads} threads, median of {ARGS.runs} runs",
                result["rows"], [("train steps/s", "train_steps_per_s", 14, 2,
                                  "train_ratio_vs_torch")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
