"""A character-level (byte-level) LSTM language model on the fortunes corpus, then sampling.

    apt-get install -y fortunes
    python examples/char_lstm.py [--data /usr/share/games/fortunes/fortunes] [--epochs 30]

Bytes (vocabulary 256) -> llm.Embedding(256, 64) -> rnn.LSTM(64, 256, 2 layers) ->
mlp.Linear(256) logits; cross-entropy over every position of [B, T, 256], AdamW with cosine
decay and gradient clipping. The validation loss is printed beside the unigram baseline (the
training byte frequencies evaluated on the validation bytes: what a model that ignores context
reaches). Sampling uses a copy of the network with ``stateful=True`` and T=1: each call feeds
one byte and the LSTM carries its state (``h0``/``c0`` buffers) to the next call.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from qorus_core import Model, Sequential, layer_from_dict
from qorus_core.io.datasets import load_text, unigram_cross_entropy
from qorus_core.train.losses import CrossEntropyLoss
from qorus_core.train.optimizers import AdamW
from qorus_core.train.schedules import Cosine
from qorus_core.train.trainer import Trainer
from qorus_layers_llm.sampler import Sampler
from qorus_layers_rnn import LSTM

VOCAB = 256


def network(embed: int, hidden: int, layers: int, stateful: bool = False) -> Sequential:
    return Sequential([
        layer_from_dict({"type": "llm.Embedding", "num_embeddings": VOCAB, "embedding_dim": embed}),
        LSTM(embed, hidden, num_layers=layers, stateful=stateful),
        layer_from_dict({"type": "mlp.Linear", "out_features": VOCAB}),
    ])


def sample(model: Model, prompt: bytes, n: int, temperature: float, seed: int) -> bytes:
    """Feed ``prompt`` byte by byte into a stateful T=1 model, then draw ``n`` bytes. Each
    step writes the byte into the plan's input and runs one forward: no array per byte."""
    plan = model.plan(1)                              # compiling the plan allocates its state
    for v in model.buffers().values():                # h0, c0 (and h_n, c_n): start from zero
        v[...] = 0
    sampler = Sampler(VOCAB, temperature, seed=seed)
    x, logits = plan.x.a, plan.y.a[0, 0]              # views: each forward rewrites the logits
    for b in prompt:
        x[0, 0] = b
        plan.forward()
    out = bytearray()
    for _ in range(n):
        x[0, 0] = sampler.sample(logits)
        out.append(int(x[0, 0]))
        plan.forward()
    return bytes(out)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/usr/share/games/fortunes/fortunes")
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--stride", type=int, default=16, help="a training window every N bytes")
    ap.add_argument("--embed", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--kernels", default=None, help="c or numpy (default: QORUS_KERNELS/auto)")
    ap.add_argument("--prompt", default="The ")
    ap.add_argument("--sample-len", type=int, default=400)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    (xtr, ytr), (xva, yva), _ = load_text(args.data, args.seq, validation=0.1, seed=args.seed,
                                          stride=args.stride)
    baseline = unigram_cross_entropy(xtr, yva, VOCAB)
    model = Model(network(args.embed, args.hidden, args.layers), (args.seq,), "i32",
                  seed=args.seed, kernels=args.kernels)
    print(f"{len(xtr)} training / {len(xva)} validation windows of {args.seq} bytes; "
          f"{model.num_parameters:,} parameters; kernels {model.kernels.name}")
    trainer = Trainer(model, CrossEntropyLoss(), AdamW(lr=args.lr, weight_decay=0.01),
                      Cosine(warmup_steps=20), batch_size=args.batch, epochs=args.epochs, clip_norm=1.0,
                      seed=args.seed, progress=sys.stdout.isatty())
    t0 = time.perf_counter()
    history = trainer.fit(xtr, ytr, val=(xva, yva))
    seconds = time.perf_counter() - t0
    val = history[-1]["val_loss"] if history else trainer.evaluate(xva, yva)["loss"]
    print(f"trained {args.epochs} epochs in {seconds:.1f} s; validation loss {val:.3f} nats/byte "
          f"vs unigram baseline {baseline:.3f} ({val / np.log(2):.2f} vs {baseline / np.log(2):.2f} "
          "bits/byte)")

    gen = Model(network(args.embed, args.hidden, args.layers, stateful=True), (1,), "i32",
                kernels=args.kernels)
    gen.load_state_dict(model.state_dict())
    text = sample(gen, args.prompt.encode(), args.sample_len, args.temperature, args.seed)
    print(f"--- sample (temperature {args.temperature}) ---")
    print((args.prompt.encode() + text).decode("utf-8", errors="replace"))
    return {"val_loss": float(val), "unigram_baseline": baseline, "history": history,
            "sample": text, "seconds": seconds}


if __name__ == "__main__":
    main()
