"""Registry isolation: plugins that exit, interrupt, hang or squat on a namespace fail alone.

Each test writes fake installed distributions (a package plus a ``*.dist-info`` with METADATA
and entry_points.txt) into a temp dir put on sys.path, so ``importlib.metadata`` discovers
them next to the real plugins of this checkout. In-process tests use a fresh ``Registry``;
the CLI tests run ``python -m qorus_core.cli`` in a subprocess, where a plugin really can end
the process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import pytest
from fake_plugins import layer_plugin

from qorus_core.errors import RegistryError
from qorus_core.registry import FIRST_PARTY, PluginLoadWarning, Registry

try:  # Python 3.11+; the backport otherwise
    import tomllib
except ImportError:  # pragma: no cover - depends on the Python version
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[1]
PREFIX = "qorus_iso_"  # every fake module; forgotten after each test

GOOD = layer_plugin("IsoScale", "A layer from a well-behaved third-party plugin.")
EXIT_ON_IMPORT = "import sys\nsys.exit(3)\n"
RAISE_IN_HOOK = '''
from qorus_core.hookspecs import hookimpl
from qorus_core.layer import Layer


class Doomed(Layer):
    """Registered just before the hook raises: must not be committed."""


@hookimpl
def qorus_register_layers(register):
    register(Doomed)
    raise {exc}
'''
# The hook blocks until the test sets RELEASE, then tries to register (too late) and says so.
SLOW_HOOK = '''
import threading

from qorus_core.hookspecs import hookimpl
from qorus_core.layer import Layer

RELEASE, DONE, LATE = threading.Event(), threading.Event(), []


class Late(Layer):
    """Registered after the deadline: must never be committed."""


@hookimpl
def qorus_register_layers(register):
    RELEASE.wait(60)
    try:
        register(Late)
    except BaseException as exc:
        LATE.append(exc)
    DONE.set()
'''
SLEEP_FOREVER = '''
import os
import time

from qorus_core.hookspecs import hookimpl


@hookimpl
def qorus_register_layers(register):
    marker = os.environ.get("QORUS_ISO_MARKER")
    if marker:
        open(marker, "w").close()
    while True:
        time.sleep(3600)
'''
IMPOSTOR = layer_plugin("Linear", "An impostor's Linear: must never be what mlp.Linear resolves to.")
COMMAND_EXIT = GOOD.replace("IsoScale", "CmdScale") + '''

@hookimpl
def qorus_register_commands(add_command):
    add_command("iso-never", "never added", lambda p: None, lambda args: 0)
    raise SystemExit(4)
'''
BAD_SETUP = GOOD.replace("IsoScale", "SetupScale") + '''

def setup(parser):
    raise SystemExit(6)


@hookimpl
def qorus_register_commands(add_command):
    add_command("iso-broken", "its setup_parser exits", setup, lambda args: 0)
'''
# Fires a simulated Ctrl-C at the main thread once (as a SIGINT would), then waits for RELEASE.
INTERRUPT_MAIN = '''
import _thread
import signal
import threading

from qorus_core.hookspecs import hookimpl
from qorus_core.layer import Layer

FIRED, RELEASE = [], threading.Event()


class AfterCtrlC(Layer):
    """Registered by the second, uninterrupted load."""


@hookimpl
def qorus_register_layers(register):
    if not FIRED:
        FIRED.append(True)
        _thread.interrupt_main(signal.SIGINT)
        RELEASE.wait(60)
    register(AfterCtrlC)
'''


def make_dist(site: Path, dist: str, namespace: str, source: str, version: str = "0.1") -> str:
    """Install a fake distribution ``dist`` into ``site``: module ``qorus_iso_*``, one entry point."""
    module = PREFIX + dist.replace("-", "_")
    (site / module).mkdir()
    (site / module / "__init__.py").write_text("")
    (site / module / "plugin.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[qorus]\n{namespace} = {module}.plugin\n")
    return module


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    for var in ("QORUS_DISABLE_PLUGIN_AUTOLOAD", "QORUS_STRICT_PLUGINS", "QORUS_PLUGIN_TIMEOUT",
                "QORUS_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    yield
    for name in [m for m in sys.modules if m.startswith(PREFIX)]:
        del sys.modules[name]


@pytest.fixture
def site(tmp_path, monkeypatch) -> Path:
    """A directory for fake distributions, put on sys.path by ``use``."""
    root = tmp_path / "site"
    root.mkdir()
    return root


def use(site: Path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(site))  # also invalidates the import caches


def load(registry: Registry) -> dict[tuple[str, str | None], object]:
    """Load, expecting at least one failure warning; (namespace, distribution) -> PluginInfo."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PluginLoadWarning)
        plugins = {(p.namespace, p.distribution): p for p in registry.plugins()}
    assert any(issubclass(w.category, PluginLoadWarning) for w in caught)
    return plugins


