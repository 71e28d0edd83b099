"""Kernels that plugins add to the table (the ``qorus_register_kernels`` hook).

A plugin declares each kernel as core does (``declare_kernel``: operands, check, C call,
examples, its NumPy implementation and docstring) and registers it with the path of its own
shared library, built by its own ``pip install``; both kernel sets then serve it as
``k.<namespace>.<name>(...)`` (``k.tpl.prelu(x, weight, y)``), with the same generated check
on both, and the C set calls the plugin's symbol with argument types derived from the
declaration. The NumPy implementation is required; C is optional:

- no library given, or its file absent (no compiler at install time): the C set serves the
  kernel with its NumPy implementation, and ``qorus kernels`` says so, with the reason;
- a library that loads but lacks a declared symbol, or does not load: the registration
  fails (the plugin fails to load, ``qorus plugins`` names the missing symbols), as core
  refuses a stale ``libqorus.so`` instead of quietly running NumPy where C was promised.

A plugin's C symbols may not use core's ``qr_`` prefix nor a symbol another plugin has. What
is installed stays for the process (both kernel sets are per process); a namespace installed
again (a registry rebuilt in tests) replaces the earlier one on every kernel set.
"""

from __future__ import annotations

import ctypes
import os
import threading
import types
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..errors import KernelError
from .decl import bind as _bind
from .decl import gen as _gen
from .decl.spec import DECLARED, Kernel

__all__ = ["Extension", "KernelNamespaces", "UnknownKernelError", "prepare", "install",
           "extensions", "set_loader"]


class UnknownKernelError(KernelError, AttributeError):
    """``k.<name>`` names no kernel and no registered kernel namespace (an AttributeError
    too, so ``hasattr`` and ``getattr(k, name, None)`` keep working)."""


@dataclass
class Extension:
    """One plugin's kernels, checked and compiled: what ``install`` makes available."""

    namespace: str
    kernels: dict[str, Kernel]
    library: str | None = None          # the plugin's shared library, when it has C symbols
    c_reason: str = ""                  # why its kernels run in NumPy on the C set ("": C)
    numpy_methods: dict[str, Callable] = field(default_factory=dict)
    c_methods: dict[str, Callable] = field(default_factory=dict)
    #: the typed ctypes functions, by the attribute the C methods call (``_<symbol>``)
    c_functions: dict[str, Callable] = field(default_factory=dict)

    @property
    def native(self) -> bool:
        """Whether the plugin's C library loaded with its kernels' symbols."""
        return bool(self.c_functions)


_LOCK = threading.Lock()
_INSTALLED: dict[str, Extension] = {}
_HOLDERS: weakref.WeakSet = weakref.WeakSet()      # kernel sets that cached a namespace
_loader: Callable[[], object] | None = None


def set_loader(load: Callable[[], object]) -> None:
    """``load()`` loads the plugins (the registry sets it): called once when ``k.<name>`` is
    not yet known, so a layer imported directly still finds its plugin's kernels."""
    global _loader
    _loader = load


def extensions(load: bool = False) -> dict[str, Extension]:
    """{namespace: Extension} of every installed plugin's kernels (``load``: the plugins
    loaded first, as ``qorus kernels`` lists them)."""
    if load and _loader is not None:
        _loader()
    with _LOCK:
        return dict(_INSTALLED)


def _core_attrs() -> set[str]:
    from .c import CKernels
    from .numpy import NumpyKernels
    return set(dir(NumpyKernels)) | set(dir(CKernels))


def _load_library(namespace: str, library: str, kernels: list[Kernel]) -> dict[str, Callable]:
    """The typed C functions of ``kernels`` from ``library``; KernelError naming what fails."""
    try:
        lib = ctypes.CDLL(library)
    except OSError as exc:
        raise KernelError(f"kernel plugin {namespace!r}: its library {library} does not load "
                          f"({exc})") from exc
    holder = types.SimpleNamespace()
    missing = _bind.bind(lib, holder, kernels)
    if missing:
        raise KernelError(f"kernel plugin {namespace!r}: {library} lacks {', '.join(missing)} "
                          "(rebuild the plugin: pip install it again)")
    return dict(vars(holder))


