"""The ``qorus`` command: subcommands in one table, filled through the plugin hook.

Every subcommand beyond the listings below comes from a plugin's ``qorus_register_commands``
hook, core's own included (``train``, ``bench`` and ``convert``: ``builtin_plugin.py``, the
``core`` plugin), so this module imports none of them and they do not import it::

    @hookimpl
    def qorus_register_commands(add_command):
        add_command("train", "train a model from a TOML config", setup, run)

    def setup(p: argparse.ArgumentParser) -> None: p.add_argument("config")
    def run(args: argparse.Namespace) -> int | None: ...   # None means 0

The commands follow the default registry: they are collected again when it is replaced
(``reset_registry``). A host program may also call ``add_command`` itself. Exit codes: 0 ok,
2 for a ``QorusError`` (one line on stderr; the traceback too when ``QORUS_DEBUG=1``) and for
usage errors (argparse), 1 when the backend cannot be inspected, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import QorusError

SetupParser = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], "int | None"]


@dataclass(frozen=True)
class Command:
    """A subcommand: its ``name`` and ``help`` line, ``setup_parser`` (adds its arguments to
    its argparse parser) and ``run`` (runs it; returns the exit code, None meaning 0)."""
    name: str
    help: str
    setup_parser: SetupParser
    run: Run


_COMMANDS: dict[str, Command] = {}      # this module's listings and the host's add_command
_HOOK_COMMANDS: dict[str, Command] = {}  # from the plugins' hooks (core's own among them)


def add_command(name: str, help: str, setup_parser: SetupParser, run: Run,
                *, replace: bool = False) -> Command:
    """Register subcommand ``name``: ``setup_parser(p)`` adds its arguments, ``run(args)`` runs it."""
    if name in _COMMANDS and not replace:
        raise ValueError(f"qorus subcommand {name!r} is already defined")
    _COMMANDS[name] = cmd = Command(name, help, setup_parser, run)
    return cmd


def _debug() -> bool:
    return os.environ.get("QORUS_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def _load_plugin_commands() -> None:
    """Commands that plugins, ``core`` first, add through the ``qorus_register_commands`` hook
    (once per default registry). Each plugin's hook runs isolated (``Registry.call_plugin_hook``:
    a worker thread, bounded, SystemExit and the like caught); its commands are added only if it
    returned, and a plugin whose hook fails is reported on stderr while the other commands
    still work."""
    global _COMMANDS_REGISTRY
    from .registry import PluginLoadWarning, get_registry

    reg = get_registry()
    if reg is _COMMANDS_REGISTRY:
        return
    _COMMANDS_REGISTRY = None   # set again once complete: an interrupted load is redone
    _HOOK_COMMANDS.clear()
    _PLUGIN_WARNINGS.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PluginLoadWarning)
        plugins = reg.plugins()
    for w in caught:  # plugin failures: one line each, printed by main (see _LISTS_PLUGINS)
        if issubclass(w.category, PluginLoadWarning):
            _PLUGIN_WARNINGS.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    for info in plugins:
        if info.status != "ok":
            continue
        staged: dict[str, Command] = {}

        def add(name: str, help: str, setup_parser: SetupParser, run: Run,
                *, replace: bool = False, _staged: dict[str, Command] = staged) -> Command:
            if name in _staged or ((name in _COMMANDS or name in _HOOK_COMMANDS) and not replace):
                raise ValueError(f"qorus subcommand {name!r} is already defined")
            _staged[name] = cmd = Command(name, help, setup_parser, run)
            return cmd

        error = reg.call_plugin_hook(info.namespace, "qorus_register_commands", {"add_command": add})
        if error is None:
            _HOOK_COMMANDS.update(staged)
        else:
            print(f"qorus: commands from plugin {info.label} unavailable: {error}", file=sys.stderr)
    _COMMANDS_REGISTRY = reg


_COMMANDS_REGISTRY: Any = None   # the registry whose plugins' commands _HOOK_COMMANDS holds
_PLUGIN_WARNINGS: list[str] = []
#: Commands that list failed plugins themselves: no "qorus: warning:" lines before them.
_LISTS_PLUGINS = {"layers", "losses", "optimizers", "callbacks", "plugins"}


def _version() -> str:
    package = sys.modules[__package__]
    return str(getattr(package, "__version__", None) or _dist_version("qorus-core") or "unknown")


def _dist_version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of every registered subcommand."""
    _load_plugin_commands()
    parser = argparse.ArgumentParser(prog="qorus", description="Qorus: deep learning on CPUs.")
    parser.add_argument("--version", action="version", version=f"qorus {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in {**_COMMANDS, **_HOOK_COMMANDS}.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        try:
            cmd.setup_parser(p)
        except (Exception, SystemExit) as exc:  # a plugin's broken command: the others still work
            reason = f"{type(exc).__name__}: {exc}"
            print(f"qorus: command {cmd.name!r} unavailable: {reason}", file=sys.stderr)
            p.set_defaults(_run=_unavailable(cmd.name, reason))
            continue
        p.set_defaults(_run=cmd.run)
    return parser


def _unavailable(name: str, reason: str) -> Run:
    def run(args: argparse.Namespace) -> int:
        print(f"qorus: error: command {name!r} is unavailable: {reason}", file=sys.stderr)
        return 2
    return run


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``qorus``; returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
        if args.command not in _LISTS_PLUGINS:
            for message in _PLUGIN_WARNINGS:
                print(f"qorus: warning: {message}", file=sys.stderr)
        rc = args._run(args)
        sys.stdout.flush()
        return 0 if rc is None else int(rc)
    except QorusError as exc:
        if _debug():
            traceback.print_exc()
        print(f"qorus: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `qorus layers | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


# --- output helpers -----------------------------------------------------------------------
def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _print_table(header: Sequence[str], rows: list[Sequence[Any]]) -> None:
    cells = [[("" if c is None else str(c)) for c in row] for row in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header) - 1)]
    for row in cells:
        print("  ".join([c.ljust(w) for c, w in zip(row, widths)] + [row[-1]]).rstrip())


