"""The C kernel set: ctypes binding to ``libqorus.so`` (built from ``csrc/`` by setup.py).

The library is loaded from ``QORUS_LIB`` when set, else from ``_lib/libqorus.so`` next to this
file, and refused (``OSError``, naming why) unless it is the one this code was written for: its
``qr_version()`` equals ``decl.LIB_VERSION`` and it has every C symbol the kernel table
declares (so a stale library can never make a kernel quietly run in NumPy).

The methods are generated from the table (``decl/``): per kernel, the declared dtypes (another
dtype, or a call the C code does not serve, such as a GEMM whose output overlaps an input,
goes to the NumPy fallback, explicitly), the declared check (the same as the NumPy set's, so
both refuse a bad call with the same ``KernelError``), then the C call with argument types
derived from the declaration. Tensors are passed by their cached address (``Tensor.p``;
``Tensor.wp`` for an operand the kernel writes, which a read-only tensor does not have), so a
call creates no array and no ctypes object.
"""

from __future__ import annotations

import ctypes
import os
from ctypes import c_char_p, c_double, c_int, c_int64, c_uint, c_void_p

from . import simd  # SIMD tiers: names, checked setters (simd.py)
from .decl import LIB_VERSION, TABLE  # the kernel table (decl/)
from .decl import bind as _table
from .decl import gen as _gen
from .extensions import KernelNamespaces
from .numpy import NumpyKernels
from .numpy_quant import WeightDispatch

__all__ = ["CKernels", "default_library_path"]

_P, _I64, _I, _D = c_void_p, c_int64, c_int, c_double

# name -> (restype, argtypes): the runtime API (threads, CPU, SIMD tier, version, the FMA
# probe, replay); the kernels' symbols come from the table, bound by decl/bind.py.
_SIGNATURES = {
    "qr_get_threads": (_I, []),
    "qr_set_threads": (_I, [_I]),
    "qr_cpu_features": (c_uint, []),
    "qr_simd_path": (_I, []),
    "qr_set_simd_path": (_I, [_I]),
    "qr_simd_compiled": (_I, []),
    "qr_version": (c_char_p, []),
    "qr_quant_row_bytes": (_I64, [_I, _I64]),
    "qr_fma_peak_f32": (_D, [_I64]),
    "qr_replay_op": (_I, [c_char_p]),
    "qr_replay_run": (_I, [_P, _I64, _I64]),
    "qr_replay_op_count": (_I, []),
    "qr_replay_op_name": (c_char_p, [_I]),
}

_CPU_BITS = simd.CPU_BITS


def default_library_path() -> str:
    """Where the library is looked for: ``QORUS_LIB`` or ``_lib/libqorus.so`` beside this file."""
    env = os.environ.get("QORUS_LIB")
    if env:
        return os.path.abspath(env)
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "_lib", "libqorus.so")


def _load(path: str) -> ctypes.CDLL:
    """The library at ``path``, its runtime API typed; OSError unless it is ``LIB_VERSION``."""
    version = LIB_VERSION
    if not os.path.isfile(path):
        raise OSError(f"C kernel library not found at {path} (build it with "
                      "`pip install -e .` or `python setup.py build_ext --inplace`)")
    lib = ctypes.CDLL(path)
    fn = getattr(lib, "qr_version", None)
    got = None
    if fn is not None:
        fn.restype, fn.argtypes = c_char_p, []
        got = (fn() or b"").decode(errors="replace")
    if got != version:
        raise OSError(f"{path} is {got or 'a library without qr_version'}, this qorus_core "
                      f"needs {version!r}: rebuild the C kernels")
    missing = [n for n in _SIGNATURES if getattr(lib, n, None) is None]
    if missing:
        raise OSError(f"{path} lacks {', '.join(missing)}: rebuild the C kernels")
    for name, (restype, argtypes) in _SIGNATURES.items():
        f = getattr(lib, name)
        f.restype, f.argtypes = restype, argtypes
    return lib


class CKernels(KernelNamespaces, WeightDispatch):
    """The C kernel set; same methods and signatures as ``NumpyKernels`` (both from the table)."""

    name = "c"

    def __init__(self, fallback: NumpyKernels | None = None, path: str | None = None) -> None:
        self.fallback = fallback if fallback is not None else NumpyKernels()
        self.library_path = os.path.abspath(path) if path else default_library_path()
        lib = self._lib = _load(self.library_path)
        simd.bind(lib)
        simd.check_env(lib)   # a QORUS_SIMD tier this CPU lacks: SimdTierError
        for n in _SIGNATURES:   # bound C functions, looked up once
            setattr(self, "_" + n[3:], getattr(lib, n))
        missing = _table.bind(lib, self)      # every declared kernel's symbols, typed
        if missing:
            raise OSError(f"{self.library_path} lacks {', '.join(missing)}: rebuild the C "
                          "kernels")
        self._replay = {n: getattr(lib, n) for n in ("qr_replay_op", "qr_replay_run")}
        #: the kernels served in C: every declared one with a C symbol (all of them are bound)
        self.native = frozenset(k.name for k in TABLE if k.c)

    def __repr__(self) -> str:
        return f"CKernels({self.library_path!r}, threads={self.threads}, simd={self.simd_path})"

    # ----------------------------------------------------------------- runtime
    @property
    def threads(self) -> int:
        """Threads the C kernels use (``QORUS_NUM_THREADS``, default: usable cores)."""
        return self._get_threads()

    def set_threads(self, n: int) -> int:
        """Set the thread count (n <= 0: the default); returns the count now in effect."""
        return self._set_threads(int(n))

    def cpu_features(self) -> dict[str, bool]:
        """CPU features detected at run time by the library."""
        bits = self._cpu_features()
        return {name: bool(bits >> i & 1) for i, name in enumerate(_CPU_BITS)}

    @property
    def simd_path(self) -> str:
        """The SIMD tier in effect: "avx512", "avx2" or "portable" (simd.py)."""
        return simd.tier_name(self._simd_path())

    def set_simd_path(self, path: str) -> str:
        """Force a tier ("avx512", "avx2", "portable") or "auto" (the widest this CPU runs);
        returns the tier in effect. A tier the CPU lacks raises KernelError naming why."""
        return simd.tier_name(simd.set_path(self._lib, path))

    def simd_families(self) -> dict[str, str]:
        """{kernel family: the tier it runs now}: a family without a kernel for the tier in
        effect runs its widest narrower one (e.g. quant on AVX2 under avx512)."""
        return simd.family_paths(self._lib)

    @property
    def version(self) -> str:
        """The loaded library's ``qr_version()`` string."""
        return self._version().decode()

    # ----------------------------------------------------------------- FMA peak probe
    def fma_peak(self, iters: int) -> float:
        """Run the FMA peak probe (csrc/peak.c) on every pool thread: the flops it did (time
        the call for GFLOP/s)."""
        return float(self._fma_peak_f32(max(0, int(iters))))

    def _quant(self, name: str):
        """The bound C function ``name`` (tests call the quant entry points directly)."""
        return getattr(self, "_" + name, None) or getattr(self, "_" + name[3:])


_gen.install(CKernels, "c")   # every declared kernel: dtypes, check, C call
