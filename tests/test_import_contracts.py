"""The arrows point down only: plugins -> the public qorus_core surface -> kernels.

The import contracts live in pyproject.toml ([tool.importlinter]; ``tox -e lint`` runs
``lint-imports``). Here: they hold, each one breaks on the import it forbids, every module is
classified by them, and at run time the kernels and the registry load nothing above them and
the CLI's commands arrive through the core plugin's ``qorus_register_commands`` hook.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qorus_core import ConfigError, Model, Sequential, Spec, param_shapes
from qorus_core import cli as cli_mod
from qorus_core.registry import Registry, reset_registry

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "qorus_core"
PLUGIN_SOURCES = sorted([*ROOT.glob("qorus_layers_*/src/qorus_layers_*"),
                         *ROOT.glob("plugins/*/src/qorus_layers_*")])
PLUGINS = sorted(p.name for p in PLUGIN_SOURCES if not p.name.endswith(".egg-info"))
#: The public qorus_core surface: what a plugin may import (everything else is private).
PUBLIC = {"qorus_core", "qorus_core.errors", "qorus_core.hookspecs", "qorus_core.init",
          "qorus_core.validate", "qorus_core.testing", "qorus_core.kernels", "qorus_core.train",
          "qorus_core.io", "qorus_core.io.gguf", "qorus_core.io.safetensors", "qorus_core.ops",
          "qorus_core.distributed"}
#: What the kernels may import from the rest of qorus_core.
BELOW_KERNELS = {"qorus_core", "qorus_core.errors", "qorus_core.tensor"}
CORE_COMMANDS = ("layers", "losses", "optimizers", "plugins", "backend", "version", "train",
                 "bench", "convert")
CLI_MODULES = ("qorus_core.train.cli_train", "qorus_core.kernels.bench_cli",
               "qorus_core.io.cli_convert")


def _modules(root: Path, package: str) -> set[str]:
    out = set()
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out.add(".".join([package, *parts]))
    return out


def _contracts() -> dict[str, dict]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    with open(ROOT / "pyproject.toml", "rb") as fh:
        cfg = tomllib.load(fh)["tool"]["importlinter"]
    return {c["id"]: c for c in cfg["contracts"]} | {"": cfg}


def _matches(module: str, expression: str) -> bool:
    """Whether a forbidden-module expression covers ``module`` (as a package: descendants too)."""
    base = expression[:-2] if expression.endswith(".*") else expression
    if expression.endswith(".*"):
        return module.startswith(base + ".")
    return module == base or module.startswith(base + ".")


def test_every_core_module_is_classified():
    """A new module must be placed on purpose: public or private for plugins, and allowed or
    forbidden for the kernels; and every plugin package is under every plugin contract."""
    contracts = _contracts()
    modules = _modules(CORE, "qorus_core")
    private = {m for m in modules
               if any(_matches(m, e) for e in contracts["plugins-use-the-public-surface"]
                      ["forbidden_modules"])}
    assert PUBLIC <= modules
    assert not PUBLIC & private, f"listed public and forbidden: {sorted(PUBLIC & private)}"
    assert modules == PUBLIC | private, f"unclassified: {sorted(modules - PUBLIC - private)}"
    above = {m for m in modules
             if any(_matches(m, e) for e in contracts["kernels-at-the-bottom"]["forbidden_modules"])}
    outside = {m for m in modules if not _matches(m, "qorus_core.kernels")}
    assert outside == BELOW_KERNELS | above, f"unclassified: {sorted(outside - BELOW_KERNELS - above)}"
    assert not above & BELOW_KERNELS
    assert len(PLUGINS) == 5 and sorted(contracts[""]["root_packages"]) == sorted(["qorus_core", *PLUGINS])
    for cid in ("core-imports-no-plugin",):
        assert sorted(contracts[cid]["forbidden_modules"]) == PLUGINS
    for cid in ("plugins-use-the-public-surface", "plugins-import-no-private-plugin-module"):
        assert sorted(contracts[cid]["source_modules"]) == PLUGINS
    assert sorted(contracts["plugins-import-no-private-plugin-module"]["forbidden_modules"]) == \
        [f"{p}.*" for p in PLUGINS]


# One import each contract forbids -> the contract(s) that must break on it (and only they).
VIOLATIONS = [
    ("qorus_core.kernels.numpy", "qorus_core.init", "kernels-at-the-bottom"),
    ("qorus_core.kernels.listing", "qorus_core.layer", "kernels-at-the-bottom"),
    # the root imports everything, the layers too, and the registry reaches the kernels
    # (it checks a plugin's kernels): both contracts break
    ("qorus_core.kernels.numpy", "qorus_core", "kernels-at-the-bottom registry-knows-no-layer"),
    ("qorus_core.registry", "qorus_core", "registry-knows-no-layer"),
    ("qorus_core.train.cli_train", "qorus_core.cli", "nothing-imports-the-cli"),
    ("qorus_core.registry", "qorus_core.layer", "registry-knows-no-layer"),
    ("qorus_core.model", "qorus_layers_mlp", "core-imports-no-plugin"),
    ("qorus_layers_llm.llama", "qorus_core.graph", "plugins-use-the-public-surface"),
    ("qorus_layers_llm.llama", "qorus_core.kernels.numpy_quant", "plugins-use-the-public-surface"),
    ("qorus_layers_rnn.recurrent", "qorus_core.tensor", "plugins-use-the-public-surface"),
    ("qorus_layers_llm.head", "qorus_layers_mlp.linear", "plugins-import-no-private-plugin-module"),
]


@pytest.fixture(scope="module")
def linter():
    """(contract objects by id, the import graph), read the way ``lint-imports`` reads them."""
    pytest.importorskip("importlinter", reason="import-linter runs in `tox -e lint`")
    import grimp
    from importlinter import configuration

    configuration.configure()
    from importlinter.application.use_cases import read_user_options
    from importlinter.contracts.forbidden import ForbiddenContract

    options = read_user_options(str(ROOT / "pyproject.toml"))
    assert {c["type"] for c in options.contracts_options} == {"forbidden"}
    contracts = {c["id"]: ForbiddenContract(c["name"], options.session_options, c)
                 for c in options.contracts_options}
    graph = grimp.build_graph(*options.session_options["root_packages"], cache_dir=None)
    return contracts, graph


def _broken(contracts, graph) -> list[str]:
    return sorted(cid for cid, c in contracts.items() if not c.check(graph, verbose=False).kept)


def test_the_contracts_hold(linter):
    contracts, graph = linter
    assert _broken(contracts, graph) == []
    assert graph.find_shortest_chain("qorus_core.registry", "qorus_core.layer") is None
    assert graph.find_shortest_chain("qorus_core.kernels", "qorus_core.cli") is None


@pytest.mark.parametrize("importer, imported, contract", VIOLATIONS,
                         ids=[f"{a}->{b}" for a, b, _ in VIOLATIONS])
def test_each_contract_breaks_on_what_it_forbids(linter, importer, imported, contract):
    contracts, graph = linter
    graph = copy.deepcopy(graph)
    graph.add_import(importer=importer, imported=imported, line_number=1, line_contents="import x")
    assert _broken(contracts, graph) == contract.split()


def test_allowed_imports_stay_allowed(linter):
    """A plugin's own modules, another plugin's package and the public core surface."""
    contracts, graph = linter
    graph = copy.deepcopy(graph)
    for importer, imported in [("qorus_layers_llm.llama", "qorus_layers_llm.gpt"),
                               ("qorus_layers_cnn.conv", "qorus_layers_mlp"),
                               ("qorus_layers_llm.llama", "qorus_core.io.gguf"),
                               ("qorus_layers_rnn.recurrent", "qorus_core.testing"),
                               ("qorus_core.kernels.c", "qorus_core.tensor")]:
        graph.add_import(importer=importer, imported=imported, line_number=1, line_contents="x")
    assert _broken(contracts, graph) == []


# --- at run time ----------------------------------------------------------------------------
# qorus_core/__init__.py imports the whole public API; a stub root package lets a subprocess
# load one subpackage with only what that subpackage itself imports.
STUB_ROOT = """
import importlib.util, sys, types
spec = importlib.util.find_spec("qorus_core")
root = types.ModuleType("qorus_core")
root.__path__ = list(spec.submodule_search_locations)
sys.modules["qorus_core"] = root
"""


def _python(code: str, **env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("QORUS_")} | env
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=environ, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def _loaded(prefix: str = "qorus_core") -> str:
    return f"sorted(m for m in sys.modules if m == {prefix!r} or m.startswith({prefix + '.'!r}))"


def test_kernels_load_nothing_above_them_at_run_time():
    """Every kernel module imported and used (both sets, the backend listing): no layer,
    model, registry or CLI module is loaded, dynamic imports included."""
    out = _python(STUB_ROOT + f"""
