"""The C symbols of the table, typed for ctypes, and bound all or nothing.

Every declared symbol must be in the library: a library that lacks one (built from older
sources, or a ``QORUS_LIB`` pointing elsewhere) is refused at load, naming what it lacks,
instead of silently running those kernels in NumPy (which made the C-vs-NumPy parity tests
compare NumPy with NumPy).
"""

from __future__ import annotations

import ctypes

from .spec import DECLARED

__all__ = ["CTYPES", "RESTYPES", "signatures", "bind"]

CTYPES = {"ptr": ctypes.c_void_p, "i64": ctypes.c_int64, "int": ctypes.c_int,
          "u32": ctypes.c_uint32, "uint": ctypes.c_uint, "f32": ctypes.c_float,
          "f64": ctypes.c_double}
RESTYPES = {"status": ctypes.c_int, "f64": ctypes.c_double, "i64": ctypes.c_int64}


def signatures(kernels=None) -> dict[str, tuple]:
    """{C symbol: (restype, argtypes)} of the declared kernels, each derived from its call
    spec; ValueError where two declarations give one symbol different arguments."""
    out: dict[str, tuple] = {}
    seen: dict[str, tuple] = {}
    for k in (DECLARED.values() if kernels is None else kernels):
        for sym in k.symbols:
            sig = sym.signature
            if sym.symbol in seen and seen[sym.symbol] != sig:
                raise ValueError(f"{sym.symbol} is declared with two signatures: "
                                 f"{seen[sym.symbol]} and {sig} ({k.name})")
            seen[sym.symbol] = sig
            out[sym.symbol] = (RESTYPES[sig[0]], [CTYPES[t] for t in sig[1]])
    return out


def bind(lib: ctypes.CDLL, obj, kernels=None) -> list[str]:
    """Type every declared symbol of ``lib`` and set it on ``obj`` (``_<symbol>``; the dict
    ``_v_<kernel>`` {variant: function} for a kernel with variants). Returns the symbols
    ``lib`` lacks (nothing is set then)."""
    sigs = signatures(kernels)
    missing = sorted(s for s in sigs if getattr(lib, s, None) is None)
    if missing:
        return missing
    fns = {}
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
        fns[name] = fn
        setattr(obj, "_" + name, fn)
    for k in (DECLARED.values() if kernels is None else kernels):
        if k.variant:
            setattr(obj, f"_v_{k.attr}", {key: fns[s.symbol] for key, s in k.c.items()})
    return []