def _print_mapping(data: dict[str, Any], indent: int = 0) -> None:
    width = max((len(str(k)) for k in data), default=0) + 1
    for key, value in data.items():
        label = " " * indent + f"{key}:".ljust(width)
        if isinstance(value, dict):
            print(label)
            _print_mapping(value, indent + 2)
        elif isinstance(value, (list, tuple, set)):
            print(f"{label} {', '.join(map(str, value)) or '-'}")
        else:
            print(f"{label} {value}")


def _dist(distribution: str | None, version: str | None) -> str:
    return " ".join(x for x in (distribution, version) if x) or "-"


def _loaded_registry():
    """The default registry with plugins loaded; failures are listed, so no warnings."""
    from .registry import PluginLoadWarning, get_registry

    registry = get_registry()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginLoadWarning)
        registry.plugins()
    return registry


# --- built-in subcommands -----------------------------------------------------------------
def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _setup_list(kind: str) -> Callable[[argparse.ArgumentParser], None]:
    def setup(p: argparse.ArgumentParser) -> None:
        _json_flag(p)
        p.add_argument("name", nargs="?", help=f"show one {kind}'s full doc and config keys")
    return setup


def describe(kind: str, name: str) -> dict[str, Any]:
    """One registered entry in full: name, plugin, doc (the class's whole docstring), its
    config keys with their defaults (from the constructor), and a layer's inputs."""
    import inspect

    registry = _loaded_registry()
    cls = registry.get(kind, name)                 # unknown: RegistryError with close matches
    entry = next(e for e in registry.entries(kind) if e.name == cls.registry_name)
    keys = {}
    for key, p in inspect.signature(cls.__init__).parameters.items():
        if key == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        keys[key] = "required" if p.default is p.empty else repr(p.default)
    out = {"name": entry.name, "plugin": entry.plugin,
           "distribution": _dist(entry.distribution, entry.version),
           "doc": inspect.cleandoc(cls.__doc__ or "").strip() or entry.doc, "config": keys}
    if kind == "layer":
        out["inputs"] = list(getattr(cls, "inputs", ("x",)))
    return out