import json, pkgutil
import qorus_core.kernels as k
for m in pkgutil.iter_modules(k.__path__):
    __import__("qorus_core.kernels." + m.name)
from qorus_core.kernels.info import backend_info
k.get_kernels("numpy"); k.get_kernels("auto"); k.c_status(); backend_info()
print(json.dumps({_loaded()}))
""")
    above = [m for m in out if m not in BELOW_KERNELS and not _matches(m, "qorus_core.kernels")]
    assert above == [], f"the kernels loaded {above}"
    assert "qorus_core.kernels.numpy" in out and "qorus_core.kernels.bench_cli" in out


def test_registry_loads_no_layer_and_still_refuses_non_layers():
    """registry.py knows Layer only through sys.modules: loading it imports no layer module;
    a plain class is refused as a layer, a Layer subclass accepted once layer.py is loaded."""
    out = _python(STUB_ROOT + f"""
import json, sys
from qorus_core.errors import RegistryError
from qorus_core.hookspecs import hookimpl
from qorus_core.registry import Registry
before = {_loaded()}

class Plain:
    pass

def plugin(cls):
    class P:
        @hookimpl
        def qorus_register_layers(self, register):
            register(cls)
    return P()

reg = Registry(autoload=False, builtins=False)
errors = []
try:
    reg.add_plugin("plain", plugin(Plain))
