"""Kernel dispatch: one interface, two implementations.

``QORUS_KERNELS=auto|c|numpy`` picks the set (``auto``: C when its library loads, else NumPy).
Both sets have the same methods with the same signatures and the same argument checks, all
generated from the kernel table (``decl/``: each kernel declared once, with its docstring and
its NumPy implementation, the reference). The C set loads only a library that has every
declared C symbol; it hands NumPy only the calls its kernels do not serve (another dtype, an
overlapping GEMM output), explicitly (``CKernels.native``: the kernels with a C symbol).
Plugins add kernels through the ``qorus_register_kernels`` hook, declared the same way
(``declare_kernel``); both sets serve them as ``k.<namespace>.<name>`` (extensions.py).
"""

from __future__ import annotations

import os
from functools import cache

from ..errors import KernelError
from .decl.conv import empty_window, pool_out
from .decl.spec import EXACT, FLOAT, Fit, Inline, Kernel, declare_kernel, same_rows, same_size, sizes_error
from .decl.strided import BINARY_OPS
from .extensions import UnknownKernelError
from .kernel_set import KernelSet
from .numpy import NumpyKernels
from .simd import SimdTierError

__all__ = ["get_kernels", "c_status", "NumpyKernels", "KernelSet", "KERNEL_SETS",
           # what a plugin declares its own kernels with (qorus_register_kernels)
           "declare_kernel", "Kernel", "same_size", "same_rows", "Fit", "Inline", "EXACT",
           "FLOAT", "sizes_error", "UnknownKernelError",
           # bcast_binary's op codes: BINARY_OPS.index("mul")
           "BINARY_OPS",
           # the pooling windows' output-size rules (PyTorch's) the kernels check, for layers
           "pool_out", "empty_window"]

KERNEL_SETS = ("auto", "c", "numpy")


@cache
def _numpy() -> NumpyKernels:
    return NumpyKernels()


@cache
def _c():
    """The C kernel set, or the reason it cannot load (as a string)."""
    try:
        from .c import CKernels
        return CKernels(fallback=_numpy())
    except SimdTierError:   # QORUS_SIMD names a tier this CPU lacks: an error, not a fallback
        raise
    except (OSError, ImportError, KernelError) as exc:
        return f"{type(exc).__name__}: {exc}"


def c_status() -> tuple[bool, str]:
    """(available, reason or library path) for the C kernel library."""
    c = _c()
    if isinstance(c, str):
        return False, c
    return True, c.library_path


def get_kernels(which=None) -> KernelSet:
    """The kernel set named by ``which`` or by ``QORUS_KERNELS`` (default ``auto``); a kernel
    set object is returned as it is (so every ``kernels=`` argument takes either). Its
    methods, typed for editors: ``KernelSet`` (kernel_set.py, rendered from the table)."""
    if which is not None and not isinstance(which, str):
        return which
    which = (which or os.environ.get("QORUS_KERNELS", "auto")).strip().lower()
    if which not in KERNEL_SETS:
        raise KernelError(f"QORUS_KERNELS={which!r}: expected one of {', '.join(KERNEL_SETS)}")
    if which == "numpy":
        return _numpy()
    c = _c()
    if isinstance(c, str):
        if which == "c":
            raise KernelError(f"C kernels requested but unavailable: {c}")
        _warn_fallback(c)
        return _numpy()
    return c


@cache
def _warn_fallback(reason: str) -> None:
    """Once per process: ``auto`` runs on the NumPy kernels, several times slower, because the
    C library did not load (not built, or built from other sources: a stale library)."""
    import warnings

    warnings.warn(f"qorus: running on the NumPy kernels (several times slower): the C kernel "
                  f"library did not load ({reason}). Rebuild it (pip install -e .), or set "
                  "QORUS_KERNELS=numpy to choose NumPy and silence this.", RuntimeWarning,
                  stacklevel=3)
