"""``qorus train CONFIG.toml``: trains from TOML, writes metrics.json and a checkpoint;
configuration mistakes exit 2 with a message naming the file and what is wrong."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import qorus_core.train.cli_train  # noqa: F401  (adds `train`, also when cli lists it already)
from qorus_core import ConfigError, DataError
from qorus_core.cli import main
from qorus_core.io.datasets import load_csv, load_npz, load_source, split
from qorus_core.train.checkpoint import load_checkpoint
from qorus_core.train.config import load_config

LAYERS = ('[{type = "mlp.Linear", out_features = 16}, {type = "mlp.ReLU"}, '
          '{type = "mlp.Linear", out_features = 3}]')


def write_data(tmp_path, n=120):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    x = rng.standard_normal((3, 4))[y] * 3 + rng.standard_normal((n, 4))
    path = tmp_path / "data.csv"
    rows = ["a,b,c,d,label"] + [",".join(f"{v:.5f}" for v in row) + f",{c}" for row, c in zip(x, y)]
    path.write_text("\n".join(rows) + "\n")
    return path


def write_config(tmp_path, layers=LAYERS, extra="", source="csv:data.csv"):
    path = tmp_path / "tiny.toml"
    path.write_text(textwrap.dedent(f"""\
        [model]
        input_shape = [4]
        layers = {layers}
        [data]
        source = "{source}"
        validation = 0.2
        test = 0.2
        [loss]
        type = "CrossEntropy"
        [optimizer]
        type = "AdamW"
        lr = 0.01
        [schedule]
        type = "cosine"
        warmup_steps = 2
        [train]
        epochs = 4
        batch_size = 16
        clip_norm = 1.0
        """) + extra)
    return path


def test_train_writes_metrics_and_checkpoint(tmp_path, capsys):
    write_data(tmp_path)
    cfg = write_config(tmp_path)
    out = tmp_path / "out"
    rc = main(["train", str(cfg), "--out", str(out), "--epochs", "6", "--kernels", "numpy", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 6 and metrics["parameters"] == 4 * 16 + 16 + 16 * 3 + 3
    assert metrics["kernels"] == "numpy" and metrics["seconds"] > 0
    assert metrics["samples"] == {"train": 72, "validation": 24, "test": 24}
    for split_ in ("train", "validation", "test"):
        assert set(metrics[split_]) == {"loss", "accuracy"}
    assert metrics["test"]["accuracy"] > 0.8
    assert len(metrics["history"]) == 6
    ck = load_checkpoint(out / "checkpoint", kernels="numpy")
    assert ck.trainer["epoch"] == 6 and ck.config["optimizer"]["type"] == "core.AdamW"
    printed = capsys.readouterr().out
    assert "6 epochs in" in printed and "test loss" in printed


def test_resume_continues_to_more_epochs(tmp_path):
    write_data(tmp_path)
    cfg = write_config(tmp_path)
    out = tmp_path / "out"
    assert main(["train", str(cfg), "--out", str(out), "--epochs", "2", "--no-progress"]) == 0
    assert main(["train", str(cfg), "--out", str(out), "--epochs", "3", "--resume", "--no-progress"]) == 0
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 3


def test_unknown_layer_exits_2_naming_close_matches(tmp_path):
    write_data(tmp_path)
    cfg = write_config(tmp_path, layers='[{type = "mlp.Linaer", out_features = 3}]')
    code = ("import sys, qorus_core.train.cli_train; from qorus_core.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, "train", str(cfg), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "unknown layer 'mlp.Linaer'" in proc.stderr and "mlp.Linear" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("text,match", [
    ("[model\ninput_shape = [4]\n", r"tiny\.toml: invalid TOML: .*line 1"),
    ("[model]\ninput_shape = [4]\nlayers = [{type = 'mlp.ReLU'}]\n", r"missing section \[data\]"),
    ("[modle]\n", r"unknown section\(s\) \['modle'\]"),
])
def test_bad_config_files(tmp_path, capsys, text, match):
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(path)
    assert main(["train", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "tiny.toml" in capsys.readouterr().err


@pytest.mark.parametrize("extra,match", [
    ("epoch = 3\n", r"\[train\] has unknown key\(s\) \['epoch'\]"),
    ("[schedule2]\n", "unknown section"),
])
def test_config_typos_are_named(tmp_path, extra, match):
    write_data(tmp_path)
    with pytest.raises(ConfigError, match=match):
        load_config(write_config(tmp_path, extra=extra))


def test_unknown_loss_and_bad_arguments(tmp_path, capsys):
    write_data(tmp_path)
    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text().replace('type = "CrossEntropy"', 'type = "CrossEntropi"'))
    assert main(["train", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "CrossEntropy" in capsys.readouterr().err
    cfg.write_text(cfg.read_text().replace('type = "CrossEntropi"', 'type = "CrossEntropy"\nsmoothing = 1'))
    assert main(["train", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "smoothing" in capsys.readouterr().err


def test_datasets(tmp_path):
    path = write_data(tmp_path, n=30)
    x, y = load_csv(path)
    assert x.shape == (30, 4) and x.dtype == np.float32 and y.dtype == np.int32
    x2, y2 = load_csv(path, label_column="a")
    assert y2.dtype == np.float32 and x2.shape == (30, 4)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    xn, yn = load_source("npz:d.npz", base=tmp_path)
    np.testing.assert_array_equal(xn, x)
    np.testing.assert_array_equal(yn, y)
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,3\n4,x,6\n")
    with pytest.raises(DataError, match=r"bad\.csv:2: column 2: 'x' is not a number"):
        load_csv(bad)
    bad.write_text("1,2,3\n4,5\n")
    with pytest.raises(DataError, match=r"bad\.csv:2: 2 columns, expected 3"):
        load_csv(bad)
    with pytest.raises(DataError, match="needs arrays"):
        load_npz(tmp_path / "d.npz", x_key="inputs")
    with pytest.raises(DataError, match="expected 'sklearn:digits'"):
        load_source("mnist")
    (a, b), (c, d), (e, f) = split(x, y, validation=0.2, test=0.1, seed=3)
    assert (len(a), len(c), len(e)) == (21, 6, 3)
    again = split(x, y, validation=0.2, test=0.1, seed=3)
    np.testing.assert_array_equal(again[0][0], a)                    # deterministic
    assert sorted(np.concatenate([b, d, f]).tolist()) == sorted(y.tolist())


def test_digits_loader():
    pytest.importorskip("sklearn")
    x, y = load_source("sklearn:digits")
    assert x.shape == (1797, 64) and x.dtype == np.float32 and set(np.unique(y)) == set(range(10))


@pytest.mark.parametrize("old,new,match", [
    ("epochs = 4", 'epochs = "four"', r"\[train\]"),
    ("batch_size = 16", "batch_size = 0", r"\[train\].*batch_size"),
    ("lr = 0.01", 'lr = "fast"', r"\[optimizer\]"),
    ("warmup_steps = 2", "warmup_steps = -2", r"\[schedule\].*warmup_steps"),
])
def test_bad_values_are_config_errors(tmp_path, old, new, match):
    from qorus_core.train.config import build

    write_data(tmp_path)
    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text().replace(old, new))
    with pytest.raises(ConfigError, match=match) as info:
        build(load_config(cfg), kernels="numpy", progress=False)
    assert "tiny.toml" in str(info.value)