def join_worker(namespace: str) -> None:
    """Wait for an abandoned worker (released by the test) to end: no thread outlives a test."""
    for thread in threading.enumerate():
        if thread.name == f"qorus-plugin-{namespace}":
            thread.join(30)
            assert not thread.is_alive()


def assert_others_work(registry: Registry) -> None:
    from qorus_layers_mlp import Linear

    assert registry.get("layer", "mlp.Linear") is Linear
    assert registry.get("layer", "isogood.IsoScale").__name__ == "IsoScale"
    assert registry.get("layer", "core.Sequential").__name__ == "Sequential"


# --- exits and interrupts raised by plugin code ---------------------------------------------
def test_import_calling_sys_exit_fails_that_plugin_only(site, monkeypatch):
    make_dist(site, "qorus-iso-good", "isogood", GOOD)
    make_dist(site, "qorus-iso-exit", "isoexit", EXIT_ON_IMPORT)
    use(site, monkeypatch)
    r = Registry()
    bad = load(r)[("isoexit", "qorus-iso-exit")]
    assert bad.status == "failed" and bad.items == 0
    assert bad.error == "SystemExit(3): the plugin called sys.exit() (on import)"
    assert isinstance(bad.exception, SystemExit) and "sys.exit(3)" in bad.traceback
    assert_others_work(r)


@pytest.mark.parametrize("exc", ["KeyboardInterrupt", "SystemExit('bye')", "GeneratorExit"])
def test_hook_raising_a_base_exception_fails_that_plugin_only(site, monkeypatch, exc):
    make_dist(site, "qorus-iso-good", "isogood", GOOD)
    make_dist(site, "qorus-iso-raiser", "isoraise", RAISE_IN_HOOK.format(exc=exc))
    use(site, monkeypatch)
    r = Registry()
    bad = load(r)[("isoraise", "qorus-iso-raiser")]
    assert bad.status == "failed" and bad.items == 0
    assert bad.error.startswith(exc.split("(")[0])
    assert bad.error.endswith("(in hook qorus_register_layers)")
    assert "isoraise.Doomed" not in [e.name for e in r.entries("layer")]
    assert r.pm.get_plugin("isoraise") is None  # no hook of it runs later either
    with pytest.raises(RegistryError, match=r"plugin 'isoraise' \(qorus-iso-raiser 0\.1\)"):
        r.get("layer", "isoraise.Doomed")
    assert_others_work(r)


def test_add_plugin_reports_a_keyboard_interrupt_of_the_plugin_as_its_failure():
    class Plugin:
        from qorus_core.hookspecs import hookimpl

        @staticmethod
        @hookimpl
        def qorus_register_layers(register):
            raise KeyboardInterrupt

    r = Registry(autoload=False, builtins=False)
    with pytest.raises(RegistryError, match="KeyboardInterrupt raised by the plugin") as err:
        r.add_plugin("kbi", Plugin())
    assert isinstance(err.value.__cause__, KeyboardInterrupt)
    assert [(p.namespace, p.status) for p in r.plugins()] == [("kbi", "failed")]


# --- hangs ------------------------------------------------------------------------------------
def test_hook_that_hangs_times_out_and_its_late_items_are_never_committed(site, monkeypatch):
    make_dist(site, "qorus-iso-good", "isogood", GOOD)
    module = make_dist(site, "qorus-iso-slow", "isoslow", SLOW_HOOK)
    use(site, monkeypatch)
    monkeypatch.setenv("QORUS_PLUGIN_TIMEOUT", "0.5")
    r = Registry()
    assert r.timeout == 0.5
    start = time.monotonic()
    slow = load(r)[("isoslow", "qorus-iso-slow")]
    assert time.monotonic() - start < 30  # cut at the timeout, not after the hook's 60 s
    assert slow.status == "failed"
    assert slow.error.startswith("did not finish loading within 0.5 s")
    assert "in hook qorus_register_layers" in slow.error
    assert "RELEASE.wait" in slow.traceback  # where it was stuck
    assert_others_work(r)
    plugin = sys.modules[module + ".plugin"]
    plugin.RELEASE.set()  # let it finish now: what it registers is refused and never used
    assert plugin.DONE.wait(30)
    join_worker("isoslow")
    assert isinstance(plugin.LATE[0], RegistryError)
    assert "isoslow.Late" not in [e.name for e in r.entries("layer")]
    assert r.pm.get_plugin("isoslow") is None


