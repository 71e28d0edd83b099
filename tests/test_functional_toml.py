"""``qorus train`` on a functional graph: nodes named in TOML (a shared layer called by
``layer = ...``), two losses with weights, metrics and a callback, named arrays from a
directory of memory-mapped .npy files or an .npz file."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from qorus_core import ConfigError, Model
from qorus_core.testing import trace_allocations
from qorus_core.train.config import build, load_config, load_data, run_training

MODEL = """
[model]
seed = 0
inputs = [{name = "a", shape = [8]}, {name = "b", shape = [8]}]
nodes = [
  {name = "enc", type = "mlp.Linear", out_features = 16, inputs = ["a"]},
  {name = "enc_b", layer = "enc", inputs = ["b"]},
  {name = "prod", type = "core.Mul", inputs = ["enc", "enc_b"]},
  {name = "cat", type = "core.Concat", axis = -1, inputs = ["enc", "enc_b", "prod"]},
  {name = "score", type = "mlp.Linear", out_features = 3, inputs = ["cat"]},
  {name = "diff", type = "core.Sub", inputs = ["enc", "enc_b"]},
  {name = "dist", type = "mlp.Linear", out_features = 1, inputs = ["diff"]},
]
outputs = {score = "score", dist = "dist"}

[loss.score]
type = "CrossEntropy"

[loss.dist]
type = "MSE"
weight = 0.5

[optimizer]
type = "AdamW"
lr = 0.01

[train]
epochs = 4
batch_size = 32
metrics = {score = ["accuracy", "f1"]}

[[callbacks]]
type = "EarlyStopping"
monitor = "loss"
patience = 10
"""


def _arrays(n=200):
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, 8)).astype(np.float32) for _ in range(2))
    return {"a": a, "b": b, "label": (a.sum(1) > b.sum(1)).astype(np.int32) + (a[:, 0] > 1),
            "distance": ((a - b) ** 2).mean(1, keepdims=True).astype(np.float32)}


def _config(tmp_path, data: str) -> str:
    p = tmp_path / "siamese.toml"
    p.write_text(MODEL + textwrap.dedent(data))
    return str(p)


def test_trains_from_mapped_npy_files(tmp_path):
    (tmp_path / "arrays").mkdir()
    for k, v in _arrays().items():
        np.save(tmp_path / "arrays" / f"{k}.npy", v)
    cfg = _config(tmp_path, """
        [data]
        source = "npy:arrays"
        validation = 0.2
        targets = {score = "label", dist = "distance"}
        """)
    metrics = run_training(cfg, tmp_path / "out", progress=False)
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["samples"] == {"train": 160, "validation": 40, "test": 0}
    assert set(saved["validation"]) == {"loss", "score_loss", "score_accuracy", "dist_loss",
                                        "score_f1"}
    assert metrics["history"][-1]["loss"] < metrics["history"][0]["loss"]
    m = Model.load(tmp_path / "out" / "checkpoint")
    assert m.input_names == ("a", "b") and m.output_names == ("dist", "score")   # by name
    assert m.parameters()["enc.weight"].shape == (16, 8)
    assert "enc_b.weight" not in m.parameters()              # shared, not a second layer


def test_mapped_training_data_is_streamed_not_copied(tmp_path):
    """Without held-out fractions the training arrays stay memory-mapped: a whole fit makes
    no copy of an input (only its shuffling order, 8 bytes a sample, is an array of N)."""
    (tmp_path / "arrays").mkdir()
    for k, v in _arrays(40000).items():
        np.save(tmp_path / "arrays" / f"{k}.npy", v)
    cfg = load_config(_config(tmp_path, """
        [data]
        source = "npy:arrays"
        targets = {score = "label", dist = "distance"}
        """))
    (xt, yt), _, _ = load_data(cfg)
    assert isinstance(xt["a"], np.memmap) and isinstance(yt["dist"], np.memmap)
    _, trainer = build(cfg, progress=False)
    trainer.fit(xt, yt, until_epoch=1)                       # warm-up: plans, scratch
    trace = trace_allocations(lambda: trainer.fit(xt, yt, until_epoch=2))
    one_input = xt["a"].nbytes                               # 32 bytes a sample
    assert trace.peak_bytes < 8 * len(xt["a"]) * 2 + one_input // 2, trace.peak_bytes


def test_npz_with_named_arrays(tmp_path):
    np.savez(tmp_path / "d.npz", **_arrays())
    cfg = _config(tmp_path, """
        [data]
        source = "npz:d.npz"
        test = 0.25
        targets = {score = "label", dist = "distance"}
        """)
    metrics = run_training(cfg, tmp_path / "out", progress=False)
    assert metrics["samples"]["test"] == 50 and metrics["test"]["score_accuracy"] >= 0


@pytest.mark.parametrize("bad, match", [
    ('{name = "x", layer = "nope", inputs = ["a"]}', "layer 'nope' is not an earlier node"),
    ('{name = "x", layer = "enc", out_features = 3, inputs = ["a"]}', "takes no arguments"),
    ('{name = "x", type = "mlp.Linear", out_features = 3, inputs = ["zz"]}',
     "input 'zz' is not an input or an earlier node"),
    ('{name = "x", type = "mlp.Linear", out_feature = 3, inputs = ["a"]}',
     "did you mean 'out_features'"),
])
def test_bad_nodes_name_the_node(tmp_path, bad, match):
    text = MODEL.replace('  {name = "dist", type', f'  {bad},\n  {{name = "dist", type')
    p = tmp_path / "bad.toml"
    p.write_text(text + '[data]\nsource = "npz:d.npz"\n')
    with pytest.raises(ConfigError, match=match):
        build(load_config(p), progress=False)
