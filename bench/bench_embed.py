"""Sentence embeddings per second: a MiniLM-sized BERT (6 layers, d 384, 12 heads, FFN 1536;
random weights from ``transformers``, saved with save_pretrained and loaded by Qorus's
``load_encoder``), batch 32, sequence 128 (a quarter of each row padding), mean pooling over
the unpadded tokens, against the same checkpoint in ``transformers``' BertModel (PyTorch 2.13
eager, inference_mode) with sentence-transformers' mean pooling, in one run, same threads.

    flock /tmp/qorus-bench.lock python bench/bench_embed.py [--threads 2] [--runs 5] [--json]

Token ids are given (tokenization is not timed). Each figure is the median of ``--runs`` timed
runs of ``--steps`` batches after warm-up; the embeddings are checked to agree first.
"""

from __future__ import annotations

import sys
import tempfile

from harness import TORCH_ROW, dump_json, import_torch, median_rate, parse_args, print_table, result_rows

ARGS = parse_args(__doc__, runs=5, steps=3, add=lambda ap: (
    ap.add_argument("--batch", type=int, default=32), ap.add_argument("--seq", type=int, default=128)))

import numpy as np  # noqa: E402

from qorus_core.kernels import c_status  # noqa: E402


def main() -> int:
    torch = import_torch(ARGS.threads)
    if torch is None:
        raise SystemExit("needs torch and transformers (pip install torch==2.13.0 transformers)")
    import transformers

    from qorus_layers_llm.hf_checkpoint import load_tensors, read_json
    from qorus_layers_llm.hf_encoder import build_encoder, encoder_spec, qorus_state

    cfg = transformers.BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6,
                                  num_attention_heads=12, intermediate_size=1536)
    ref = transformers.BertModel(cfg, add_pooling_layer=False).eval()
    rng = np.random.default_rng(0)
    B, T = ARGS.batch, ARGS.seq
    ids = rng.integers(1000, 30000, (B, T)).astype(np.int32)
    mask = np.ones((B, T), np.int64)
    mask[:, T - T // 4:] = 0
    ids_t, mask_t = torch.from_numpy(ids).long(), torch.from_numpy(mask)

    def torch_embed():
        with torch.inference_mode():
            h = ref(input_ids=ids_t, attention_mask=mask_t).last_hidden_state
            m = mask_t[..., None].float()
            return (h * m).sum(1) / m.sum(1).clamp(min=1e-9)

    rows = {}
    want = torch_embed().numpy()
    if c_status()[0]:
        with tempfile.TemporaryDirectory() as d:
            ref.save_pretrained(d)
            spec = encoder_spec(read_json(f"{d}/config.json"), f"{d}/config.json")
            model = build_encoder(spec, kernels="c")
            model.load_state_dict(qorus_state(spec, load_tensors(d), d))
        plan = model.plan(B, shape={"ids": (T,), "types": (T,), "pad": (T,)})
        plan.inputs["ids"].a[...] = ids
        plan.inputs["types"].a[...] = 0
        plan.inputs["pad"].a[...] = mask == 0
        plan.forward()
        np.testing.assert_allclose(plan.outputs["pooled"].a, want, rtol=1e-3, atol=1e-4)

        def qorus_embed():
            for _ in range(ARGS.steps):
                plan.forward()

        rows["qorus-c"] = (median_rate(qorus_embed, ARGS.steps * B, ARGS.runs),)

    def torch_run():
        for _ in range(ARGS.steps):
            torch_embed()

    rows[TORCH_ROW] = (median_rate(torch_run, ARGS.steps * B, ARGS.runs),)
    model_name = f"BERT 6x d384 h12 ffn1536 (MiniLM-sized), batch {B}, seq {T}, mean pooling"
    result = {"threads": ARGS.threads, "runs": ARGS.runs, "model": model_name,
              "reference": f"transformers {transformers.__version__} BertModel",
              "rows": result_rows(rows, ("embeddings_per_s",), ("ratio_vs_torch",))}
    if ARGS.json:
        dump_json(result)
        return 0
    print_table(f"{model_name}, {ARGS.threads} threads, median of {ARGS.runs} runs",
                result["rows"], [("embeddings/s", "embeddings_per_s", 13, 1, "ratio_vs_torch")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
