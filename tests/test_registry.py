"""Registry: namespaced registration, lookup, failures kept, autoload and strict switches, CLI."""

from __future__ import annotations

import json
import sys
import types

import pytest

from qorus_core import cli
from qorus_core import registry as reg_mod
from qorus_core.errors import ConfigError, RegistryError
from qorus_core.hookspecs import hookimpl
from qorus_core.layer import Layer
from qorus_core.registry import PluginLoadWarning, Registry, get_layer, get_registry, reset_registry


class Linear(Layer):
    """Dense layer for tests.

    More text that listings must not show.
    """


class Conv(Layer):
    """Convolution for tests."""


def mse(y, t):
    """Mean squared error."""


class Plugin:
    """A hashable bag of hook functions (pluggy keys plugins by identity)."""

    def __init__(self, **hooks):
        self.__dict__.update({name: hookimpl(fn) for name, fn in hooks.items()})


def make_plugin(layers=(), losses=(), optimizers=()):
    """A plugin object whose hooks register the given items (class or (obj, name) pairs)."""

    def registrar(items):
        def hook(register):
            for item in items:
                register(*item) if isinstance(item, tuple) else register(item)
        return hook

    return Plugin(qorus_register_layers=registrar(layers), qorus_register_losses=registrar(losses),
                  qorus_register_optimizers=registrar(optimizers))


def fresh(**kw) -> Registry:
    return Registry(autoload=kw.pop("autoload", False), builtins=kw.pop("builtins", False), **kw)