def test_loading_leaves_no_thread_behind_and_keeps_its_order(site, monkeypatch):
    make_dist(site, "qorus-iso-good", "isogood", GOOD)
    use(site, monkeypatch)
    before = threading.active_count()
    first, second = Registry(), Registry()
    names = [p.namespace for p in first.plugins()]
    assert names == [p.namespace for p in second.plugins()]
    assert names[0] == "core" and names[1:] == sorted(names[1:]) and "isogood" in names
    assert all(p.status == "ok" for p in first.plugins())
    assert threading.active_count() == before


@pytest.mark.parametrize("raw", ["abc", "0", "-1", "nan", ""])
def test_plugin_timeout_must_be_a_positive_number(monkeypatch, raw):
    monkeypatch.setenv("QORUS_PLUGIN_TIMEOUT", raw)
    if raw == "":
        assert Registry(autoload=False).timeout == 30.0  # unset: the default
        return
    with pytest.raises(RegistryError, match="QORUS_PLUGIN_TIMEOUT"):
        Registry(autoload=False)
    monkeypatch.setenv("QORUS_PLUGIN_TIMEOUT", "inf")
    assert Registry(autoload=False).timeout == float("inf")
    with pytest.raises(RegistryError, match="timeout True"):
        Registry(autoload=False, timeout=True)


# --- a real Ctrl-C still interrupts ---------------------------------------------------------
def test_ctrl_c_while_loading_interrupts_and_leaves_the_registry_unloaded(site, monkeypatch):
    make_dist(site, "qorus-iso-good", "isogood", GOOD)
    module = make_dist(site, "qorus-iso-ctrlc", "isoctrlc", INTERRUPT_MAIN)
    use(site, monkeypatch)
    # A run started in the background (`cmd &`, nohup, some CI runners) inherits SIGINT
    # ignored, and then interrupt_main does nothing: give this test Python's own handler.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        r = Registry()
        with pytest.raises(KeyboardInterrupt):
            r.plugins()  # the signal reaches the waiting main thread: it interrupts, not a failure
    finally:
        signal.signal(signal.SIGINT, previous)
    sys.modules[module + ".plugin"].RELEASE.set()
    join_worker("isoctrlc")
    assert r.pm.get_plugins() == set() and not r._loaded  # nothing half-loaded kept
    plugins = {p.namespace: p for p in r.plugins()}  # the next use loads again, completely
    assert plugins["isoctrlc"].status == "ok"
    assert r.get("layer", "AfterCtrlC").__name__ == "AfterCtrlC"
    assert_others_work(r)


def test_sigint_to_the_process_during_loading_ends_the_command(site, tmp_path):
    make_dist(site, "qorus-iso-sleeper", "isosleep", SLEEP_FOREVER)
    marker = tmp_path / "hook-started"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(REPO)]),
               QORUS_PLUGIN_TIMEOUT="120", QORUS_ISO_MARKER=str(marker))
    # SIGINT may be ignored by whoever started the test run: give the child Python's handler.
    code = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from qorus_core.cli import main; sys.exit(main(['plugins']))")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():  # the hook is running: the main thread waits for it
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "NAMESPACE" not in out and "failed" not in out


# --- namespaces -------------------------------------------------------------------------------
def test_first_party_table_matches_the_plugins_pyproject_files():
    found = {}
    for path in [*REPO.glob("qorus_layers_*/pyproject.toml"), *REPO.glob("plugins/*/pyproject.toml")]:
        project = tomllib.loads(path.read_text())["project"]
        for namespace in project.get("entry-points", {}).get("qorus", {}):
            found[namespace] = project["name"]
    assert found == {k: v for k, v in FIRST_PARTY.items() if k != "core"}
    assert FIRST_PARTY["core"] == tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["name"]