except RegistryError as exc:
    errors.append(str(exc))
from qorus_core.layer import Layer

class Real(Layer):
    pass

try:
    reg.add_plugin("plain2", plugin(Plain))
except RegistryError as exc:
    errors.append(str(exc))
reg.add_plugin("real", plugin(Real))
print(json.dumps({{"before": before, "errors": errors, "real": reg.get("layer", "real.Real") is Real}}))
""")
    assert "qorus_core.layer" not in out["before"] and "qorus_core.graph" not in out["before"]
    assert len(out["errors"]) == 2
    assert all("is not a subclass of qorus_core.layer.Layer" in e for e in out["errors"])
    assert out["real"] is True


@pytest.mark.parametrize("autoload", [True, False], ids=["plugins", "no-autoload"])
def test_core_commands_come_through_the_core_plugin(autoload):
    """``qorus --help`` lists every core command; the modules that hold them are imported by
    the core plugin's hook, not by the CLI, and none of them imports the CLI. With entry
    points off (QORUS_DISABLE_PLUGIN_AUTOLOAD=1) core's own plugin still loads."""
    env = {} if autoload else {"QORUS_DISABLE_PLUGIN_AUTOLOAD": "1"}
    out = _python(f"""
import contextlib, io, json, sys
import qorus_core.cli as cli
loaded = [m for m in {CLI_MODULES!r} if m in sys.modules]
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    try:
        cli.main(["--help"])
    except SystemExit as exc:
        code = exc.code
help_text = buf.getvalue()
print(json.dumps({{"loaded_before": loaded, "code": code, "help": help_text,
                   "loaded_after": [m for m in {CLI_MODULES!r} if m in sys.modules]}}))
""", **env)
    assert out["loaded_before"] == [] and out["code"] == 0
    assert out["loaded_after"] == list(CLI_MODULES)
    listed = {line.split()[0] for line in out["help"].splitlines() if line.startswith("    ")}
    assert set(CORE_COMMANDS) <= listed, out["help"]
    assert ("generate" in listed) is autoload     # the llm plugin's command: entry points only
    # and the command modules import no CLI
    alone = _python(f"""
import json, sys
for m in {CLI_MODULES!r}:
    __import__(m)
print(json.dumps("qorus_core.cli" in sys.modules))
""", **env)
    assert alone is False


