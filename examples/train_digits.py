"""Train an MLP on scikit-learn's 8x8 digits with the Python API; plot loss_curve.png.

    python examples/train_digits.py [--out runs/digits_py] [--epochs 100] [--kernels c|numpy]

The same model as examples/digits_mlp.toml (``qorus train examples/digits_mlp.toml``):
64 -> 256 -> ReLU -> Dropout(0.2) -> 10, AdamW with cosine decay, label smoothing 0.1.
Reaches about 98.9% test accuracy in about a second on one CPU core.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from qorus_core import Model, Sequential
from qorus_core.io.datasets import load_digits, split
from qorus_core.train.losses import CrossEntropyLoss
from qorus_core.train.optimizers import AdamW
from qorus_core.train.schedules import Cosine
from qorus_core.train.trainer import Trainer
from qorus_layers_mlp import Dropout, Linear, ReLU


def plot(history: list[dict], path: Path) -> bool:
    """Train and validation loss per epoch; False when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [h["loss"] for h in history], label="train")
    ax.plot(epochs, [h["val_loss"] for h in history], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy (label smoothing 0.1)")
    ax.set_title("MLP on digits")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/digits_py", help="checkpoint, metrics.json, loss_curve.png")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--kernels", choices=("auto", "c", "numpy"), default=None)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    x, y = load_digits()
    x *= 1.0 / 16.0                                  # pixels 0..16 -> 0..1
    (xt, yt), (xv, yv), (xs, ys) = split(x, y, validation=0.1, test=0.2, seed=0)

    net = Sequential([Linear(64, 256), ReLU(), Dropout(0.2), Linear(256, 10)])
    model = Model(net, input_shape=(64,), seed=0, kernels=args.kernels)
    trainer = Trainer(model, CrossEntropyLoss(label_smoothing=0.1),
                      AdamW(lr=3e-3, weight_decay=0.05), Cosine(warmup_steps=50),
                      batch_size=64, epochs=args.epochs, clip_norm=1.0, seed=0,
                      checkpoint_dir=out / "checkpoint")
    t0 = time.perf_counter()
    history = trainer.fit(xt, yt, val=(xv, yv))
    seconds = time.perf_counter() - t0
    test = trainer.evaluate(xs, ys)
    metrics = {"test": test, "validation": trainer.evaluate(xv, yv), "seconds": seconds,
               "epochs": trainer.epoch, "parameters": model.num_parameters,
               "kernels": model.kernels.name}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    print(f"{trainer.epoch} epochs in {seconds:.2f}s ({model.kernels.name} kernels, "
          f"{model.num_parameters:,} parameters): test accuracy {test['accuracy']:.4f}, "
          f"test loss {test['loss']:.4f}")
    if plot(history, out / "loss_curve.png"):
        print(f"wrote {out / 'loss_curve.png'}")


if __name__ == "__main__":
    main()