@pytest.mark.parametrize("impostor", ["aaa-impostor-mlp", "zzz-impostor-mlp"])
def test_impostor_of_a_first_party_namespace_is_refused_whatever_the_order(
        site, monkeypatch, impostor):
    make_dist(site, "qorus-iso-good", "isogood", GOOD)
    module = make_dist(site, impostor, "mlp", IMPOSTOR)
    use(site, monkeypatch)
    r = Registry()
    plugins = load(r)
    bad, real = plugins[("mlp", impostor)], plugins[("mlp", "qorus-layers-mlp")]
    assert real.status == "ok" and bad.status == "failed"
    assert f"belongs to the first-party distribution qorus-layers-mlp; {impostor} 0.1" in bad.error
    assert module not in sys.modules  # refused before anything of it ran
    assert_others_work(r)  # mlp.Linear is the real one
    with pytest.raises(RegistryError, match=f"{impostor}.*qorus-layers-mlp"):
        Registry(strict=True).entries("layer")


def test_two_third_party_distributions_with_one_namespace_are_both_refused(site, monkeypatch):
    make_dist(site, "qorus-iso-good", "isogood", GOOD)
    a = make_dist(site, "qorus-iso-shared-a", "isoshared", GOOD.replace("IsoScale", "FromA"))
    b = make_dist(site, "qorus-iso-shared-b", "isoshared", GOOD.replace("IsoScale", "FromB"))
    use(site, monkeypatch)
    r = Registry()
    plugins = load(r)
    for dist in ("qorus-iso-shared-a", "qorus-iso-shared-b"):
        info = plugins[("isoshared", dist)]
        assert info.status == "failed"
        assert ("claimed by 2 distributions: qorus-iso-shared-a 0.1, qorus-iso-shared-b 0.1"
                in info.error)
    assert a not in sys.modules and b not in sys.modules
    assert not [e for e in r.entries() if e.plugin == "isoshared"]
    with pytest.raises(RegistryError, match="failed to load: namespace 'isoshared' is claimed"):
        r.get("layer", "isoshared.FromA")
    assert_others_work(r)
    with pytest.raises(RegistryError, match="qorus-iso-shared-a 0.1, qorus-iso-shared-b 0.1"):
        Registry(strict=True).entries("layer")


