"""A Vision Transformer on Fashion-MNIST: 7x7 patches, a class token, pre-norm encoder.

    python examples/vit_fashion.py [--epochs 3] [--train 20000] [--kernels c|numpy]

ViT's shape, small: the patch embedding is a Conv2d whose kernel and stride are the patch
size (16 patches of 28x28 images), a learned class token in front, learned positions,
pre-norm encoder layers with GELU and a final LayerNorm, the class token's output into a
linear classifier. Needs ``apt-get install dataset-fashion-mnist``. Prints the test accuracy.
"""

from __future__ import annotations

import argparse

import numpy as np

from qorus_core import Input, Model, ops
from qorus_core.io.idx import load_fashion_mnist
from qorus_core.train import AdamW, CrossEntropyLoss, Trainer
from qorus_layers_cnn import Conv2d
from qorus_layers_llm import LearnedTokens, PositionalEmbedding, TransformerEncoder
from qorus_layers_mlp import Dropout, Linear


def build(image: int = 28, patch: int = 7, d: int = 64, heads: int = 4, layers: int = 4,
          ffn: int = 128, classes: int = 10, dropout: float = 0.1, seed: int = 0,
          kernels: str | None = None) -> Model:
    """Input ``image`` [1, image, image] float; output the class logits. Parameter names:
    patch.*, cls.weight, pos.weight, enc.layers.<i>.*, enc.norm.*, head.*."""
    n = (image // patch) ** 2
    x = Input((1, image, image), name="image")
    patches = Conv2d(1, d, patch, stride=patch)(x, name="patch")          # [B, d, 4, 4]
    tokens = ops.transpose(ops.reshape(patches, (d, n)), 1, 2)            # [B, 16, d]
    h = ops.concat([LearnedTokens(d)(tokens, name="cls"), tokens], axis=1)  # [B, 17, d]
    h = Dropout(dropout)(PositionalEmbedding(n + 1, d)(h, name="pos"))
    h = TransformerEncoder(d, heads, layers, ffn, dropout=dropout, activation="gelu",
                           norm_first=True, norm=True)(h, name="enc")
    cls = ops.reshape(ops.slice(h, 1, 0, 1), (d,))                        # [B, d]
    return Model(inputs=x, outputs=Linear(d, classes)(cls, name="head"), seed=seed,
                 kernels=kernels)


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train", type=int, default=20000, help="training images used")
    ap.add_argument("--data", default=None, help="Fashion-MNIST directory")
    ap.add_argument("--kernels", default=None)
    args = ap.parse_args(argv)
    x, y = load_fashion_mnist(args.data, "train")
    xs, ys = load_fashion_mnist(args.data, "test")
    scale = np.float32(1 / 255)
    x, xs = (x[:args.train, None] * scale), xs[:, None] * scale
    y = y[:args.train]
    n_val = max(1, len(x) // 20)
    model = build(kernels=args.kernels)
    model.summary()
    trainer = Trainer(model, CrossEntropyLoss(), AdamW(lr=2e-3, weight_decay=0.05),
                      batch_size=64, epochs=args.epochs)
    trainer.fit(x[n_val:], y[n_val:], val=(x[:n_val], y[:n_val]))
    test = trainer.evaluate(xs, ys)
    print(f"test accuracy {test['accuracy']:.4f} on {len(ys)} Fashion-MNIST test images")
    return test


if __name__ == "__main__":
    main()
