"""A tiny training run written by the tests: a one-epoch TOML config over 40 random samples
(4 features, 3 classes) saved beside it as ``data.npz``; only the model's layers vary."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np


def write_run(directory: Path, layers: str, name: str = "run.toml") -> Path:
    """Write ``data.npz`` and the config ``name`` into ``directory``; ``layers`` is the TOML
    value of ``[model] layers``. Returns the config's path."""
    rng = np.random.default_rng(0)
    np.savez(directory / "data.npz", x=rng.standard_normal((40, 4)).astype(np.float32),
             y=rng.integers(0, 3, 40))
    path = directory / name
    path.write_text(textwrap.dedent("""\
        [model]
        input_shape = [4]
        layers = {layers}
        [data]
        source = "npz:data.npz"
        [loss]
        type = "CrossEntropy"
        [optimizer]
        type = "SGD"
        lr = 0.1
        [train]
        epochs = 1
        batch_size = 8
        """).format(layers=layers))
    return path
