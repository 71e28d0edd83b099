"""One rank of the data-parallel tests (tests/test_data_parallel.py runs it under mpirun; run
alone it is one process): ``python tests/mpi_worker.py CASE OUT [options]``.

Each case builds a small model, trains it with ``Trainer`` (the job's communicator from
``world()``), and rank 0 writes ``OUT/result.npz``: the history, the final parameters and the
evaluation. Every rank writes ``OUT/params<rank>.npy`` so the test can check they are equal.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from qorus_core import Model, Sequential
from qorus_core.distributed import world
from qorus_core.train import SGD, AdamW, Callback, CrossEntropyLoss, Trainer
from qorus_core.train.schedules import Cosine


def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.data / 16.0).astype(np.float32), d.target.astype(np.int32)


def mlp_case(seed: int) -> tuple[Model, tuple, tuple, CrossEntropyLoss]:
    """The digits MLP with Dropout (per-sample masks must match one process's)."""
    from qorus_layers_mlp import Dropout, Linear, ReLU

    x, y = digits()
    model = Model(Sequential([Linear(None, 64), ReLU(), Dropout(0.2), Linear(None, 10)]), (64,),
                  seed=seed)
    return model, (x[:1400], y[:1400]), (x[1400:], y[1400:]), CrossEntropyLoss(0.1)


def gpt_case(seed: int) -> tuple[Model, tuple, tuple, CrossEntropyLoss]:
    """A tiny byte GPT on a fixed random corpus; some targets are ignore_index (-100), so
    the ranks' loss means must be weighed by their counted targets."""
    from qorus_layers_llm import GPT

    rng = np.random.default_rng(1)
    T = 16
    data = rng.integers(0, 32, (96, T + 1)).astype(np.int32)
    x, y = data[:, :T], data[:, 1:].copy()
    y[rng.random(y.shape) < 0.2] = -100
    model = Model(Sequential([GPT(vocab_size=32, d_model=32, n_layers=2, n_heads=2, max_len=T,
                                  positional="learned", norm="layernorm", ffn="gelu",
                                  tie_embeddings=True)]), (T,), "i32", seed=seed)
    return model, (x[:80], y[:80]), (x[80:], y[80:]), CrossEntropyLoss()


def cnn_case(seed: int, sync: bool) -> tuple[Model, tuple, tuple, CrossEntropyLoss]:
    """A small CNN with BatchNorm (synchronised over the ranks with ``sync``)."""
    from qorus_layers_cnn import BatchNorm2d, Conv2d, Flatten, MaxPool2d
    from qorus_layers_mlp import Linear, ReLU

    x, y = digits()
    x = x.reshape(-1, 1, 8, 8)
    net = Sequential([Conv2d(None, 8, 3, padding=1), BatchNorm2d(synchronized=sync), ReLU(),
                      MaxPool2d(2), Flatten(), Linear(None, 10)])
    return Model(net, (1, 8, 8), seed=seed), (x[:600], y[:600]), (x[600:800], y[600:800]), \
        CrossEntropyLoss()


class FailOn(Callback):
    """Raises (``how="raise"``), stalls (``"stall"``) or changes a parameter (``"diverge"``)
    on one rank after epoch 1."""

    def __init__(self, rank: int, how: str) -> None:
        self.rank, self.how = rank, how

    def on_epoch_end(self, trainer, epoch, logs) -> None:
        if trainer.comm.rank == self.rank and epoch == 1:
            if self.how == "raise":
                raise RuntimeError(f"injected failure on rank {self.rank}")
            if self.how == "diverge":
                trainer.model.params.a[0] += 1.0
                return
            time.sleep(120)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("case", choices=("mlp", "gpt", "cnn", "cnn-sync"))
    ap.add_argument("out")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--until", type=int, default=None)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--sgd", action="store_true", help="SGD with momentum instead of AdamW")
    ap.add_argument("--fail", choices=("raise", "stall", "diverge"))
    ap.add_argument("--trace", action="store_true",
                    help="after epoch 1, trace the NumPy arrays the other epochs leave behind")
    a = ap.parse_args()
    comm = world()
    if a.case == "mlp":
        model, train, val, loss = mlp_case(0)
    elif a.case == "gpt":
        model, train, val, loss = gpt_case(0)
    else:
        model, train, val, loss = cnn_case(0, a.case == "cnn-sync")
    out = Path(a.out)
    metrics = ["accuracy"] if a.case != "gpt" else [{"type": "accuracy", "ignore_index": -100},
                                                    "perplexity"]
    opt = SGD(lr=0.05, momentum=0.9) if a.sgd else AdamW(lr=3e-3, weight_decay=0.01)
    trainer = Trainer(model, loss, opt, Cosine(warmup_steps=5),
                      batch_size=a.batch, epochs=a.epochs, clip_norm=1.0, progress=False,
                      checkpoint_dir=out / "checkpoint", metrics=metrics,
                      callbacks=[FailOn(1, a.fail)] if a.fail else None, check_sync_every=1)
    if a.trace:
        from qorus_core.testing import trace_allocations

        trainer.fit(*train, val=val, until_epoch=1)
        trace = trace_allocations(lambda: trainer.fit(*train, val=val))
        (out / f"trace{comm.rank}.json").write_text(json.dumps(
            {"array_bytes": trace.array_bytes, "where": trace.where}))
    history = trainer.fit(*train, val=val, until_epoch=a.until,
                          resume_from=out / "checkpoint" if a.resume else None)
    final = trainer.evaluate(*val)
    np.save(out / f"params{comm.rank}.npy", model.params.a)
    if comm.is_main:
        buffers = {f"buffer:{k}": v for k, v in model.states.arrays(persistent_only=True).items()}
        np.savez(out / "result.npz", params=model.params.a, **buffers)
        (out / "result.json").write_text(json.dumps({"history": history, "final": final,
                                                     "world_size": comm.size}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
