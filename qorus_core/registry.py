"""The registry: plugins found through entry points, their items under namespaced names.

Loading happens once, lazily, on first use: the built-in plugin (namespace ``core``), then each
entry point of the group ``qorus`` on its own (name = namespace, value = module or object
carrying hookimpls), in namespace order. A plugin that fails (import error, hook error, bad or
clashing name, too slow) is recorded with its reason and registers nothing; everything else
works. Strict mode raises instead. Modelled on pluggy's ``load_setuptools_entrypoints``, but
one plugin at a time, so every item knows which plugin and distribution it came from.

Isolation. Each plugin's import and registration hooks run in a worker thread of their own,
bounded by ``QORUS_PLUGIN_TIMEOUT`` seconds (default 30): whatever that code raises or however
long it hangs fails that plugin only, and a real Ctrl-C still interrupts (plugin_isolation.py
says how and what cannot be contained). An interrupted load leaves the registry unloaded; the
next use loads again. Hooks that look names up see what is committed so far (plugins load in
namespace order). ``call_plugin_hook`` calls one plugin's later hooks (commands,
train-finished) the same isolated way, bounded or in this thread.

Namespaces. A namespace is held by exactly one distribution, never decided by sort or install
order:

- the first-party namespaces in ``FIRST_PARTY`` (``core``, ``mlp``, ``llm``, ``cnn``, ``rnn``,
  ``tpl``) belong to their distributions (``qorus-core``, ``qorus-layers-mlp``, ...): another
  distribution claiming one is refused, naming it and the owner, and never imported; the
  owner loads either way;
- when two or more other distributions (or entry points) claim the same namespace, all of
  them are refused, naming every claimant, and none is imported: letting the first in sort
  order win would let a newly installed package silently take over names that saved models
  and configs already use. Uninstall all but one to settle it.

A distribution is identified by its metadata name (normalized as in PEP 503). Explicit
``add_plugin`` calls are the host program's own choice and are not subject to ``FIRST_PARTY``;
a namespace already loaded is still refused, naming both plugins.

Environment: ``QORUS_DISABLE_PLUGIN_AUTOLOAD=1`` skips entry points (explicit ``add_plugin``
still works); ``QORUS_STRICT_PLUGINS=1`` turns the first failure (a clash included) into an
error; ``QORUS_PLUGIN_TIMEOUT`` (seconds, > 0; ``inf`` for no bound) bounds each plugin's load.
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
from .errors import KernelError, RegistryError
from .kernels import extensions as kernel_extensions
from .kernels.decl.spec import Kernel
from .plugin_isolation import PluginCodeFailed, describe_failure, importing_here, run_isolated

ENTRY_POINT_GROUP = "qorus"
BUILTIN_NAMESPACE = "core"
#: kind -> the hook that registers items of that kind.
KINDS: dict[str, str] = {
    "layer": "qorus_register_layers",
    "loss": "qorus_register_losses",
    "optimizer": "qorus_register_optimizers",
    "kernel": "qorus_register_kernels",
    "callback": "qorus_register_callbacks",
}
#: First-party namespace -> the only distribution that may claim it (their pyproject.toml files).
FIRST_PARTY: dict[str, str] = {
    "core": "qorus-core",
    "mlp": "qorus-layers-mlp",
    "llm": "qorus-layers-llm",
    "cnn": "qorus-layers-cnn",
    "rnn": "qorus-layers-rnn",
    "tpl": "qorus-layers-template",
}
DEFAULT_TIMEOUT_S = 30.0
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*\Z")
_LOADING = threading.local()  # .registry: the Registry whose plugin code this thread runs


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
        """The name without its namespace (``Linear`` of ``mlp.Linear``)."""
        return self.name.split(".", 1)[1]

    def to_dict(self) -> dict[str, Any]:
        """The entry as JSON-able data (``qorus layers --json``): name, kind, plugin, distribution,
        version, doc and the object's ``module:qualname``."""
        obj = self.obj.numpy if self.kind == "kernel" else self.obj   # a kernel: its NumPy code
        target = f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', '?')}"
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
        return f"{self.namespace!r} ({self.dist_label})"

    @property
    def dist_label(self) -> str:
        """``qorus-layers-mlp 0.1.0``, or the source when there is no distribution."""
        return " ".join(x for x in (self.distribution, self.version) if x) or self.source

    def to_dict(self) -> dict[str, Any]:
        """The plugin's record as JSON-able data (``qorus plugins --json``)."""
        return {"namespace": self.namespace, "distribution": self.distribution,
                "version": self.version, "status": self.status, "error": self.error,
                "items": self.items, "source": self.source}


