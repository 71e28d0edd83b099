"""No code runs from a model file or config: a ``module:Class`` layer type (an ``evil_layer.py``
shipped beside a checkpoint) is refused unless the caller opts in, and the module is never
imported; registered names, and unregistered Layer objects passed in Python, still work."""

from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest
from tiny_run import write_run

import qorus_core.train.cli_train  # noqa: F401  (adds `train`)
from qorus_core import ConfigError, Model, QorusError, Sequential
from qorus_core.cli import main
from qorus_core.containers import Residual
from qorus_core.layer import allow_layer_imports, layer_from_dict, layer_to_dict
from qorus_core.train.checkpoint import load_checkpoint, save_checkpoint
from qorus_core.train.config import run_training
from qorus_layers_mlp import Linear, ReLU

EVIL = textwrap.dedent('''\
    """Runs code when imported: the marker file proves it."""
    from pathlib import Path

    Path(__file__).with_name("RAN").write_text("evil_layer.py was imported")

    from qorus_layers_mlp import Linear


    class Evil(Linear):
        """A working layer, so the opted-in load can be checked too."""
    ''')


@pytest.fixture
def evil_dir(tmp_path, monkeypatch):
    """A directory holding ``evil_layer.py``, importable (on sys.path and the cwd), as when a
    user loads a downloaded checkpoint from inside its folder."""
    d = tmp_path / "download"
    d.mkdir()
    (d / "evil_layer.py").write_text(EVIL)
    monkeypatch.syspath_prepend(str(d))
    monkeypatch.chdir(d)
    sys.modules.pop("evil_layer", None)
    yield d
    sys.modules.pop("evil_layer", None)


def _assert_never_ran(d):
    assert not (d / "RAN").exists(), "evil_layer.py ran"
    assert "evil_layer" not in sys.modules


def _poisoned_checkpoint(d, nest=False):
    """A real checkpoint whose config.json names ``evil_layer:Evil`` for its first layer
    (in a Residual inside the Sequential when ``nest``)."""
    first = Residual(Linear(4, 4)) if nest else Linear(4, 4)
    model = Model(Sequential([first, ReLU(), Linear(4, 3)]), (4,), kernels="numpy")
    path = save_checkpoint(d / "ck", model)
    cfg = json.loads((path / "config.json").read_text())
    layer = cfg["model"]["net"]["config"]["layers"][0]
    if nest:
        layer = layer["config"]["block"]
    assert layer["type"] == "mlp.Linear"
    layer["type"] = "evil_layer:Evil"
    (path / "config.json").write_text(json.dumps(cfg))
    return path, model


@pytest.mark.parametrize("nest", [False, True], ids=["top", "nested"])
def test_load_checkpoint_refuses_an_import_and_never_runs_it(evil_dir, nest):
    path, _ = _poisoned_checkpoint(evil_dir, nest)
    with pytest.raises(ConfigError, match=r"config\.json.*'evil_layer:Evil'.*trust_code=True"):
        load_checkpoint(path, kernels="numpy")
    _assert_never_ran(evil_dir)


def test_trust_code_opts_in(evil_dir):
    path, model = _poisoned_checkpoint(evil_dir)
    ck = load_checkpoint(path, kernels="numpy", trust_code=True)
    assert (evil_dir / "RAN").exists()
    assert type(ck.model.net[0]).__name__ == "Evil"
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_array_equal(ck.model.predict(x), model.predict(x))


def test_layer_from_dict_and_model_from_config_refuse_by_default(evil_dir):
    spec = {"type": "evil_layer:Evil", "in_features": 4, "out_features": 2}
    with pytest.raises(ConfigError, match="allow_import=True"):
        layer_from_dict(spec)
    with pytest.raises(ConfigError, match="evil_layer:Evil"):
        layer_from_dict({"type": "core.Sequential", "layers": [spec]})
    with pytest.raises(ConfigError, match="evil_layer:Evil"):
        Sequential([spec])                       # a container given dicts: the same rule
    cfg = {"net": {"type": "core.Sequential", "config": {"layers": [spec]}}, "input_shape": [4]}
    with pytest.raises(ConfigError, match="evil_layer:Evil"):
        Model.from_config(cfg)
    with allow_layer_imports(), pytest.raises(ConfigError, match="evil_layer:Evil"):
        layer_from_dict(spec, allow_import=False)  # an explicit no wins over the context
    _assert_never_ran(evil_dir)
    assert Model.from_config(cfg, allow_import=True).net[0].out_features == 2
    assert (evil_dir / "RAN").exists()


def test_opt_in_reaches_children_and_ends_with_the_call(evil_dir):
    spec = {"type": "core.Residual", "block": {"type": "evil_layer:Evil", "in_features": 3,
                                                "out_features": 3}}
    layer = layer_from_dict(spec, allow_import=True)
    assert type(layer.block).__name__ == "Evil"
    with pytest.raises(ConfigError, match="evil_layer:Evil"):
        layer_from_dict(spec)                    # the permission did not outlive the call


