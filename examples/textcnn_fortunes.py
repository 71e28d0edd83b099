"""A Kim-style text CNN telling which fortunes file a fortune comes from (byte tokens).

    python examples/textcnn_fortunes.py [--epochs 10] [--widths 3 4 5] [--kernels c|numpy]

Kim (2014)'s shape, on bytes: an embedding of each byte, transposed to [B, d, T] (channels
first), one Conv1d per window width (3, 4 and 5 bytes) with ReLU, each feature's maximum
over time, the three concatenated, dropout and a linear classifier. Needs ``apt-get install
fortunes``. Prints the test accuracy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fortunes_data import VOCAB, load_fortunes  # noqa: E402

from qorus_core import Input, Model, ops  # noqa: E402
from qorus_core.io.datasets import split  # noqa: E402
from qorus_core.train import AdamW, CrossEntropyLoss, Trainer  # noqa: E402
from qorus_layers_cnn import Conv1d  # noqa: E402
from qorus_layers_llm import Embedding  # noqa: E402
from qorus_layers_mlp import Dropout, Linear, ReLU  # noqa: E402


def build(max_len: int = 128, d: int = 64, filters: int = 100, widths: tuple[int, ...] = (3, 4, 5),
          classes: int = 4, dropout: float = 0.5, vocab: int = VOCAB, seed: int = 0,
          kernels: str | None = None) -> Model:
    """Input ``ids`` (int32, ``max_len``); output the class logits. Parameter names:
    emb.weight, conv<w>.{weight,bias} for each width w, head.{weight,bias}."""
    ids = Input((max_len,), name="ids", dtype="i32")
    h = ops.transpose(Embedding(vocab, d)(ids, name="emb"), 1, 2)          # [B, d, T]
    feats = [ops.max(ReLU()(Conv1d(d, filters, w)(h, name=f"conv{w}")), axis=-1)
             for w in widths]                                               # [B, filters] each
    h = Dropout(dropout)(ops.concat(feats, axis=-1))
    return Model(inputs=ids, outputs=Linear(filters * len(widths), classes)(h, name="head"),
                 seed=seed, kernels=kernels)


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--per-class", type=int, default=None, help="fortunes of each file used")
    ap.add_argument("--dim", type=int, default=64, help="byte embedding size")
    ap.add_argument("--filters", type=int, default=100, help="filters per width")
    ap.add_argument("--widths", type=int, nargs="+", default=[3, 4, 5])
    ap.add_argument("--kernels", default=None)
    args = ap.parse_args(argv)
    ids, _, y, names = load_fortunes(per_class=args.per_class)
    (xt, yt), (xv, yv), (xs, ys) = split(ids, y, validation=0.1, test=0.2, seed=0)
    model = build(max_len=ids.shape[1], d=args.dim, filters=args.filters,
                  widths=tuple(args.widths), classes=len(names), kernels=args.kernels)
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
