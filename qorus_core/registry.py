"""The registry: plugins found through entry points, their items under namespaced names.

Loading happens once, lazily, on first use: the built-in plugin (namespace ``core``), then each
entry point of the group ``qorus`` on its own (name = namespace, value = module or object
carrying hookimpls). A plugin that fails (import error, hook error, bad or clashing name) is
recorded with its reason and registers nothing; everything else works. Strict mode raises
instead. Modelled on pluggy's ``PluginManager.load_setuptools_entrypoints``, but one plugin
at a time, so every item knows which plugin and distribution it came from.

Environment: ``QORUS_DISABLE_PLUGIN_AUTOLOAD=1`` skips entry points (explicit
``add_plugin`` still works); ``QORUS_STRICT_PLUGINS=1`` turns the first failure into an error.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import re
import sys
import threading
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pluggy

try:  # the backport tracks the newest behaviour; the stdlib module is the same API
    import importlib_metadata as metadata
except ImportError:  # pragma: no cover - depends on the environment
    import importlib.metadata as metadata  # type: ignore[no-redef]

from . import hookspecs
from .errors import RegistryError

ENTRY_POINT_GROUP = "qorus"
BUILTIN_NAMESPACE = "core"
#: kind -> the hook that registers items of that kind.
KINDS: dict[str, str] = {
    "layer": "qorus_register_layers",
    "loss": "qorus_register_losses",
    "optimizer": "qorus_register_optimizers",
}
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*\Z")


class PluginLoadWarning(RuntimeWarning):
    """An auto-loaded plugin failed; it is listed by ``qorus plugins`` with the reason."""


@dataclass(frozen=True)
class Entry:
    """One registered item: full name ``plugin.local_name``, its object and provenance."""

    name: str
    kind: str
    obj: Any = field(repr=False)
    plugin: str
    distribution: str | None
    version: str | None
    doc: str

    @property
    def local_name(self) -> str:
        return self.name.split(".", 1)[1]

    def to_dict(self) -> dict[str, Any]:
        target = f"{getattr(self.obj, '__module__', '?')}:{getattr(self.obj, '__qualname__', '?')}"
        return {"name": self.name, "kind": self.kind, "plugin": self.plugin,
                "distribution": self.distribution, "version": self.version,
                "doc": self.doc, "object": target}


@dataclass
class PluginInfo:
    """One plugin load attempt: status ``"ok"`` or ``"failed"`` (then ``error`` says why)."""

    namespace: str
    distribution: str | None
    version: str | None
    source: str
    status: str = "ok"
    error: str | None = None
    items: int = 0
    traceback: str | None = field(default=None, repr=False)
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    @property
    def label(self) -> str:
        """``'mlp' (qorus-layers-mlp 0.1.0)``: how error messages name a plugin."""
        dist = " ".join(x for x in (self.distribution, self.version) if x) or self.source
        return f"{self.namespace!r} ({dist})"

    def to_dict(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "distribution": self.distribution,
                "version": self.version, "status": self.status, "error": self.error,
                "items": self.items, "source": self.source}


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _first_line(doc: str | None) -> str:
    lines = inspect.cleandoc(doc).strip().splitlines() if doc else []
    return lines[0].strip() if lines else ""


def _dist_info(dist: str | metadata.Distribution | None) -> tuple[str | None, str | None]:
    if dist is None:
        return None, None
    if isinstance(dist, str):
        try:
            dist = metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            return dist, None
    return dist.metadata["Name"], dist.version


def _layer_base() -> type | None:
    """``qorus_core.layer.Layer``, or None while that module does not exist yet."""
    try:
        from .layer import Layer
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.layer":
            raise
        return None
    return Layer


class Registry:
    """Namespaced layers, losses and optimizers from plugins, loaded lazily on first use.

    ``autoload``/``strict`` default to the environment (see module doc); ``builtins=False``
    leaves out the ``core`` plugin (for tests). Full names are unique because namespaces are
    (a second plugin claiming one fails, naming both) and a plugin cannot repeat a name.
    ``pm`` is the pluggy PluginManager, for hooks beyond registration.
    """

    def __init__(self, *, autoload: bool | None = None, strict: bool | None = None,
                 builtins: bool = True, group: str = ENTRY_POINT_GROUP) -> None:
        self.autoload = not _env_flag("QORUS_DISABLE_PLUGIN_AUTOLOAD") if autoload is None else autoload
        self.strict = _env_flag("QORUS_STRICT_PLUGINS") if strict is None else strict
        self.builtins = builtins
        self.group = group
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self._by_local: dict[str, dict[str, list[str]]] = {kind: {} for kind in KINDS}
        self._plugins: list[PluginInfo] = []
        self._lock = threading.RLock()
        self._loaded = False
        self._strict_error: RegistryError | None = None

    # --- loading --------------------------------------------------------------------
    def add_plugin(self, namespace: str, plugin: Any,
                   dist: str | metadata.Distribution | None = None) -> PluginInfo:
        """Load ``plugin`` (a module or object with hookimpls) under ``namespace`` now.

        Raises RegistryError if it fails (the failure is recorded in ``plugins()`` too).
        """
        self._ensure_loaded()
        source = getattr(plugin, "__name__", None) or type(plugin).__name__
        with self._lock:
            info = self._load(namespace, source, lambda: plugin, *_dist_info(dist))
        if info.status != "ok":
            raise RegistryError(f"plugin {info.label} failed to load: {info.error}") from info.exception
        return info

    def _ensure_loaded(self) -> None:
        with self._lock:
            if not self._loaded:
                self._loaded = True  # first: a hook that looks names up must not recurse
                if self.builtins:
                    name = f"{__package__}.builtin_plugin"
                    dist, version = _dist_info("qorus-core")
                    version = version or getattr(sys.modules[__package__], "__version__", None)
                    self._autoload(BUILTIN_NAMESPACE, name,
                                   lambda: importlib.import_module(name), dist, version)
                if self.autoload:
                    eps = metadata.entry_points(group=self.group)
                    for ep in sorted(eps, key=lambda e: (e.name, _dist_info(e.dist)[0] or "")):
                        if self.builtins and ep.value == f"{__package__}.builtin_plugin":
                            continue  # qorus-core's own entry point: loaded above already
                        self._autoload(ep.name, ep.value, ep.load, *_dist_info(ep.dist))
            if self._strict_error is not None:
                raise self._strict_error

    def _autoload(self, namespace: str, source: str, loader: Callable[[], Any],
                  dist: str | None, version: str | None) -> None:
        info = self._load(namespace, source, loader, dist, version)
        if info.status == "ok":
            return
        message = f"qorus plugin {info.label} failed to load: {info.error}"
        if self.strict:
            self._strict_error = RegistryError(message)
            raise self._strict_error from info.exception
        warnings.warn(f"{message} (see `qorus plugins`; QORUS_STRICT_PLUGINS=1 raises)",
                      PluginLoadWarning, stacklevel=2)

    def _load(self, namespace: str, source: str, loader: Callable[[], Any],
              dist: str | None, version: str | None) -> PluginInfo:
        """Import, validate and run one plugin's hooks; commit its items only if all is well."""
        info = PluginInfo(namespace, dist, version, source)
        registered: Any = None
        try:
            if not _NAME_RE.match(namespace):
                raise RegistryError(f"bad plugin namespace {namespace!r} (letters, digits, _ and -)")
            for other in self._plugins:
                if other.namespace == namespace:
                    raise RegistryError(f"duplicate plugin namespace {namespace!r} (its names "
                                        f"would clash): claimed by plugin {other.label} and by "
                                        f"plugin {info.label}")
            plugin = loader()
            if self.pm.register(plugin, name=namespace) is None:
                raise RegistryError(f"plugin {namespace!r} is blocked")
            registered = plugin
            self._check_hooks(plugin, namespace)
            staged = self._run_hooks(plugin, info)
            self._commit(staged, info)
        except Exception as exc:  # a plugin may raise anything; record it, never crash
            if registered is not None:
                self.pm.unregister(registered)
            info.status, info.items = "failed", 0
            info.error = str(exc) if isinstance(exc, RegistryError) else f"{type(exc).__name__}: {exc}"
            info.traceback, info.exception = traceback.format_exc(), exc
        self._plugins.append(info)
        return info

    def _check_hooks(self, plugin: Any, namespace: str) -> None:
        """A hookimpl with no matching spec (a typo) would silently never run: refuse it."""
        for caller in self.pm.get_hookcallers(plugin) or []:
            if not caller.has_spec() and any(
                    i.plugin is plugin and not i.optionalhook for i in caller.get_hookimpls()):
                known = ", ".join(n for n in dir(hookspecs) if n.startswith("qorus_"))
                raise RegistryError(f"plugin {namespace!r} implements unknown hook "
                                    f"{caller.name!r}; known: {known}")

    def _run_hooks(self, plugin: Any, info: PluginInfo) -> list[Entry]:
        """Call each registration hook of this plugin only; collect what it registers."""
        staged: dict[tuple[str, str], Entry] = {}
        others = [p for p in self.pm.get_plugins() if p is not plugin]
        closed: list[bool] = []

        def make_register(kind: str) -> hookspecs.Register:
            def register(obj: Any, name: str | None = None) -> Any:
                if closed:
                    raise RegistryError(f"plugin {info.namespace!r} called register() after "
                                        "its hook returned; register only inside the hook")
                entry = self._make_entry(kind, obj, name, info)
                if (kind, entry.name) in staged:
                    raise RegistryError(f"plugin {info.label} registers {kind} {entry.name!r} twice")
                staged[(kind, entry.name)] = entry
                return obj
            return register

        for kind, hook_name in KINDS.items():
            self.pm.subset_hook_caller(hook_name, others)(register=make_register(kind))
        closed.append(True)
        return list(staged.values())

    def _make_entry(self, kind: str, obj: Any, name: str | None, info: PluginInfo) -> Entry:
        local = name if name is not None else getattr(obj, "__name__", None)
        if not isinstance(local, str) or not _NAME_RE.match(local):
            raise RegistryError(f"plugin {info.namespace!r}: bad {kind} name {local!r} for "
                                f"{obj!r} (letters, digits, _ and -; no dot; pass name=...)")
        full = f"{info.namespace}.{local}"
        if kind == "layer":
            base = _layer_base()
            if not isinstance(obj, type) or (base is not None and not issubclass(obj, base)):
                raise RegistryError(f"layer {full!r}: {obj!r} is not a subclass of "
                                    "qorus_core.layer.Layer")
        elif not callable(obj):
            raise RegistryError(f"{kind} {full!r}: {obj!r} is not callable")
        return Entry(full, kind, obj, info.namespace, info.distribution, info.version,
                     _first_line(getattr(obj, "__doc__", None)))

    def _commit(self, staged: list[Entry], info: PluginInfo) -> None:
        # No clash is possible here: namespaces are unique and _run_hooks refused repeats.
        for e in staged:
            self._entries[e.kind][e.name] = e
            self._by_local[e.kind].setdefault(e.local_name, []).append(e.name)
            try:
                e.obj.registry_name = e.name
            except (AttributeError, TypeError):  # builtins, slotted objects: name lives here
                pass
        info.items = len(staged)

    # --- lookup and listing -----------------------------------------------------------
    def get(self, kind: str, name: str) -> Any:
        """The object registered as ``name`` ("mlp.Linear", or bare "Linear" if unambiguous)."""
        return self.entry(kind, name).obj

    def entry(self, kind: str, name: str) -> Entry:
        """The record for ``name``; RegistryError with close matches if unknown or ambiguous."""
        table = self._table(kind)
        if name in table:
            return table[name]
        if "." not in name:
            full = self._by_local[kind].get(name, [])
            if len(full) == 1:
                return table[full[0]]
            if full:
                options = ", ".join(f"{n} ({table[n].distribution or '?'})" for n in sorted(full))
                raise RegistryError(f"{kind} name {name!r} is ambiguous: {options}; "
                                    "use the full name")
        raise RegistryError(self._unknown_message(kind, name))

    def _unknown_message(self, kind: str, name: str) -> str:
        table = self._entries[kind]
        lowered = {n.lower(): n for n in table}
        close = [lowered[m] for m in difflib.get_close_matches(name.lower(), lowered, n=5)]
        bare = {n.lower(): n for n in self._by_local[kind]}
        for m in difflib.get_close_matches(name.rsplit(".", 1)[-1].lower(), bare, n=5):
            close += [f for f in self._by_local[kind][bare[m]] if f not in close]
        msg = f"unknown {kind} {name!r} " + (f"(did you mean {', '.join(close[:5])}?)" if close
                                             else f"({len(table)} registered; `qorus {kind}s` lists them)")
        namespace = name.split(".", 1)[0] if "." in name else None
        failed = [p for p in self._plugins if p.status != "ok"
                  and (namespace is None or p.namespace == namespace)]
        if failed:
            msg += "".join(f"; plugin {p.label} failed to load: {p.error}" for p in failed)
        return msg

    def entries(self, kind: str | None = None) -> list[Entry]:
        """All records of ``kind`` (or of every kind), sorted by full name."""
        kinds = [kind] if kind is not None else list(KINDS)
        return [e for k in kinds for _, e in sorted(self._table(k).items())]

    def plugins(self) -> list[PluginInfo]:
        """Every plugin load attempt, in load order, failed ones included."""
        self._ensure_loaded()
        return list(self._plugins)

    def _table(self, kind: str) -> dict[str, Entry]:
        if kind not in KINDS:
            raise RegistryError(f"unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
        self._ensure_loaded()
        return self._entries[kind]


# --- the default registry ---------------------------------------------------------------
_default: Registry | None = None
_default_lock = threading.Lock()


def get_registry() -> Registry:
    """The process-wide registry (created on first call, plugins loaded on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Registry()
        return _default


def reset_registry(registry: Registry | None = None) -> None:
    """For tests: drop the default registry (rebuilt on next use), or install ``registry``."""
    global _default
    with _default_lock:
        _default = registry


def get_layer(name: str) -> type:
    """The layer class registered as ``name`` in the default registry."""
    return get_registry().get("layer", name)


def get_loss(name: str) -> Any:
    return get_registry().get("loss", name)


def get_optimizer(name: str) -> Any:
    return get_registry().get("optimizer", name)