def test_refusal_happens_even_for_an_imported_module(evil_dir):
    """Refusal is about the file naming code, not about whether importing is new."""
    layer_from_dict({"type": "evil_layer:Evil", "in_features": 2, "out_features": 2},
                    allow_import=True)
    with pytest.raises(ConfigError, match="evil_layer:Evil"):
        layer_from_dict({"type": "evil_layer:Evil", "in_features": 2, "out_features": 2})


def test_unregistered_layer_objects_still_work_in_python(tmp_path):
    class Doubler(Linear):   # never registered: its type_name is module:Class
        pass

    model = Model(Sequential([Doubler(4, 3)]), (4,), kernels="numpy")
    assert ":" in layer_to_dict(model.net[0])["type"]
    x = np.ones((2, 4), np.float32)
    assert model.predict(x).shape == (2, 3)
    path = save_checkpoint(tmp_path / "ck", model)
    with pytest.raises(ConfigError, match="trust_code=True"):
        load_checkpoint(path)


def test_a_non_string_type_is_refused():
    with pytest.raises(ConfigError, match="must be a string"):
        layer_from_dict({"type": ["evil_layer", "Evil"]})


def test_optimizer_type_in_a_checkpoint_is_looked_up_never_imported(evil_dir):
    model = Model(Sequential([Linear(4, 3)]), (4,), kernels="numpy")
    path = save_checkpoint(evil_dir / "ck", model)
    cfg = json.loads((path / "config.json").read_text())
    cfg["optimizer"] = {"type": "evil_layer:Evil", "lr": 0.1}
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(QorusError, match="evil_layer:Evil"):
        load_checkpoint(path, trust_code=True)   # trust_code is about layers only
    _assert_never_ran(evil_dir)


def _write_run(d):
    return write_run(d, '[{type = "core.Sequential", layers = [{type = "evil_layer:Evil", '
                        'out_features = 3}]}]', "evil.toml")


def test_toml_config_refuses_an_import_unless_trusted(evil_dir, capsys):
    cfg = _write_run(evil_dir)
    with pytest.raises(ConfigError, match=r"evil\.toml: \[model\].*evil_layer:Evil.*--trust-code"):
        run_training(cfg, evil_dir / "out", kernels="numpy", progress=False)
    assert main(["train", str(cfg), "--out", str(evil_dir / "out"), "--kernels", "numpy",
                 "--no-progress"]) == 2
    assert "evil_layer:Evil" in capsys.readouterr().err
    _assert_never_ran(evil_dir)
    assert main(["train", str(cfg), "--out", str(evil_dir / "out"), "--kernels", "numpy",
                 "--no-progress", "--trust-code"]) == 0
    assert (evil_dir / "RAN").exists() and (evil_dir / "out" / "checkpoint").is_dir()


# -- the permission: a bool, per thread, restored by an exception too -----------------------------
@pytest.mark.parametrize("value", ["no", "false", 0, 1, None, [True]])
def test_the_permission_must_be_a_bool_never_truthy(evil_dir, value):
    """``allow_import="no"`` must not be a yes: anything but True/False is refused."""
    spec = {"type": "evil_layer:Evil", "in_features": 2, "out_features": 2}
    if value is not None:   # None means "inherit" for layer_from_dict
        with pytest.raises(ConfigError, match="layer_from_dict: allow_import must be true or false"):
            layer_from_dict(spec, allow_import=value)
    with pytest.raises(ConfigError, match="allow_layer_imports: allow must be true or false"):
        with allow_layer_imports(value):
            pass
    _assert_never_ran(evil_dir)


def test_the_permission_ends_with_the_block_even_on_an_exception(evil_dir):
    spec = {"type": "evil_layer:Evil", "in_features": 2, "out_features": 2}
    with pytest.raises(ConfigError, match="unknown config key .nonsense."):
        with allow_layer_imports():
            layer_from_dict({"type": "mlp.Linear", "nonsense": 1})
    with pytest.raises(ConfigError, match="evil_layer:Evil"):
        layer_from_dict(spec)                    # refused again after the failed block
    with pytest.raises(ConfigError, match="unknown config key .nonsense."):
        layer_from_dict({**spec, "nonsense": 1}, allow_import=True)   # fails after importing
    with pytest.raises(ConfigError, match="evil_layer:Evil"):
        layer_from_dict(spec)


def test_another_thread_does_not_inherit_the_permission(evil_dir):
    import threading

    spec = {"type": "evil_layer:Evil", "in_features": 2, "out_features": 2}
    seen = []

    def build():
        try:
            layer_from_dict(spec)
            seen.append("built")
        except ConfigError as exc:
            seen.append(str(exc))

    with allow_layer_imports():
        worker = threading.Thread(target=build)
        worker.start()
        worker.join(30)
    assert len(seen) == 1 and "evil_layer:Evil" in seen[0] and "trust" in seen[0]
    _assert_never_ran(evil_dir)


@pytest.mark.parametrize("type_name", [":Evil", ".evil_layer:Evil", "evil_layer:", "evil_layer:Nope"])
def test_a_malformed_import_name_is_a_config_error(evil_dir, type_name):
    with pytest.raises(ConfigError, match="cannot be imported"):
        layer_from_dict({"type": type_name}, allow_import=True)
