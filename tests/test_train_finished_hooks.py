"""A plugin's failing ``qorus_train_finished`` hook is reported naming the plugin; the other
plugins' hooks still run and the training result (checkpoint, metrics) is kept."""

from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest

import qorus_core.train.cli_train  # noqa: F401  (adds `train`)
from qorus_core.cli import main
from qorus_core.hookspecs import hookimpl
from qorus_core.registry import Registry, reset_registry
from qorus_core.train.checkpoint import load_checkpoint
from qorus_core.train.config import run_training


class Broken:
    @hookimpl
    def qorus_train_finished(self, model, config, out_dir, echo):
        raise RuntimeError("sampler exploded")


class Exits:
    @hookimpl
    def qorus_train_finished(self, model, config, out_dir, echo):
        sys.exit(3)


class Records:
    def __init__(self):
        self.calls = []

    @hookimpl
    def qorus_train_finished(self, model, config, out_dir, echo):
        self.calls.append(out_dir)
        echo("recorded")


@pytest.fixture
def plugins():
    reg = Registry()
    good = Records()
    reg.add_plugin("aa_good", good)          # first and last: the failures sit in between
    reg.add_plugin("broken", Broken())
    reg.add_plugin("exits", Exits())
    later = Records()
    reg.add_plugin("zz_good", later)
    reset_registry(reg)
    yield good, later
    reset_registry()


def _config(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.standard_normal((40, 4)).astype(np.float32),
             y=rng.integers(0, 3, 40))
    path = tmp_path / "run.toml"
    path.write_text(textwrap.dedent("""\
        [model]
        input_shape = [4]
        layers = [{type = "mlp.Linear", out_features = 3}]
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
        """))
    return path


def test_failing_hooks_are_reported_by_plugin_and_the_run_is_kept(tmp_path, plugins, capsys):
    good, later = plugins
    echoed = []
    metrics = run_training(_config(tmp_path), tmp_path / "out", kernels="numpy",
                           progress=False, echo=echoed.append)
    assert good.calls == [tmp_path / "out"] and later.calls == [tmp_path / "out"]
    assert echoed == ["recorded", "recorded"]
    errors = {e["plugin"].split()[0]: e["error"] for e in metrics["hook_errors"]}
    assert errors == {"'broken'": "RuntimeError: sampler exploded", "'exits'": "SystemExit: 3"}
    err = capsys.readouterr().err
    assert "plugin 'broken'" in err and "sampler exploded" in err and "plugin 'exits'" in err
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["epochs"] == 1
    assert load_checkpoint(tmp_path / "out" / "checkpoint").trainer["epoch"] == 1


def test_cli_train_finishes_despite_a_failing_hook(tmp_path, plugins, capsys):
    rc = main(["train", str(_config(tmp_path)), "--out", str(tmp_path / "out"),
               "--kernels", "numpy", "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "1 epochs in" in out and "plugin 'broken'" in err and "sampler exploded" in err
    assert "Traceback" not in err


def test_keyboard_interrupt_in_a_hook_still_stops(tmp_path):
    class Interrupts:
        @hookimpl
        def qorus_train_finished(self, model, config, out_dir, echo):
            raise KeyboardInterrupt

    reg = Registry()
    reg.add_plugin("ctrl_c", Interrupts())
    reset_registry(reg)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_training(_config(tmp_path), tmp_path / "out", kernels="numpy", progress=False)
    finally:
        reset_registry()
    assert (tmp_path / "out" / "checkpoint").is_dir()     # saved before the hooks ran