def _list_kind(kind: str) -> Run:
    def run(args: argparse.Namespace) -> int:
        if getattr(args, "name", None):
            info = describe(kind, args.name)
            if args.json:
                _print_json(info)
            else:
                print(f"{info['name']}  ({info['plugin']}, {info['distribution']})\n")
                print(info["doc"] + "\n")
                if "inputs" in info:
                    print(f"inputs: {', '.join(info['inputs'])}")
                print("config keys:" if info["config"] else "config keys: none")
                for key, default in info["config"].items():
                    print(f"  {key} = {default}")
            return 0
        registry = _loaded_registry()
        entries = registry.entries(kind)
        if args.json:
            _print_json([e.to_dict() for e in entries])
        else:
            _print_table(["NAME", "PLUGIN", "DISTRIBUTION", "DESCRIPTION"],
                         [[e.name, e.plugin, _dist(e.distribution, e.version), e.doc]
                          for e in entries])
        failed = [p.label for p in registry.plugins() if p.status != "ok"]
        if failed:
            print(f"note: plugins failed to load: {', '.join(failed)} (see `qorus plugins`)",
                  file=sys.stderr)
        return 0
    return run


def _setup_plugins(p: argparse.ArgumentParser) -> None:
    _json_flag(p)
    p.add_argument("-v", "--verbose", action="store_true", help="tracebacks of failed plugins")


def _run_plugins(args: argparse.Namespace) -> int:
    registry = _loaded_registry()
    plugins = registry.plugins()
    verbose = args.verbose or _debug()
    if args.json:
        _print_json([dict(p.to_dict(), **({"traceback": p.traceback} if verbose else {}))
                     for p in plugins])
    else:
        _print_table(["NAMESPACE", "DISTRIBUTION", "STATUS", "ITEMS", "SOURCE"],
                     [[p.namespace, _dist(p.distribution, p.version), p.status, p.items, p.source]
                      for p in plugins])
        for p in plugins:
            if p.status != "ok":
                print(f"\n{p.label} failed: {p.error}")
                if verbose and p.traceback:
                    print(p.traceback.rstrip())
    if not registry.autoload:
        print("note: entry-point plugins are off (QORUS_DISABLE_PLUGIN_AUTOLOAD)", file=sys.stderr)
    return 0


def _run_backend(args: argparse.Namespace) -> int:
    try:
        from .kernels.info import backend_info
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        if args.json:
            _print_json({"error": reason})
        print(f"qorus: backend info unavailable: {reason}", file=sys.stderr)
        return 1
    info = backend_info()
    if args.json:
        _print_json(info)
    else:
        _print_mapping(info)
    return 0


def _run_version(args: argparse.Namespace) -> int:
    import platform

    import numpy
    import pluggy

    versions = {"qorus-core": _version(), "python": platform.python_version(),
                "numpy": numpy.__version__, "pluggy": pluggy.__version__}
    if args.json:
        _print_json(versions)
    else:
        for name, version in versions.items():
            print(f"{name} {version}")
    return 0


add_command("layers", "list registered layers (NAME: one in full)", _setup_list("layer"),
            _list_kind("layer"))
add_command("losses", "list registered losses (NAME: one in full)", _setup_list("loss"),
            _list_kind("loss"))
add_command("optimizers", "list registered optimizers (NAME: one in full)",
            _setup_list("optimizer"), _list_kind("optimizer"))
add_command("callbacks", "list registered callbacks (NAME: one in full)",
            _setup_list("callback"), _list_kind("callback"))
add_command("plugins", "list plugins, failed ones with the reason", _setup_plugins, _run_plugins)
add_command("backend", "show the kernel backend and CPU features", _json_flag, _run_backend)
add_command("version", "show versions", _json_flag, _run_version)
# `train`, `bench` and `convert` come from the core plugin's hook (builtin_plugin.py).

if __name__ == "__main__":  # `python -m qorus_core.cli`: run the importable module's table
    from qorus_core.cli import main as _main

    sys.exit(_main())