def prepare(namespace: str, items: Iterable[tuple[Kernel, str | os.PathLike | None]]) -> Extension:
    """Check one plugin's kernels and compile their methods; KernelError naming the fault.
    ``items``: (declaration, the plugin's library or None) per kernel. Nothing is installed."""
    items = list(items)
    if not namespace.isidentifier() or namespace.startswith("_") or namespace in _core_attrs():
        raise KernelError(f"kernel plugin {namespace!r}: the namespace must be an identifier "
                          "that is no kernel-set attribute (k.<namespace>.<kernel>)")
    for _, lib in items:
        if lib is not None and not isinstance(lib, (str, os.PathLike)):
            raise KernelError(f"kernel plugin {namespace!r}: library {lib!r:.80} is not a path")
    libs = {os.path.abspath(os.fspath(lib)) for _, lib in items if lib is not None}
    if len(libs) > 1:
        raise KernelError(f"kernel plugin {namespace!r}: one library per plugin, got {sorted(libs)}")
    kernels: dict[str, Kernel] = {}
    for k, _ in items:
        if not isinstance(k, Kernel):
            raise KernelError(f"kernel plugin {namespace!r}: {k!r} is not a kernel declaration "
                              "(make it with qorus_core.kernels.declare_kernel)")
        if k.name in kernels:
            raise KernelError(f"kernel plugin {namespace!r}: kernel {k.name!r} registered twice")
        if any(d is k for d in DECLARED.values()):
            raise KernelError(f"kernel plugin {namespace!r}: {k.name!r} is one of core's kernels")
        if k.namespace not in (None, namespace):
            raise KernelError(f"kernel plugin {namespace!r}: {k.name!r} is plugin "
                              f"{k.namespace!r}'s kernel")
        for sym in k.symbols:
            if sym.symbol.startswith("qr_"):
                raise KernelError(f"kernel plugin {namespace!r}: {sym.symbol}: the qr_ prefix "
                                  "is core's; prefix a plugin's C symbols with its namespace")
        kernels[k.name] = k
    symbols = {s.symbol for k in kernels.values() for s in k.symbols}
    with _LOCK:
        others = {s.symbol: ns for ns, e in _INSTALLED.items() if ns != namespace
                  for k in e.kernels.values() for s in k.symbols}
    taken = sorted(s for s in symbols if s in others)
    if taken:
        raise KernelError(f"kernel plugin {namespace!r}: C symbols {taken} belong to plugin "
                          f"{others[taken[0]]!r}")
    ext = Extension(namespace, kernels, library=next(iter(libs), None))
    declared_c = [k for k in kernels.values() if k.c]
    if declared_c and ext.library is None:
        ext.c_reason = "the plugin gave no library"
    elif declared_c and not os.path.isfile(ext.library):
        ext.c_reason = f"its library {ext.library} is not built"
    elif declared_c:
        ext.c_functions = _load_library(namespace, ext.library, declared_c)
    for k in kernels.values():
        k.namespace = namespace     # before compiling: errors and methods use the full name
        ext.numpy_methods[k.name] = _gen.numpy_method(k)
        ext.c_methods[k.name] = _gen.c_method(k, native=ext.native)
    return ext


def install(ext: Extension) -> None:
    """Make ``ext``'s kernels available on every kernel set (replacing the namespace's
    earlier kernels, if any)."""
    with _LOCK:
        replaced = ext.namespace in _INSTALLED
        _INSTALLED[ext.namespace] = ext
        holders = list(_HOLDERS) if replaced else []
    for kset in holders:
        kset.__dict__.pop(ext.namespace, None)


class KernelNamespace(types.SimpleNamespace):
    """``k.<namespace>``: one plugin's kernels as methods of the kernel set ``k``."""

    def __repr__(self) -> str:
        return f"<kernels {self._namespace}: {', '.join(sorted(self._names))}>"


def _namespace_of(kset, ext: Extension) -> KernelNamespace:
    c_set = getattr(kset, "name", "") == "c"
    methods = ext.c_methods if c_set else ext.numpy_methods
    if c_set:
        kset.__dict__.update(ext.c_functions)
    bound = {name: types.MethodType(fn, kset) for name, fn in methods.items()}
    return KernelNamespace(_namespace=ext.namespace, _names=tuple(bound), **bound)


class KernelNamespaces:
    """Mixin of both kernel sets: ``k.<namespace>`` resolves a plugin's kernels (once per
    set; then a plain attribute, so a call costs what a core kernel's does)."""

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        ext = _INSTALLED.get(name)
        if ext is None and _loader is not None:
            _loader()
            ext = _INSTALLED.get(name)
        if ext is None:
            known = ", ".join(sorted(_INSTALLED)) or "none"
            raise UnknownKernelError(f"{type(self).__name__} has no kernel or kernel namespace "
                                     f"{name!r} (plugin kernel namespaces: {known}; "
                                     "`qorus kernels` lists every kernel)")
        ns = _namespace_of(self, ext)
        with _LOCK:
            if _INSTALLED.get(name) is not ext:       # replaced meanwhile: resolve again
                return getattr(self, name)
            self.__dict__[name] = ns
            _HOLDERS.add(self)
        return ns