def fake_entry_points(monkeypatch, *specs: tuple[str, str]) -> None:
    """Make the registry see entry points ``name = value`` (no distribution)."""
    eps = [reg_mod.metadata.EntryPoint(name, value, "qorus") for name, value in specs]
    monkeypatch.setattr(reg_mod.metadata, "entry_points", lambda group: list(eps))


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    for var in ("QORUS_DISABLE_PLUGIN_AUTOLOAD", "QORUS_STRICT_PLUGINS", "QORUS_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    reset_registry()
    yield
    reset_registry()


# --- registration and lookup ------------------------------------------------------------
def test_register_and_lookup_full_and_bare_names():
    r = fresh()
    info = r.add_plugin("mlp", make_plugin(layers=[Linear, (Linear, "Dense")], losses=[mse]),
                        dist="qorus-layers-mlp")
    assert (info.status, info.items, info.distribution) == ("ok", 3, "qorus-layers-mlp")
    assert r.get("layer", "mlp.Linear") is Linear
    assert r.get("layer", "Linear") is Linear
    assert r.get("layer", "Dense") is Linear
    assert r.get("loss", "mlp.mse") is mse
    assert [e.name for e in r.entries("layer")] == ["mlp.Dense", "mlp.Linear"]
    e = r.entry("layer", "Linear")
    assert (e.plugin, e.kind, e.distribution, e.doc) == ("mlp", "layer", "qorus-layers-mlp",
                                                        "Dense layer for tests.")
    assert e.to_dict()["object"].endswith(":Linear")
    assert Linear.registry_name == "mlp.Dense"  # aliases: the last registration names the class
    assert [p.namespace for p in r.plugins()] == ["mlp"]


def test_registry_name_round_trips_through_layer_config():
    r = fresh()
    r.add_plugin("t", make_plugin(layers=[Conv]))
    reset_registry(r)
    assert Conv.registry_name == "t.Conv"
    assert get_layer("t.Conv") is Conv and get_registry() is r


def test_builtin_core_plugin_registers_containers(monkeypatch):
    from qorus_core.containers import Residual, Sequential

    fake_entry_points(monkeypatch, ("core", "qorus_core.builtin_plugin"))  # qorus-core's own
    r = Registry(autoload=True)
    assert r.get("layer", "core.Sequential") is Sequential
    assert r.get("layer", "Residual") is Residual
    assert r.get("loss", "CrossEntropy").registry_name == "core.CrossEntropy"
    assert r.get("optimizer", "core.AdamW").__name__ == "AdamW"
    assert [(p.namespace, p.status) for p in r.plugins()] == [("core", "ok")]


def test_bare_name_ambiguity_names_every_candidate():
    r = fresh()
    r.add_plugin("a", make_plugin(layers=[Linear]))
    r.add_plugin("b", make_plugin(layers=[Linear]))
    with pytest.raises(RegistryError, match="ambiguous") as err:
        r.get("layer", "Linear")
    assert "a.Linear" in str(err.value) and "b.Linear" in str(err.value)
    assert r.get("layer", "b.Linear") is Linear


def test_unknown_name_suggests_close_matches():
    r = fresh()
    r.add_plugin("mlp", make_plugin(layers=[Linear, Conv]))
    with pytest.raises(RegistryError, match=r"did you mean mlp\.Linear\?"):
        r.get("layer", "Linaer")
    with pytest.raises(RegistryError, match=r"did you mean mlp\.Linear\?"):
        r.get("layer", "mlp.linear")
    with pytest.raises(RegistryError, match="unknown layer 'Zzz'"):
        r.get("layer", "Zzz")
    with pytest.raises(RegistryError, match="unknown kind"):
        r.get("layers", "Linear")


def test_register_rejects_bad_items():
    r = fresh()
    with pytest.raises(RegistryError, match="not a subclass"):
        r.add_plugin("a", make_plugin(layers=[mse]))
    with pytest.raises(RegistryError, match="bad layer name"):
        r.add_plugin("b", make_plugin(layers=[(Linear, "x.y")]))
    with pytest.raises(RegistryError, match="twice"):
        r.add_plugin("c", make_plugin(layers=[Linear, Linear]))
    with pytest.raises(RegistryError, match="bad plugin namespace"):
        r.add_plugin("d.e", make_plugin())
    assert r.entries() == []
    assert {p.namespace: p.status for p in r.plugins()} == {"a": "failed", "b": "failed",
                                                            "c": "failed", "d.e": "failed"}


def test_register_only_works_inside_the_hook():
    kept = []
    plugin = Plugin(qorus_register_layers=lambda register: kept.append(register))
    r = fresh()
    r.add_plugin("late", plugin)
    with pytest.raises(RegistryError, match="after its hook returned"):
        kept[0](Linear)


# --- clashes and failures ---------------------------------------------------------------
def test_namespace_clash_names_both_plugins_and_distributions():
    r = fresh()
    r.add_plugin("mlp", make_plugin(layers=[Linear]), dist="qorus-layers-mlp")
    with pytest.raises(RegistryError) as err:
        r.add_plugin("mlp", make_plugin(layers=[Linear, Conv]), dist="other-mlp")
    msg = str(err.value)
    assert "duplicate plugin namespace 'mlp'" in msg
    assert "qorus-layers-mlp" in msg and "other-mlp" in msg
    assert [e.name for e in r.entries("layer")] == ["mlp.Linear"]  # the first one keeps working


def test_hook_that_raises_registers_nothing_and_others_work():
    def hook(register):
        register(Conv)
        raise ValueError("boom")

    r = fresh()
    r.add_plugin("good", make_plugin(layers=[Linear]))
    with pytest.raises(RegistryError, match="ValueError: boom"):
        r.add_plugin("bad", Plugin(qorus_register_layers=hook))
    assert [e.name for e in r.entries()] == ["good.Linear"]
    bad = r.plugins()[1]
    assert (bad.namespace, bad.status, bad.items) == ("bad", "failed", 0)
    assert "boom" in bad.error and "ValueError" in bad.traceback
    with pytest.raises(RegistryError, match="plugin 'bad'.*boom"):
        r.get("layer", "bad.Conv")
    assert r.get("layer", "Linear") is Linear


def test_unknown_hook_and_bad_hook_arguments_fail_the_plugin():
    typo = Plugin(qorus_register_layer=lambda register: None)
    wrong_arg = Plugin(qorus_register_layers=lambda reg: None)
    r = fresh()
    with pytest.raises(RegistryError, match="unknown hook 'qorus_register_layer'"):
        r.add_plugin("typo", typo)
    with pytest.raises(RegistryError, match="PluginValidationError"):
        r.add_plugin("wrong", wrong_arg)
    assert r.add_plugin("typo2", make_plugin(layers=[Linear])).status == "ok"  # pm still sane


def test_broken_entry_point_is_reported_while_others_work(monkeypatch):
    good = types.ModuleType("qorus_test_good_plugin")
    good.qorus_register_layers = make_plugin(layers=[Linear]).qorus_register_layers
    monkeypatch.setitem(sys.modules, good.__name__, good)
    fake_entry_points(monkeypatch, ("good", good.__name__), ("broken", "qorus_test_no_such_module"))
    r = Registry(builtins=False)
    with pytest.warns(PluginLoadWarning, match="'broken'.*qorus_test_no_such_module"):
        assert r.get("layer", "Linear") is Linear
    status = {p.namespace: (p.status, p.error) for p in r.plugins()}
    assert status["good"] == ("ok", None)
    assert status["broken"][0] == "failed"
    assert "ModuleNotFoundError" in status["broken"][1]
    assert r.plugins()[0].source == "qorus_test_no_such_module"  # loaded in name order


def test_autoload_can_be_switched_off(monkeypatch):
    def boom(group):
        raise AssertionError("entry points must not be read")

    monkeypatch.setattr(reg_mod.metadata, "entry_points", boom)
    monkeypatch.setenv("QORUS_DISABLE_PLUGIN_AUTOLOAD", "1")
    r = Registry(builtins=False)
    assert r.autoload is False and r.plugins() == []
    r.add_plugin("mine", make_plugin(layers=[Linear]))  # explicit plugins still work
    assert r.get("layer", "mine.Linear") is Linear


@pytest.mark.parametrize("via_env", [True, False])
def test_strict_mode_raises_on_first_failure(monkeypatch, via_env):
    fake_entry_points(monkeypatch, ("broken", "qorus_test_no_such_module"))
    if via_env:
        monkeypatch.setenv("QORUS_STRICT_PLUGINS", "1")
    r = Registry(builtins=False, strict=None if via_env else True)
    for _ in range(2):  # stays failed: no half-loaded registry in strict mode
        with pytest.raises(RegistryError, match="'broken'.*ModuleNotFoundError") as err:
            r.entries("layer")
    assert isinstance(err.value.__cause__, ModuleNotFoundError)


def test_default_registry_reads_the_environment(monkeypatch):
    monkeypatch.setenv("QORUS_DISABLE_PLUGIN_AUTOLOAD", "yes")
    monkeypatch.setenv("QORUS_STRICT_PLUGINS", "1")
    r = get_registry()
    assert (r.autoload, r.strict) == (False, True)
    assert get_registry() is r
    reset_registry()
    assert get_registry() is not r


# --- CLI --------------------------------------------------------------------------------
@pytest.fixture
def cli_registry():
    r = fresh()
    r.add_plugin("mlp", make_plugin(layers=[Linear]), dist="qorus-layers-mlp")
    with pytest.raises(RegistryError):
        r.add_plugin("bad", Plugin(qorus_register_layers=lambda register: 1 / 0))
    reset_registry(r)
    return r


def test_cli_layers_json(cli_registry, capsys):
    assert cli.main(["layers", "--json"]) == 0
    out, err = capsys.readouterr()
    rows = json.loads(out)
    assert [(x["name"], x["plugin"], x["distribution"], x["doc"]) for x in rows] == [
        ("mlp.Linear", "mlp", "qorus-layers-mlp", "Dense layer for tests.")]
    assert "bad" in err  # the failed plugin is pointed out


def test_cli_layers_and_plugins_text(cli_registry, capsys):
    assert cli.main(["layers"]) == 0
    out = capsys.readouterr().out
    assert "mlp.Linear" in out and "Dense layer for tests." in out
    assert cli.main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "failed" in out and "ZeroDivisionError" in out


def test_cli_plugins_json_includes_failures(cli_registry, capsys):
    assert cli.main(["plugins", "--json"]) == 0
    rows = {p["namespace"]: p for p in json.loads(capsys.readouterr().out)}
    assert rows["mlp"]["status"] == "ok" and rows["mlp"]["items"] == 1
    assert rows["bad"]["status"] == "failed"
    assert "ZeroDivisionError" in rows["bad"]["error"]


def test_cli_add_command_and_qorus_error_exit_code(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_COMMANDS", dict(cli._COMMANDS))

    def run(args):
        raise ConfigError(f"bad config {args.path}")

    cli.add_command("explode", "raises", lambda p: p.add_argument("path"), run)
    with pytest.raises(ValueError, match="already defined"):
        cli.add_command("explode", "again", lambda p: None, run)
    assert cli.main(["explode", "x.toml"]) == 2
    err = capsys.readouterr().err
    assert "qorus: error: bad config x.toml" in err and "Traceback" not in err
    monkeypatch.setenv("QORUS_DEBUG", "1")
    assert cli.main(["explode", "x.toml"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_cli_version_and_backend(capsys):
    assert cli.main(["version", "--json"]) == 0
    assert "qorus-core" in json.loads(capsys.readouterr().out)
    rc = cli.main(["backend", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert (rc == 0 and "error" not in data) or (rc == 1 and "error" in data)


def test_cli_layers_name_shows_one_layer_in_full(capsys):
    assert cli.main(["layers", "core.Slice"]) == 0
    out = capsys.readouterr().out
    assert "core.Slice" in out and "PyTorch's slicing" in out
    assert "  axis = required" in out and "  step = 1" in out and "inputs: x" in out
    assert cli.main(["layers", "Concat", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["name"], info["inputs"], info["config"]) == ("core.Concat", ["xs*"], {"axis": "-1"})
    assert cli.main(["layers", "Concatt"]) == 2
    assert "did you mean core.Concat" in capsys.readouterr().err


def test_a_plugin_registers_a_callback():
    from qorus_core.train.callbacks import Callback, make_callback

    class Halt(Callback):
        """Stops after the first epoch."""

        def on_epoch_end(self, trainer, epoch, logs):
            trainer.stop_training = True

    r = fresh(builtins=True)
    r.add_plugin("demo", Plugin(qorus_register_callbacks=lambda register: register(Halt)))
    reset_registry(r)
    assert r.get("callback", "demo.Halt") is Halt and Halt.registry_name == "demo.Halt"
    assert isinstance(make_callback({"type": "Halt"}), Halt)
    assert "core.EarlyStopping" in [e.name for e in r.entries("callback")]
