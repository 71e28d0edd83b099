"""Third-party plugins as real installed distributions: pip-install into a temp dir, discover.

Three packages: a good one (namespace ``demo``), one that fails to import (``broken``), and a
second distribution claiming ``demo`` (a clash: both are refused, so it lives in a directory of
its own that only the clash test puts on sys.path). No network: --no-deps --no-build-isolation
--no-index, with the setuptools already installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
from fake_plugins import layer_plugin

from qorus_core.errors import RegistryError
from qorus_core.registry import PluginLoadWarning, Registry

try:  # a budget for the whole module when pytest-timeout is there; pip has its own below
    import pytest_timeout  # noqa: F401

    pytestmark = pytest.mark.timeout(300)
except ImportError:
    pytestmark = []

PIP_TIMEOUT_S = 240
REPO = Path(__file__).resolve().parents[1]

GOOD = layer_plugin("Amplify", "Multiplies its input by a constant.")
BROKEN = "import qorus_demo_missing_dependency  # noqa: F401\n"
CLASH = GOOD.replace("Amplify", "Other")


def write_package(root: Path, dist: str, version: str, namespace: str, plugin_src: str) -> Path:
    module = dist.replace("-", "_")
    pkg = root / dist
    (pkg / module).mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{dist}"
        version = "{version}"

        [project.entry-points.qorus]
        {namespace} = "{module}.plugin"

        [tool.setuptools]
        packages = ["{module}"]
        """))
    (pkg / module / "__init__.py").write_text("")
    (pkg / module / "plugin.py").write_text(plugin_src)
    return pkg


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A directory holding the three installed distributions (dist-info included)."""
    if importlib.util.find_spec("pip") is None or importlib.util.find_spec("setuptools") is None:
        pytest.skip("pip and setuptools are needed to install test plugins")
    src = tmp_path_factory.mktemp("src")
    target = tmp_path_factory.mktemp("site")
    pkgs = [write_package(src, "qorus-demo-good", "1.2.3", "demo", GOOD),
            write_package(src, "qorus-demo-broken", "0.0.1", "broken", BROKEN),
            write_package(src, "qorus-demo-other", "9.9", "demo", CLASH)]
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
           "--no-index", "--target", str(target), *map(str, pkgs)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=PIP_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    clash = target.with_name(target.name + "-clash")
    clash.mkdir()
    for path in target.glob("qorus_demo_other*"):  # the package and its dist-info
        shutil.move(str(path), str(clash / path.name))
    return target


@pytest.fixture
def clash_site(site) -> Path:
    """The directory holding qorus-demo-other, the second distribution claiming ``demo``."""
    return site.with_name(site.name + "-clash")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    """No outer QORUS_* switches; forget the demo modules imported by a test."""
    for var in ("QORUS_DISABLE_PLUGIN_AUTOLOAD", "QORUS_STRICT_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    yield
    for name in [m for m in sys.modules if m.startswith("qorus_demo_")]:
        del sys.modules[name]


@pytest.fixture
def registry(site, monkeypatch) -> Registry:
    """A fresh registry that sees the installed packages (and whatever else is installed)."""
    monkeypatch.syspath_prepend(str(site))
    return Registry()


def load(registry: Registry) -> dict:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PluginLoadWarning)
        plugins = {(p.namespace, p.distribution): p for p in registry.plugins()}
    assert any("broken" in str(w.message) for w in caught)
    return plugins


def test_installed_plugin_is_discovered_with_its_distribution(registry):
    plugins = load(registry)
    good = plugins[("demo", "qorus-demo-good")]
    assert (good.status, good.version, good.items) == ("ok", "1.2.3", 1)
    entry = registry.entry("layer", "demo.Amplify")
    assert (entry.distribution, entry.version) == ("qorus-demo-good", "1.2.3")
    assert entry.doc == "Multiplies its input by a constant."
    assert registry.get("layer", "Amplify").registry_name == "demo.Amplify"


def test_broken_package_is_reported_and_the_rest_works(registry):
    plugins = load(registry)
    broken = plugins[("broken", "qorus-demo-broken")]
    assert (broken.status, broken.version) == ("failed", "0.0.1")
    assert "qorus_demo_missing_dependency" in broken.error
    assert registry.get("layer", "demo.Amplify").__name__ == "Amplify"


def test_two_distributions_claiming_a_namespace_are_both_refused(site, clash_site, monkeypatch):
    monkeypatch.syspath_prepend(str(clash_site))
    monkeypatch.syspath_prepend(str(site))
    plugins = load(Registry())
    for dist in ("qorus-demo-good", "qorus-demo-other"):  # neither wins by name order
        assert plugins[("demo", dist)].status == "failed"
        assert "qorus-demo-good 1.2.3" in plugins[("demo", dist)].error
        assert "qorus-demo-other 9.9" in plugins[("demo", dist)].error
    assert "qorus_demo_good" not in sys.modules and "qorus_demo_other" not in sys.modules


def test_strict_mode_refuses_the_broken_package(site, monkeypatch):
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(RegistryError, match="qorus-demo-broken"):
        Registry(strict=True, autoload=True).entries("layer")


def test_cli_lists_the_installed_plugin(site):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(REPO)]))
    run = [sys.executable, "-m", "qorus_core.cli"]
    out = subprocess.run([*run, "layers", "--json"], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    layers = {x["name"]: x for x in json.loads(out.stdout)}
    assert layers["demo.Amplify"]["distribution"] == "qorus-demo-good"
    assert "core.Sequential" in layers
    out = subprocess.run([*run, "plugins", "--json"], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    failed = {p["distribution"]: p["error"] for p in json.loads(out.stdout) if p["status"] != "ok"}
    assert "qorus_demo_missing_dependency" in failed["qorus-demo-broken"]
