"""A siamese network on Fashion-MNIST pairs: one shared encoder, is it the same class?

    python examples/siamese_fashion.py [--epochs 5] [--pairs 20000] [--kernels c|numpy]

Two image inputs go through one encoder (the same layer objects called on both, so one set
of parameters: two conv + ReLU + 2x2 max pool stages, a linear embedding). The elementwise
|e1 - e2| and e1 * e2 of the two embeddings (symmetric in the two images), concatenated,
go into a linear layer that gives one logit, trained with BCE-with-logits to say whether
the two images are of the same class. Half the pairs are of one class, half of two, drawn
with a seed. Needs ``apt-get install dataset-fashion-mnist``. Prints the accuracy on pairs
of test images.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

from qorus_core import Input, Model, ops
from qorus_core.io.idx import load_fashion_mnist
from qorus_core.train import AdamW, BCEWithLogitsLoss, Trainer
from qorus_layers_cnn import Conv2d, Flatten, MaxPool2d
from qorus_layers_mlp import Linear, ReLU


def encoder(image: int, width: int, embed: int) -> Callable:
    """The shared encoder: a function of a node whose layers are made once, so every call
    reuses them (their parameters under the first call's names: conv1, conv2, embed)."""
    conv1, conv2 = Conv2d(1, width, 3, padding=1), Conv2d(width, 2 * width, 3, padding=1)
    proj = Linear(2 * width * (image // 4) ** 2, embed)

    def encode(x):
        h = MaxPool2d(2)(ReLU()(conv1(x, name="conv1")))
        h = MaxPool2d(2)(ReLU()(conv2(h, name="conv2")))
        return proj(Flatten()(h), name="embed")
    return encode


def build(image: int = 28, width: int = 16, embed: int = 64, seed: int = 0,
          kernels: str | None = None) -> Model:
    """Inputs ``a`` and ``b`` [1, image, image] (``image`` divisible by 4); output one logit
    (same class). Parameter names: conv1.*, conv2.*, embed.*, head.*."""
    a, b = Input((1, image, image), name="a"), Input((1, image, image), name="b")
    encode = encoder(image, width, embed)
    ea, eb = encode(a), encode(b)
    pair = ops.concat([ops.abs(ops.sub(ea, eb)), ops.mul(ea, eb)], axis=-1)   # [B, 2 embed]
    return Model(inputs=[a, b], outputs=Linear(2 * embed, 1)(pair, name="head"), seed=seed,
                 kernels=kernels)


def pairs(labels: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` index pairs (i, j) into ``labels``: i uniform, j of i's class for even pairs and
    of another class (uniform among the others) for odd ones; targets [n, 1] float32 (1: same)."""
    rng = np.random.default_rng(seed)
    classes, cls = np.unique(labels, return_inverse=True)
    k = len(classes)
    if k < 2:
        raise ValueError(f"pairs of different classes need 2 classes or more, got {k}")
    by_class = np.argsort(cls, kind="stable")                   # indices grouped by class
    count = np.bincount(cls, minlength=k)
    start = np.cumsum(count) - count
    same = np.arange(n) % 2 == 0
    i = rng.integers(len(labels), size=n)
    cj = np.where(same, cls[i], (cls[i] + rng.integers(1, k, size=n)) % k)
    j = by_class[start[cj] + (rng.random(n) * count[cj]).astype(np.intp)]
    return i, j, same.astype(np.float32)[:, None]


def pair_set(directory: str | None, part: str, n_images: int, n_pairs: int, seed: int
             ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Inputs {"a", "b"} [n_pairs, 1, 28, 28] in [0, 1] from the first ``n_images`` images of
    ``part``, and the same-class targets."""
    x, y = load_fashion_mnist(directory, part)
    x, y = x[:n_images, None] * np.float32(1 / 255), y[:n_images]
    i, j, same = pairs(y, n_pairs, seed)
    return {"a": x[i], "b": x[j]}, same


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--pairs", type=int, default=20000, help="training pairs")
    ap.add_argument("--test-pairs", type=int, default=4000)
    ap.add_argument("--images", type=int, default=20000, help="training images pairs draw from")
    ap.add_argument("--width", type=int, default=16, help="channels of the first conv")
    ap.add_argument("--data", default=None, help="Fashion-MNIST directory")
    ap.add_argument("--kernels", default=None)
    args = ap.parse_args(argv)
    x, y = pair_set(args.data, "train", args.images, args.pairs, 0)
    xs, ys = pair_set(args.data, "test", 10000, args.test_pairs, 1)
    n_val = max(2, len(y) // 20)
    xt, xv = ({k: v[n_val:] for k, v in x.items()}, {k: v[:n_val] for k, v in x.items()})
    model = build(width=args.width, kernels=args.kernels)
    model.summary()
    trainer = Trainer(model, BCEWithLogitsLoss(), AdamW(lr=2e-3, weight_decay=0.01),
                      batch_size=64, epochs=args.epochs, metrics=["accuracy"])
    trainer.fit(xt, y[n_val:], val=(xv, y[:n_val]))
    test = trainer.evaluate(xs, ys)
    print(f"test pair accuracy {test['accuracy']:.4f} over {len(ys)} pairs of Fashion-MNIST test "
          f"images, half of the same class (chance 0.50)")
    return test


if __name__ == "__main__":
    main()
