"""A functional model of one input and two outputs on scikit-learn's 8x8 digits.

    python examples/digits_multitask.py [--epochs 40] [--kernels c|numpy]

The graph: a dense block (each layer reads the concat of all before it, as DenseNet's
growth), then two heads: the digit (10 classes, cross-entropy) and whether it is 5 or more
(one logit, BCE-with-logits), trained together with weights 1 and 0.5. Early stopping on the
validation loss keeps the best epoch's weights. Prints the summary and both test scores.
"""

from __future__ import annotations

import argparse

import numpy as np

from qorus_core import Input, Model, ops
from qorus_core.io.datasets import load_digits, split
from qorus_core.train import AdamW, BCEWithLogitsLoss, CrossEntropyLoss, EarlyStopping, Trainer
from qorus_layers_mlp import Dropout, Linear, ReLU


def build(seed: int = 0, kernels: str | None = None) -> Model:
    x = Input((64,), name="pixels")
    h = x
    for i in range(3):                                  # growth 32: 64 -> 96 -> 128 -> 160
        new = Dropout(0.1)(ReLU()(Linear(None, 32)(h, name=f"grow{i}")))
        h = ops.concat([h, new], axis=-1)
    return Model(inputs=x, outputs={"digit": Linear(None, 10)(h, name="digit"),
                                    "high": Linear(None, 1)(h, name="high")},
                 seed=seed, kernels=kernels)


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--kernels", default=None)
    args = ap.parse_args(argv)
    x, y = load_digits()
    x = x / np.float32(16.0)
    targets = {"digit": y, "high": (y >= 5).astype(np.float32)[:, None]}
    (xt, yt), (xv, yv), (xs, ys) = split(x, targets, validation=0.1, test=0.2, seed=0)
    model = build(kernels=args.kernels)
    model.summary()
    trainer = Trainer(model, {"digit": CrossEntropyLoss(), "high": BCEWithLogitsLoss()},
                      AdamW(lr=3e-3, weight_decay=0.01), batch_size=64, epochs=args.epochs,
                      loss_weights={"high": 0.5}, metrics={"high": ["accuracy"]},
                      callbacks=[EarlyStopping(patience=5, restore_best_weights=True)])
    trainer.fit(xt, yt, val=(xv, yv))
    test = trainer.evaluate(xs, ys)
    print(f"test: digit accuracy {test['digit_accuracy']:.4f}, >=5 accuracy "
          f"{test['high_accuracy']:.4f} ({trainer.epoch} epochs)")
    return test


if __name__ == "__main__":
    main()