# --- the CLI keeps working ------------------------------------------------------------------
def run_cli(site: Path, *commands: list[str]) -> list[subprocess.CompletedProcess]:
    """Run ``python -m qorus_core.cli`` once per command, all at once, seeing ``site``."""
    # 1 s: the sleeper's bound, far above what a real plugin takes to load (~20 ms) even in
    # five processes started at once on a loaded 2-core machine
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(REPO)]),
               QORUS_PLUGIN_TIMEOUT="1")
    for var in ("QORUS_DISABLE_PLUGIN_AUTOLOAD", "QORUS_STRICT_PLUGINS", "QORUS_ISO_MARKER"):
        env.pop(var, None)
    procs = [subprocess.Popen([sys.executable, "-m", "qorus_core.cli", *args], text=True, env=env,
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for args in commands]
    done = []
    for args, proc in zip(commands, procs):
        try:
            out, err = proc.communicate(timeout=120)
        finally:
            proc.kill()
        done.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
    return done


def test_cli_plugins_and_layers_survive_every_bad_plugin(site):
    make_dist(site, "qorus-iso-good", "isogood", GOOD)
    make_dist(site, "qorus-iso-exit", "isoexit", EXIT_ON_IMPORT)
    make_dist(site, "qorus-iso-kbi", "isokbi", RAISE_IN_HOOK.format(exc="KeyboardInterrupt"))
    make_dist(site, "qorus-iso-sysexit", "isosysexit", RAISE_IN_HOOK.format(exc="SystemExit(5)"))
    make_dist(site, "qorus-iso-sleeper", "isosleep", SLEEP_FOREVER)
    make_dist(site, "aaa-impostor-mlp", "mlp", IMPOSTOR)
    make_dist(site, "qorus-iso-shared-a", "isoshared", GOOD.replace("IsoScale", "FromA"))
    make_dist(site, "qorus-iso-shared-b", "isoshared", GOOD.replace("IsoScale", "FromB"))
    make_dist(site, "qorus-iso-cmdexit", "isocmd", COMMAND_EXIT)
    make_dist(site, "qorus-iso-badsetup", "isosetup", BAD_SETUP)
    expected = {  # (namespace, distribution) -> part of the reason
        ("isoexit", "qorus-iso-exit"): "SystemExit(3): the plugin called sys.exit() (on import)",
        ("isokbi", "qorus-iso-kbi"): "KeyboardInterrupt raised by the plugin's own code",
        ("isosysexit", "qorus-iso-sysexit"): "SystemExit(5): the plugin called sys.exit()",
        ("isosleep", "qorus-iso-sleeper"): "did not finish loading within 1 s",
        ("mlp", "aaa-impostor-mlp"): "belongs to the first-party distribution qorus-layers-mlp",
        ("isoshared", "qorus-iso-shared-a"): "claimed by 2 distributions",
        ("isoshared", "qorus-iso-shared-b"): "claimed by 2 distributions",
    }
    text, js, layers, other, usage = run_cli(
        site, ["plugins"], ["plugins", "--json"], ["layers", "--json"], ["iso-broken"],
        ["iso-never"])
    assert text.returncode == 0, text.stderr
    for (namespace, dist), reason in expected.items():
        assert f"'{namespace}' ({dist} 0.1) failed: " in text.stdout
        assert reason in text.stdout
    assert "commands from plugin 'isocmd' (qorus-iso-cmdexit 0.1) unavailable: SystemExit(4)" \
        in text.stderr
    assert "Warning" not in text.stderr  # listed on stdout, not repeated as warnings
    assert js.returncode == 0, js.stderr
    rows = {(p["namespace"], p["distribution"]): p for p in json.loads(js.stdout)}
    for key, reason in expected.items():
        assert rows[key]["status"] == "failed" and reason in rows[key]["error"]
    assert rows[("mlp", "qorus-layers-mlp")]["status"] == "ok"
    assert rows[("isocmd", "qorus-iso-cmdexit")]["status"] == "ok"  # its layers still load
    assert layers.returncode == 0, layers.stderr
    by_name = {x["name"]: x for x in json.loads(layers.stdout)}
    assert by_name["mlp.Linear"]["distribution"] == "qorus-layers-mlp"
    assert {"isogood.IsoScale", "isocmd.CmdScale", "core.Sequential"} <= set(by_name)
    assert not [n for n in by_name if n.split(".")[0] in ("isoshared", "isokbi", "isosysexit")]
    assert "aaa-impostor-mlp" in layers.stderr  # the note names the failed plugins
    # not a listing: one warning line per failed plugin
    assert other.returncode == 2
    assert "command 'iso-broken' is unavailable: SystemExit: 6" in other.stderr
    warned = [x for x in other.stderr.splitlines() if x.startswith("qorus: warning: ")]
    assert len(warned) == len(expected) and "Traceback" not in other.stderr
    assert all(f"({dist} 0.1) failed to load" in "".join(warned) for _, dist in expected)
    assert usage.returncode == 2 and "invalid choice: 'iso-never'" in usage.stderr
    assert "'iso-broken'" in usage.stderr  # listed among the choices; iso-never never added


# --- a module that uses the registry while it is being imported -----------------------------
LOOKS_UP_ON_IMPORT = GOOD.replace("IsoScale", "SelfScale") + '''

from qorus_core.registry import get_registry

SEEN = [e.name for e in get_registry().entries("layer")]   # loads the registry mid-import
'''


def test_a_plugin_that_loads_the_registry_as_it_is_imported_does_not_wait_for_itself(
        site, monkeypatch):
    """A worker importing the module this thread is importing would wait for its import lock
    while this thread waits for the worker: such a load runs in this thread instead."""
    import importlib

    from qorus_core.registry import get_registry, reset_registry

    module = make_dist(site, "qorus-iso-self", "isoself", LOOKS_UP_ON_IMPORT)
    use(site, monkeypatch)
    monkeypatch.setenv("QORUS_PLUGIN_TIMEOUT", "60")
    reset_registry(Registry())
    try:
        start = time.monotonic()
        plugin = importlib.import_module(module + ".plugin")   # the host imports it first
        assert time.monotonic() - start < 10          # not a 60 s wait for a timeout
        info = {p.namespace: p for p in get_registry().plugins()}["isoself"]
        assert info.status == "ok", info.error
        assert "mlp.Linear" in plugin.SEEN            # looked up while loading: committed ones
        assert get_registry().get("layer", "isoself.SelfScale") is plugin.SelfScale
        get_registry().add_plugin("isoafter", type("After", (), {})())   # the marker was reset
    finally:
        reset_registry()


# --- Registry.call_plugin_hook: one mechanism for every hook called after loading -------------
class _Hooks:
    """A plugin whose train-finished hook does what ``action`` says, recording its thread."""

    def __init__(self, action=None):
        self.action, self.threads = action, []

    from qorus_core.hookspecs import hookimpl

    @hookimpl
    def qorus_train_finished(self, model, config, out_dir, echo):
        self.threads.append(threading.current_thread())
        if self.action is not None:
            self.action()


def _hook_registry(action=None, timeout=30.0):
    r = Registry(autoload=False, builtins=False, timeout=timeout)
    hooks = _Hooks(action)
    r.add_plugin("hooks", hooks)
    r.add_plugin("bare", type("Bare", (), {})())
    return r, hooks


KWARGS = {"model": None, "config": {}, "out_dir": None, "echo": print}


def test_call_plugin_hook_bounded_in_a_worker_unbounded_here():
    r, hooks = _hook_registry()
    before = threading.active_count()
    assert r.call_plugin_hook("hooks", "qorus_train_finished", KWARGS) is None
    assert hooks.threads[-1].name == "qorus-hook-hooks"
    assert r.call_plugin_hook("hooks", "qorus_train_finished", KWARGS, bounded=False) is None
    assert hooks.threads[-1] is threading.current_thread()
    assert r.call_plugin_hook("bare", "qorus_train_finished", KWARGS) is None   # no such hook
    assert len(hooks.threads) == 2 and threading.active_count() == before
    with pytest.raises(RegistryError, match="no loaded plugin 'nope'"):
        r.call_plugin_hook("nope", "qorus_train_finished", KWARGS)
    with pytest.raises(RegistryError, match="unknown hook 'qorus_train_finishd'; known: .*"
                                            "qorus_train_finished"):
        r.call_plugin_hook("hooks", "qorus_train_finishd", KWARGS)   # a typo calls nothing
    with pytest.raises(RegistryError, match="kwargs must be a dict"):
        r.call_plugin_hook("hooks", "qorus_train_finished", [KWARGS])


def test_call_plugin_hook_reports_what_the_hook_raises():
    def exits():
        sys.exit(7)

    def interrupts():
        raise KeyboardInterrupt

    for bounded in (True, False):
        r, _ = _hook_registry(exits)
        assert (r.call_plugin_hook("hooks", "qorus_train_finished", KWARGS, bounded=bounded)
                == "SystemExit(7): the plugin called sys.exit()")
    r, _ = _hook_registry(interrupts)
    assert "KeyboardInterrupt raised by the plugin's own code" in r.call_plugin_hook(
        "hooks", "qorus_train_finished", KWARGS)      # in a worker: plugin code, not a Ctrl-C
    with pytest.raises(KeyboardInterrupt):            # here: cannot be told from a Ctrl-C
        r.call_plugin_hook("hooks", "qorus_train_finished", KWARGS, bounded=False)


def test_call_plugin_hook_bounded_times_out_and_the_worker_ends_when_released():
    release = threading.Event()
    r, hooks = _hook_registry(lambda: release.wait(30), timeout=0.2)
    start = time.monotonic()
    reason = r.call_plugin_hook("hooks", "qorus_train_finished", KWARGS)
    assert time.monotonic() - start < 10
    assert reason == "hook qorus_train_finished did not finish within 0.2 s (QORUS_PLUGIN_TIMEOUT)"
    release.set()
    hooks.threads[-1].join(30)
    assert not hooks.threads[-1].is_alive()


@pytest.mark.parametrize("kwargs,match", [
    ({"autoload": "no"}, "autoload must be True or False, got 'no'"),
    ({"strict": 1}, "strict must be True or False"),
    ({"builtins": None}, "builtins must be True or False"),
    ({"group": ""}, "group must be an entry-point group name"),
])
def test_registry_arguments_are_checked(kwargs, match):
    with pytest.raises(RegistryError, match=match):
        Registry(**kwargs)


def test_lookups_and_add_plugin_refuse_wrong_types():
    r = Registry(autoload=False, builtins=False)
    with pytest.raises(RegistryError, match=r"layer name must be a string, got \['x'\]"):
        r.get("layer", ["x"])
    with pytest.raises(RegistryError, match=r"unknown kind \['layer'\]"):
        r.get(["layer"], "x")
    with pytest.raises(RegistryError, match="bad plugin namespace 3"):
        r.add_plugin(3, object())
    with pytest.raises(RegistryError, match="dist 5: expected a distribution name"):
        r.add_plugin("fine", object(), dist=5)
