"""A BERT-style encoder telling which fortunes file a fortune comes from (byte tokens).

    python examples/bert_fortunes.py [--epochs 6] [--kernels c|numpy]

BERT's shape, small: token, learned position and token-type embeddings (type 0 for the
fortune's first line, 1 for the rest), LayerNorm, post-norm encoder layers (non-causal
attention with the padding mask, GELU feed-forward), mean pooling over the unpadded tokens,
a linear classifier. Needs ``apt-get install fortunes``. Prints the test accuracy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fortunes_data import VOCAB, load_fortunes  # noqa: E402

from qorus_core import Input, Model, ops  # noqa: E402
from qorus_core.io.datasets import split  # noqa: E402
from qorus_core.train import AdamW, CrossEntropyLoss, Trainer  # noqa: E402
from qorus_layers_llm import Embedding, MeanPool, PositionalEmbedding, TransformerEncoder  # noqa: E402
from qorus_layers_mlp import Dropout, LayerNorm, Linear  # noqa: E402


def build(max_len: int = 128, d: int = 64, heads: int = 4, layers: int = 2, ffn: int = 128,
          classes: int = 4, dropout: float = 0.1, vocab: int = VOCAB, seed: int = 0,
          kernels: str | None = None) -> Model:
    """Inputs ``ids`` (int32), ``types`` (int32, 0 or 1), ``pad`` (bool, True at padding) of
    ``max_len`` each; output the class logits. Parameter names follow ``torch_twin``."""
    ids = Input((max_len,), name="ids", dtype="i32")
    types = Input((max_len,), name="types", dtype="i32")
    pad = Input((max_len,), name="pad", dtype="bool")
    h = ops.add(Embedding(vocab, d)(ids, name="tok"), Embedding(2, d)(types, name="typ"))
    h = PositionalEmbedding(max_len, d)(h, name="pos")
    h = Dropout(dropout)(LayerNorm(d, eps=1e-12)(h, name="norm"))
    h = TransformerEncoder(d, heads, layers, ffn, dropout=dropout, activation="gelu")(
        h, pad, name="enc")
    logits = Linear(d, classes)(MeanPool()(h, pad), name="head")
    return Model(inputs=[ids, types, pad], outputs=logits, seed=seed, kernels=kernels)


def token_types(ids: np.ndarray) -> np.ndarray:
    """Type 0 up to and including the first newline, 1 after it."""
    nl = np.cumsum(ids == ord("\n") + 1, axis=1)
    return ((nl - (ids == ord("\n") + 1)) > 0).astype(np.int32)


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--per-class", type=int, default=None)
    ap.add_argument("--kernels", default=None)
    args = ap.parse_args(argv)
    ids, pad, y, names = load_fortunes(per_class=args.per_class)
    x = {"ids": ids, "types": token_types(ids), "pad": pad}
    (xt, yt), (xv, yv), (xs, ys) = split(x, y, validation=0.1, test=0.2, seed=0)
    model = build(max_len=ids.shape[1], classes=len(names), kernels=args.kernels)
    model.summary()
    trainer = Trainer(model, CrossEntropyLoss(), AdamW(lr=2e-3, weight_decay=0.01),
                      batch_size=32, epochs=args.epochs)
    trainer.fit(xt, yt, val=(xv, yv))
    test = trainer.evaluate(xs, ys)
    print(f"test accuracy {test['accuracy']:.4f} over {len(ys)} fortunes of {', '.join(names)} "
          f"(chance {1 / len(names):.2f})")
    return test


if __name__ == "__main__":
    main()
