"""A small U-Net denoising Fashion-MNIST: concatenated skips, transposed-convolution upsampling.

    python examples/unet_fashion.py [--epochs 3] [--train 6000] [--noise 0.3] [--kernels c|numpy]

U-Net's shape, small: two 3x3 conv + ReLU blocks per level (28x28 and 14x14, max pooled
down), a 7x7 bottleneck, then on the way up a ConvTranspose2d (kernel 2, stride 2) doubling
the size, its output concatenated on the channel axis with the encoder's block of that size
(the skip), another conv block, and a 1x1 convolution to one channel. Trained with MSE to
map an image plus Gaussian noise (std ``--noise``, pixels in [0, 1]) back to the clean
image. Needs ``apt-get install dataset-fashion-mnist``. Prints the test MSE of the noisy
inputs and of the denoised outputs against the clean images.
"""

from __future__ import annotations

import argparse

import numpy as np

from qorus_core import Input, Model, ops
from qorus_core.io.idx import load_fashion_mnist
from qorus_core.train import AdamW, MSELoss, Trainer
from qorus_layers_cnn import Conv2d, ConvTranspose2d, MaxPool2d
from qorus_layers_mlp import ReLU


def block(x, c_in: int, c_out: int, name: str):
    """Two 3x3 convolutions (padding 1) with ReLU, named ``<name>_0`` and ``<name>_1``."""
    x = ReLU()(Conv2d(c_in, c_out, 3, padding=1)(x, name=f"{name}_0"))
    return ReLU()(Conv2d(c_out, c_out, 3, padding=1)(x, name=f"{name}_1"))


def build(image: int = 28, width: int = 16, seed: int = 0, kernels: str | None = None) -> Model:
    """Input ``image`` [1, image, image] (``image`` divisible by 4); output the same shape.
    Channels ``width``, 2 ``width``, 4 ``width`` at the three sizes. Parameter names:
    down1_{0,1}, down2_{0,1}, mid_{0,1}, up2 (transposed), dec2_{0,1}, up1, dec1_{0,1},
    out, each ``.weight`` and ``.bias``."""
    w = width
    x = Input((1, image, image), name="image")
    s1 = block(x, 1, w, "down1")                                       # [B, w, 28, 28]
    s2 = block(MaxPool2d(2)(s1), w, 2 * w, "down2")                    # [B, 2w, 14, 14]
    h = block(MaxPool2d(2)(s2), 2 * w, 4 * w, "mid")                   # [B, 4w, 7, 7]
    h = ConvTranspose2d(4 * w, 2 * w, 2, stride=2)(h, name="up2")      # [B, 2w, 14, 14]
    h = block(ops.concat([h, s2], axis=1), 4 * w, 2 * w, "dec2")
    h = ConvTranspose2d(2 * w, w, 2, stride=2)(h, name="up1")          # [B, w, 28, 28]
    h = block(ops.concat([h, s1], axis=1), 2 * w, w, "dec1")
    return Model(inputs=x, outputs=Conv2d(w, 1, 1)(h, name="out"), seed=seed, kernels=kernels)


def noisy(clean: np.ndarray, std: float, seed: int) -> np.ndarray:
    """``clean`` plus seeded Gaussian noise of ``std`` (float32, not clipped)."""
    rng = np.random.default_rng(seed)
    return (clean + rng.standard_normal(clean.shape, np.float32) * np.float32(std)).astype(np.float32)


def images(directory: str | None, part: str, n: int) -> np.ndarray:
    """The first ``n`` images of ``part`` as [n, 1, 28, 28] float32 in [0, 1]."""
    x, _ = load_fashion_mnist(directory, part)
    return x[:n, None] * np.float32(1 / 255)


def mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float64) - b) ** 2))


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train", type=int, default=6000, help="training images used")
    ap.add_argument("--test", type=int, default=2000, help="test images used")
    ap.add_argument("--width", type=int, default=16, help="channels at full size")
    ap.add_argument("--noise", type=float, default=0.3, help="noise std (pixels in [0, 1])")
    ap.add_argument("--data", default=None, help="Fashion-MNIST directory")
    ap.add_argument("--kernels", default=None)
    args = ap.parse_args(argv)
    clean, clean_test = images(args.data, "train", args.train), images(args.data, "test", args.test)
    x, xs = noisy(clean, args.noise, 0), noisy(clean_test, args.noise, 1)
    n_val = max(1, len(x) // 20)
    model = build(width=args.width, kernels=args.kernels)
    model.summary()
    trainer = Trainer(model, MSELoss(), AdamW(lr=2e-3, weight_decay=0.01), batch_size=32,
                      epochs=args.epochs)
    trainer.fit(x[n_val:], clean[n_val:], val=(x[:n_val], clean[:n_val]))
    result = {"noisy_mse": mse(xs, clean_test), "denoised_mse": mse(trainer.predict(xs), clean_test)}
    print(f"test MSE over {len(xs)} Fashion-MNIST test images (noise std {args.noise}): noisy "
          f"{result['noisy_mse']:.4f}, denoised {result['denoised_mse']:.4f}")
    return result


if __name__ == "__main__":
    main()
