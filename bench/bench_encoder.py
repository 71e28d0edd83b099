"""A MiniLM-sized transformer encoder (6 post-norm layers, d 384, 12 heads, FFN 1536, GELU),
batch 32, sequence 128, with a key padding mask (a quarter of each row padded): inference
forwards/s, Qorus (C kernels) against PyTorch 2.13's nn.TransformerEncoder in eval mode under
inference_mode (its fast path where it takes it), in one run, same thread count.

    flock /tmp/qorus-bench.lock python bench/bench_encoder.py [--threads 2] [--runs 5] [--json]

Each figure is the median of ``--runs`` timed runs of ``--steps`` forwards (after warm-up);
ratios > 1 mean Qorus is faster. Both run the same weights (PyTorch's, loaded into Qorus by
their names) and the outputs are checked to agree before timing.
"""

from __future__ import annotations

import sys

from harness import TORCH_ROW, dump_json, import_torch, median_rate, parse_args, print_table, result_rows


def _options(ap) -> None:
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--d-model", type=int, default=384)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--ffn", type=int, default=1536)


ARGS = parse_args(__doc__, runs=5, steps=3, add=_options)

import numpy as np  # noqa: E402

from qorus_core import Input, Model, get_kernels  # noqa: E402
from qorus_core.kernels import c_status  # noqa: E402
from qorus_layers_llm import TransformerEncoder  # noqa: E402


def qorus_case(state: dict, x: np.ndarray, pad: np.ndarray, want: np.ndarray | None) -> float:
    src, kpm = Input(x.shape[1:], name="src"), Input(pad.shape[1:], name="kpm", dtype="bool")
    enc = TransformerEncoder(ARGS.d_model, ARGS.heads, ARGS.layers, ARGS.ffn, dropout=0.0,
                             activation="gelu")
    model = Model(inputs=[src, kpm], outputs=enc(src, kpm, name="enc"), kernels=get_kernels("c"))
    if state:
        model.load_state_dict({"enc." + k: v for k, v in state.items()})
    plan = model.plan(ARGS.batch)
    plan.inputs["src"].a[...] = x
    plan.inputs["kpm"].a[...] = pad
    plan.forward()
    if want is not None:    # padded rows differ by design (PyTorch's fast path zeroes them)
        keep = ~pad
        np.testing.assert_allclose(plan.y.a[keep], want[keep], rtol=2e-3, atol=2e-3)

    def infer():
        for _ in range(ARGS.steps):
            plan.forward()

    return median_rate(infer, ARGS.steps, ARGS.runs)


def torch_case(x: np.ndarray, pad: np.ndarray):
    torch = import_torch(ARGS.threads)
    if torch is None:
        return None, {}, None
    layer = torch.nn.TransformerEncoderLayer(ARGS.d_model, ARGS.heads, ARGS.ffn, dropout=0.0,
                                             activation="gelu", batch_first=True)
    net = torch.nn.TransformerEncoder(layer, ARGS.layers, enable_nested_tensor=False).eval()
    xt, pt = torch.from_numpy(x), torch.from_numpy(pad)
    with torch.inference_mode():
        want = net(xt, src_key_padding_mask=pt).numpy()

    def infer():
        with torch.inference_mode():
            for _ in range(ARGS.steps):
                net(xt, src_key_padding_mask=pt)

    state = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    return median_rate(infer, ARGS.steps, ARGS.runs), state, want


def main() -> int:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((ARGS.batch, ARGS.seq, ARGS.d_model)).astype(np.float32)
    pad = np.zeros((ARGS.batch, ARGS.seq), bool)
    pad[:, ARGS.seq - ARGS.seq // 4:] = True
    rows = {}
    ref, state, want = torch_case(x, pad)
    if c_status()[0]:
        rows["qorus-c"] = (qorus_case(state, x, pad, want),)
    if ref is not None:
        rows[TORCH_ROW] = (ref,)
    model = (f"encoder {ARGS.layers}x d{ARGS.d_model} h{ARGS.heads} ffn{ARGS.ffn}, batch "
             f"{ARGS.batch}, seq {ARGS.seq}")
    result = {"threads": ARGS.threads, "runs": ARGS.runs, "model": model,
              "rows": result_rows(rows, ("infer_forwards_per_s",), ("infer_ratio_vs_torch",))}
    if ARGS.json:
        dump_json(result)
        return 0
    print_table(f"{model}, {ARGS.threads} threads, median of {ARGS.runs} runs", result["rows"],
                [("forwards/s", "infer_forwards_per_s", 11, 3, "infer_ratio_vs_torch")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