@dataclass
class _Stage:
    """One plugin load in progress: what it is doing (for a timeout's message), and whether
    its ``register`` still accepts items (closed once its hooks returned, or at the deadline)."""

    phase: str = "on import"
    open: bool = True
    kernels: Any = None     # the plugin's kernels, checked and compiled (an Extension), if any


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _env_timeout() -> float:
    raw = os.environ.get("QORUS_PLUGIN_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        return _check_timeout(float(raw))
    except (ValueError, RegistryError):
        raise RegistryError(f"QORUS_PLUGIN_TIMEOUT={raw!r}: expected a number of seconds "
                            "> 0 (inf for no bound)") from None


def _check_timeout(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise RegistryError(f"plugin timeout {value!r}: expected a number of seconds > 0 "
                            "(inf for no bound)")
    return float(value)


def _first_line(doc: str | None) -> str:
    lines = inspect.cleandoc(doc).strip().splitlines() if doc else []
    return lines[0].strip() if lines else ""


def _canonical(dist: str | None) -> str | None:
    """PEP 503 normalized distribution name (``Qorus_Layers.MLP`` -> ``qorus-layers-mlp``)."""
    return re.sub(r"[-_.]+", "-", dist).lower() if dist else None


def _dist_info(dist: str | metadata.Distribution | None) -> tuple[str | None, str | None]:
    if dist is None:
        return None, None
    if not isinstance(dist, (str, metadata.Distribution)):
        raise RegistryError(f"dist {dist!r}: expected a distribution name or an "
                            "importlib.metadata.Distribution")
    if isinstance(dist, str):
        try:
            dist = metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            return dist, None
    return dist.metadata["Name"], dist.version


def _is_layer_class(obj: Any) -> bool:
    """Whether ``obj`` is a subclass of ``qorus_core.layer.Layer``, without importing that
    module: layer.py looks names up in the registry, so the registry must not import it (the
    arrow points one way). A subclass of ``Layer`` exists only once its module was imported,
    so the class is read from ``sys.modules``; while it is absent, no object can be a layer."""
    base = getattr(sys.modules.get(f"{__package__}.layer"), "Layer", None)
    return isinstance(obj, type) and isinstance(base, type) and issubclass(obj, base)


def _claims_text(claims: list[tuple[str, str | None, str | None]]) -> str:
    return ", ".join(" ".join(x for x in (d, v) if x) or f"entry point {s}" for s, d, v in claims)


def _new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def _known_hooks() -> str:
    return ", ".join(n for n in dir(hookspecs) if n.startswith("qorus_"))


def _check_hooks(pm: pluggy.PluginManager, plugin: Any, namespace: str) -> None:
    """A hookimpl with no matching spec (a typo) would silently never run: refuse it."""
    for caller in pm.get_hookcallers(plugin) or []:
        if not caller.has_spec() and any(
                i.plugin is plugin and not i.optionalhook for i in caller.get_hookimpls()):
            raise RegistryError(f"plugin {namespace!r} implements unknown hook "
                                f"{caller.name!r}; known: {_known_hooks()}")


class Registry:
    """Namespaced layers, losses and optimizers from plugins, loaded lazily on first use.

    ``autoload``/``strict``/``timeout`` default to the environment (see module doc);
    ``builtins=False`` leaves out the ``core`` plugin (for tests). Full names are unique
    because namespaces are (a second plugin claiming one fails, naming both) and a plugin
    cannot repeat a name. ``pm`` is the pluggy PluginManager, for hooks beyond registration.
    """

    def __init__(self, *, autoload: bool | None = None, strict: bool | None = None,
                 builtins: bool = True, group: str = ENTRY_POINT_GROUP,
                 timeout: float | None = None) -> None:
        for name, value in (("autoload", autoload), ("strict", strict), ("builtins", builtins)):
            if not isinstance(value, bool) and (value is not None or name == "builtins"):
                raise RegistryError(f"Registry: {name} must be True or False, got {value!r}")
        if not isinstance(group, str) or not group:
            raise RegistryError(f"Registry: group must be an entry-point group name, got {group!r}")
        self.autoload = not _env_flag("QORUS_DISABLE_PLUGIN_AUTOLOAD") if autoload is None else autoload
        self.strict = _env_flag("QORUS_STRICT_PLUGINS") if strict is None else strict
        self.timeout = _env_timeout() if timeout is None else _check_timeout(timeout)
        self.builtins = builtins
        self.group = group
        self._lock = threading.RLock()
        self._reset()

    def _reset(self) -> None:
        """The state before loading (also after an interrupted load)."""
        self.pm = _new_plugin_manager()
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self._by_local: dict[str, dict[str, list[str]]] = {kind: {} for kind in KINDS}
        self._plugins: list[PluginInfo] = []
        self._loaded = False
        self._strict_error: RegistryError | None = None

    # --- loading --------------------------------------------------------------------
    def add_plugin(self, namespace: str, plugin: Any,
                   dist: str | metadata.Distribution | None = None) -> PluginInfo:
        """Load ``plugin`` (a module or object with hookimpls) under ``namespace`` now.

        Its hooks run isolated and bounded like an entry point's. Raises RegistryError if it
        fails (the failure is recorded in ``plugins()`` too), or when called from a hook.
        """
        if getattr(_LOADING, "registry", None) is self:
            raise RegistryError(f"add_plugin({namespace!r}) called from a plugin's hook while "
                                "the registry loads; call it from the host program")
        self._ensure_loaded()
        source = getattr(plugin, "__name__", None) or type(plugin).__name__
        with self._lock:
            info = self._load(namespace, source, lambda: plugin, *_dist_info(dist))
        if info.status != "ok":
            raise RegistryError(f"plugin {info.label} failed to load: {info.error}") from info.exception
        return info

    def _ensure_loaded(self) -> None:
        if getattr(_LOADING, "registry", None) is self:
            return  # a plugin's hook looking names up while loading: what is committed so far
        with self._lock:
            if not self._loaded:
                self._loaded = True  # first: a hook that looks names up must not recurse
                try:
                    self._load_all()
                except BaseException as exc:
                    if exc is not self._strict_error:  # a real Ctrl-C: no half-loaded registry
                        self._reset()
                    raise
            if self._strict_error is not None:
                raise self._strict_error

    def _load_all(self) -> None:
        if self.builtins:
            name = f"{__package__}.builtin_plugin"
            dist, version = _dist_info("qorus-core")
            version = version or getattr(sys.modules[__package__], "__version__", None)
            self._autoload(BUILTIN_NAMESPACE, name, lambda: importlib.import_module(name),
                           dist, version)
        if not self.autoload:
            return
        claims: dict[str, list[tuple[Any, str | None, str | None]]] = {}
        for ep in metadata.entry_points(group=self.group):
            if self.builtins and ep.value == f"{__package__}.builtin_plugin":
                continue  # qorus-core's own entry point: loaded above already
            claims.setdefault(ep.name, []).append((ep, *_dist_info(ep.dist)))
        for namespace in sorted(claims):
            group = sorted(claims[namespace], key=lambda c: (c[1] or "", c[0].value))
            owner = FIRST_PARTY.get(namespace)
            if owner is not None:
                for ep, dist, version in group:
                    if _canonical(dist) != owner:
                        who = " ".join(x for x in (dist, version) if x) or "no distribution"
                        self._autoload(namespace, ep.value, ep.load, dist, version, refusal=(
                            f"namespace {namespace!r} belongs to the first-party distribution "
                            f"{owner}; {who} (entry point {namespace} = {ep.value}) may not "
                            "claim it and was not imported (rename its entry point, or "
                            "uninstall it)"))
                group = [c for c in group if _canonical(c[1]) == owner]
            refusal = None
            if len(group) > 1:
                refusal = (f"namespace {namespace!r} is claimed by {len(group)} distributions: "
                           f"{_claims_text([(ep.value, d, v) for ep, d, v in group])}; none "
                           "is loaded or imported (install or sort order must not decide which "
                           "code runs under a name): uninstall all but one")
            for ep, dist, version in group:
                self._autoload(namespace, ep.value, ep.load, dist, version, refusal=refusal)

    def _autoload(self, namespace: str, source: str, loader: Callable[[], Any],
                  dist: str | None, version: str | None, *, refusal: str | None = None) -> None:
        info = self._load(namespace, source, loader, dist, version, refusal=refusal)
        if info.status == "ok":
            return
        message = f"qorus plugin {info.label} failed to load: {info.error}"
        if self.strict:
            self._strict_error = RegistryError(message)
            raise self._strict_error from info.exception
        warnings.warn(f"{message} (see `qorus plugins`; QORUS_STRICT_PLUGINS=1 raises)",
                      PluginLoadWarning, stacklevel=3)

    def _load(self, namespace: str, source: str, loader: Callable[[], Any],
              dist: str | None, version: str | None, *, refusal: str | None = None) -> PluginInfo:
        """Import, validate and run one plugin's hooks in a worker; commit its items only if
        all of that finished, in time, without raising."""
        info = PluginInfo(namespace, dist, version, source)
        registered: Any = None
        try:
            if refusal is not None:
                raise RegistryError(refusal)
            if not isinstance(namespace, str) or not _NAME_RE.match(namespace):
                raise RegistryError(f"bad plugin namespace {namespace!r} (letters, digits, _ and -)")
            for other in self._plugins:
                if other.namespace == namespace and other.status == "ok":
                    raise RegistryError(f"duplicate plugin namespace {namespace!r} (its names "
                                        f"would clash): claimed by plugin {other.label} and by "
                                        f"plugin {info.label}")
            plugin, staged, kernels = self._stage(loader, info)
            taken = self.pm.get_name(plugin)
            if taken is not None:
                raise RegistryError(f"plugin {info.label} is the object already loaded as "
                                    f"plugin {taken!r}; one plugin cannot hold two namespaces")
            if self.pm.register(plugin, name=namespace) is None:
                raise RegistryError(f"plugin {namespace!r} is blocked")
            registered = plugin
            self._commit(staged, info, kernels)
        except Exception as exc:  # plugin code's own exceptions arrive here as PluginCodeFailed
            if registered is not None:
                self.pm.unregister(registered)
            info.status, info.items = "failed", 0
            if isinstance(exc, PluginCodeFailed):
                info.error, info.exception, info.traceback = exc.reason, exc.cause, exc.tb
            else:
                info.error = describe_failure(exc)
                info.traceback, info.exception = traceback.format_exc(), exc
        self._plugins.append(info)
        return info

    def _stage(self, loader: Callable[[], Any], info: PluginInfo) -> tuple[Any, list[Entry], Any]:
        """Run the plugin's import and registration hooks in a worker, on a plugin manager of
        its own; return the plugin object, the entries it registered and its kernels (an
        ``Extension`` or None). Raises PluginCodeFailed."""
        stage = _Stage()

        def work() -> tuple[Any, list[Entry], Any]:
            outer = getattr(_LOADING, "registry", None)
            _LOADING.registry = self   # lookups from this plugin see what is committed so far
            try:
                plugin = loader()
                stage.phase = "on registration"
                pm = _new_plugin_manager()
                pm.register(plugin, name=info.namespace)
                _check_hooks(pm, plugin, info.namespace)
                return plugin, self._run_hooks(pm, info, stage), stage.kernels
            finally:
                _LOADING.registry = outer

        # A worker would wait for the import locks of modules this thread is importing, and
        # this thread for the worker: when a module's import uses the registry, load here.
        timeout = None if importing_here() else self.timeout
        try:
            out = run_isolated(work, f"qorus-plugin-{info.namespace}", timeout)
        finally:
            stage.open = False  # a worker that outlived its wait registers nothing more
        if not out.done:
            reason = (f"did not finish loading within {self.timeout:g} s "
                      f"(QORUS_PLUGIN_TIMEOUT), {stage.phase}; nothing it registers is used")
            raise PluginCodeFailed(reason, None, out.stack)
        if out.error is not None:
            reason = describe_failure(out.error)
            if not isinstance(out.error, RegistryError):
                reason += f" ({stage.phase})"
            raise PluginCodeFailed(reason, out.error, out.traceback)
        return out.value

    def call_plugin_hook(self, namespace: str, hook_name: str, kwargs: dict[str, Any], *,
                         bounded: bool = True) -> str | None:
        """Call the hook ``hook_name`` of the loaded plugin ``namespace`` alone with ``kwargs``,
        catching whatever it raises (``SystemExit`` included). Returns None when it returned
        (or the plugin has no such hook), else a one-line reason.

        ``bounded``: in a worker thread, for at most ``self.timeout`` (as loading; a plugin's
        own KeyboardInterrupt is a failure, a real Ctrl-C still interrupts). ``bounded=False``:
        in this thread with no time bound (a hook that may take long, or prints as it goes);
        then a KeyboardInterrupt always propagates, as a Ctrl-C and plugin code cannot be
        told apart there.
        """
        self._ensure_loaded()
        plugin = self.pm.get_plugin(namespace)
        if plugin is None:
            raise RegistryError(f"no loaded plugin {namespace!r}")
        caller = getattr(self.pm.hook, hook_name, None) if isinstance(hook_name, str) else None
        if caller is None or not caller.has_spec():
            raise RegistryError(f"unknown hook {hook_name!r}; known: {_known_hooks()}")
        if not isinstance(kwargs, dict):
            raise RegistryError(f"hook {hook_name}: kwargs must be a dict, got {kwargs!r:.80}")
        if not any(i.plugin is plugin for i in caller.get_hookimpls()):
            return None
        only = self.pm.subset_hook_caller(hook_name, [p for p in self.pm.get_plugins()
                                                      if p is not plugin])
        out = run_isolated(lambda: only(**kwargs), f"qorus-hook-{namespace}",
                        self.timeout if bounded else None)
        if not out.done:
            return f"hook {hook_name} did not finish within {self.timeout:g} s (QORUS_PLUGIN_TIMEOUT)"
        return None if out.error is None else describe_failure(out.error)

    def _run_hooks(self, pm: pluggy.PluginManager, info: PluginInfo, stage: _Stage) -> list[Entry]:
        """Call each registration hook of the plugin (alone on ``pm``); collect what it
        registers, its kernels checked and compiled (``stage.kernels``) but not installed."""
        staged: dict[tuple[str, str], Entry] = {}
        libraries: dict[str, Any] = {}

        def make_register(kind: str) -> Callable[..., Any]:
            def register(obj: Any, name: str | None = None) -> Any:
                if not stage.open:
                    raise RegistryError(f"plugin {info.namespace!r} called register() after "
                                        "its hook returned; register only inside the hook")
                entry = self._make_entry(kind, obj, name, info)
                if (kind, entry.name) in staged:
                    raise RegistryError(f"plugin {info.label} registers {kind} {entry.name!r} twice")
                staged[(kind, entry.name)] = entry
                return obj

            def register_kernel(kernel: Any, library: Any = None) -> Any:
                if not isinstance(kernel, Kernel):
                    raise RegistryError(f"plugin {info.namespace!r}: kernel {kernel!r:.80} is "
                                        "not a kernel declaration (make it with "
                                        "qorus_core.kernels.declare_kernel)")
                register(kernel, kernel.name)
                libraries[kernel.name] = library
                return kernel
            return register_kernel if kind == "kernel" else register

        for kind, hook_name in KINDS.items():
            stage.phase = f"in hook {hook_name}"
            getattr(pm.hook, hook_name)(register=make_register(kind))
        stage.open = False
        kernels = [(e.obj, libraries[e.obj.name]) for e in staged.values() if e.kind == "kernel"]
        if kernels:
            stage.phase = "checking its kernels"
            try:
                stage.kernels = kernel_extensions.prepare(info.namespace, kernels)
            except KernelError as exc:
                raise RegistryError(str(exc)) from exc
        return list(staged.values())

    def _make_entry(self, kind: str, obj: Any, name: str | None, info: PluginInfo) -> Entry:
        local = name if name is not None else getattr(obj, "__name__", None)
        if not isinstance(local, str) or not _NAME_RE.match(local):
            raise RegistryError(f"plugin {info.namespace!r}: bad {kind} name {local!r} for "
                                f"{obj!r} (letters, digits, _ and -; no dot; pass name=...)")
        full = f"{info.namespace}.{local}"
        if kind == "layer":
            if not _is_layer_class(obj):
                raise RegistryError(f"layer {full!r}: {obj!r} is not a subclass of "
                                    "qorus_core.layer.Layer")
        elif kind == "kernel":       # a Kernel (register_kernel checked it)
            return Entry(full, kind, obj, info.namespace, info.distribution, info.version,
                         _first_line(obj.doc))
        elif not callable(obj):
            raise RegistryError(f"{kind} {full!r}: {obj!r} is not callable")
        return Entry(full, kind, obj, info.namespace, info.distribution, info.version,
                     _first_line(getattr(obj, "__doc__", None)))

    def _commit(self, staged: list[Entry], info: PluginInfo, kernels: Any = None) -> None:
        # No clash is possible here: namespaces are unique and _run_hooks refused repeats.
        if kernels is not None:
            kernel_extensions.install(kernels)
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
        if not isinstance(name, str):
            raise RegistryError(f"{kind} name must be a string, got {name!r}")
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
        if not isinstance(kind, str) or kind not in KINDS:
            raise RegistryError(f"unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
        self._ensure_loaded()
        return self._entries[kind]


# --- the default registry ---------------------------------------------------------------
_default: Registry | None = None
_default_lock = threading.Lock()


def _load_kernel_plugins() -> None:
    """What a kernel set calls when ``k.<name>`` is unknown: load the plugins (their kernels)."""
    get_registry().entries("kernel")


kernel_extensions.set_loader(_load_kernel_plugins)


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


def registered_name(cls: type, kind: str) -> str:
    """The full name (``mlp.Linear``, ``core.AdamW``) the registry knows ``cls`` by, loading
    the plugins first when they have not named it yet; "" for a class no plugin registers.
    What ``type_name`` of layers, losses and optimizers reads, so a name written to a file
    never depends on whether something had loaded the registry before (a checkpoint saved
    with its optimizer state first wrote ``AdamW``, then refused itself as ``core.AdamW``)."""
    name = cls.__dict__.get("registry_name")
    if not name:
        get_registry().entries(kind)     # loads plugins once; they name their classes
        name = cls.__dict__.get("registry_name")
    return name or ""


def get_layer(name: str) -> type:
    """The layer class registered as ``name`` in the default registry."""
    return get_registry().get("layer", name)


def get_loss(name: str) -> Any:
    """The loss registered as ``name`` (``core.MSE``, or a short name the registry resolves);
    RegistryError with close matches otherwise."""
    return get_registry().get("loss", name)


def get_optimizer(name: str) -> Any:
    """The optimizer registered as ``name`` (``core.AdamW``, ...); RegistryError with close matches
    otherwise."""
    return get_registry().get("optimizer", name)