def test_commands_follow_the_default_registry(capsys):
    """Commands are collected per default registry: a registry without the core plugin has no
    ``train``; the next default registry has it again (no order dependence between tests)."""
    try:
        reset_registry(Registry(autoload=False, builtins=False))
        with pytest.raises(SystemExit) as exc:
            cli_mod.main(["--help"])
        assert exc.value.code == 0
        listed = capsys.readouterr().out
        assert "layers" in listed and "train" not in listed and "convert" not in listed
        reset_registry()
        with pytest.raises(SystemExit) as exc:
            cli_mod.main(["train", "--help"])
        assert exc.value.code == 0
        assert "--trust-code" in capsys.readouterr().out
    finally:
        reset_registry()


def test_a_core_command_that_cannot_load_leaves_the_others(monkeypatch, capsys):
    from qorus_core import builtin_plugin

    def broken():
        raise ImportError("no module named 'missing_dependency'")

    table = [(n, h, broken if n == "bench" else load) for n, h, load in builtin_plugin._CORE_COMMANDS]
    monkeypatch.setattr(builtin_plugin, "_CORE_COMMANDS", tuple(table))
    try:
        reset_registry()
        with pytest.raises(SystemExit):
            cli_mod.main(["--help"])
        out, err = capsys.readouterr()
        assert "qorus: command 'bench' unavailable: ImportError: no module named " \
               "'missing_dependency'" in err
        assert "train" in out and "convert" in out and "bench " not in out
    finally:
        monkeypatch.undo()
        reset_registry()


# --- param_shapes: what the llm loader uses instead of tracing a Graph itself ---------------
def test_param_shapes_match_the_compiled_model():
    from qorus_layers_llm import GPT
    from qorus_layers_mlp import Linear, ReLU

    net = Sequential([Linear(6, 5), ReLU(), Linear(5, 3, bias=False)])
    shapes = param_shapes(net, Spec((2, 6)))
    model = Model(net, (6,), kernels="numpy")
    assert shapes == {n: a.shape for n, a in model.parameters().items()}
    assert list(shapes) == list(model.parameters())
    gpt = GPT(32, 8, 1, 2, 16)                     # tied: the head shares the embedding table
    shapes = param_shapes(gpt, Spec((1, 1), "i32"))
    params = Model(gpt, (4,), input_dtype="i32", kernels="numpy").parameters()
    assert shapes == {n: a.shape for n, a in params.items()}
    assert shapes["embed.weight"] == (32, 8) and "head.weight" not in shapes   # the tied alias
    untied = param_shapes(GPT(32, 8, 1, 2, 16, tie_embeddings=False), Spec((1, 1), "i32"))
    assert untied == shapes | {"head.weight": (32, 8)}


def test_param_shapes_refuses_what_it_cannot_trace():
    from qorus_layers_mlp import Linear

    with pytest.raises(ConfigError, match="is not a qorus Layer"):
        param_shapes({"type": "mlp.Linear"}, Spec((1, 4)))
    with pytest.raises(ConfigError, match="input_spec must be a qorus_core.Spec, got tuple"):
        param_shapes(Linear(4, 2), (1, 4))
