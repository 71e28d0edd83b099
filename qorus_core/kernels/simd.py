"""SIMD tiers of the C library: names, the features each needs, and the checked setters.

The library (csrc/cpu.c) runs each kernel family on the widest tier it has kernels for that
is not wider than the tier in effect: ``QORUS_SIMD=auto|avx512|avx2|portable`` at load, or
``CKernels.set_simd_path``. Asking for a tier this CPU (or this build) lacks raises
``SimdTierError`` naming the missing features, never runs an illegal instruction and never
silently runs another tier. ``QORUS_CPU_MASK`` (an integer of ``CPU_BITS`` bits, testing only)
hides features from the library's detection, so the refusal can be tested on any CPU.
"""

from __future__ import annotations

import ctypes
import os

from ..errors import KernelError

__all__ = ["TIERS", "CPU_BITS", "SimdTierError", "bind", "tier_name", "missing_features",
           "usable_tiers", "check_env", "set_path", "family_paths"]

TIERS = ("portable", "avx2", "avx512")          # QR_SIMD_PORTABLE, _AVX2, _AVX512
AUTO = -1                                       # QR_SIMD_AUTO
CPU_BITS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
            "avx512dq", "avx512vnni", "avx512bf16")   # QR_CPU_* bit order
_EUNSUPPORTED = -4

_SIGNATURES = {
    "qr_simd_missing": (ctypes.c_uint, [ctypes.c_int]),
    "qr_simd_env_status": (ctypes.c_int, []),
    "qr_simd_family_name": (ctypes.c_char_p, [ctypes.c_int]),
    "qr_simd_family_path": (ctypes.c_int, [ctypes.c_int]),
}


class SimdTierError(KernelError):
    """A SIMD tier was asked for (``QORUS_SIMD`` or ``set_simd_path``) that cannot run here."""


def bind(lib: ctypes.CDLL) -> None:
    """Type the tier functions of ``lib``; OSError naming the first one it lacks."""
    for name, (restype, argtypes) in _SIGNATURES.items():
        fn = getattr(lib, name, None)
        if fn is None:
            raise OSError(f"the C library is missing {name}: rebuild the C kernels")
        fn.restype, fn.argtypes = restype, argtypes


def tier_name(code: int) -> str:
    """"portable" / "avx2" / "avx512" for a QR_SIMD_* code."""
    if 0 <= code < len(TIERS):
        return TIERS[code]
    raise KernelError(f"the C library reported SIMD tier {code}, not one of {TIERS}")


def missing_features(lib: ctypes.CDLL, tier: str) -> list[str]:
    """CPU features ``tier`` needs that this CPU lacks (as detected, after QORUS_CPU_MASK)."""
    bits = lib.qr_simd_missing(TIERS.index(tier))
    return [name for i, name in enumerate(CPU_BITS) if bits >> i & 1]


def usable_tiers(lib: ctypes.CDLL) -> list[str]:
    """The tiers this CPU and this build can run, narrowest first (portable always)."""
    compiled = lib.qr_simd_compiled()
    return [t for i, t in enumerate(TIERS)
            if i == 0 or (i <= compiled and not missing_features(lib, t))]


def _refusal(lib: ctypes.CDLL, tier: str, source: str) -> SimdTierError:
    missing = missing_features(lib, tier)
    compiled = lib.qr_simd_compiled()
    if missing:
        why = f"this CPU lacks {', '.join(missing)}"
    elif TIERS.index(tier) > compiled:
        why = f"the library was built without it (widest tier compiled: {TIERS[compiled]})"
    else:
        why = "the library refused it"
    return SimdTierError(f"{source}: SIMD tier {tier!r} cannot run: {why}; tiers available "
                         f"here: auto, {', '.join(reversed(usable_tiers(lib)))}")


def check_env(lib: ctypes.CDLL) -> None:
    """Refuse a ``QORUS_SIMD`` the library could not honour (unknown name, or missing tier)."""
    status = lib.qr_simd_env_status()
    if status == 0:
        return
    value = os.environ.get("QORUS_SIMD", "")
    if value in TIERS:
        raise _refusal(lib, value, f"QORUS_SIMD={value}")
    raise SimdTierError(f"QORUS_SIMD={value!r}: expected one of auto, {', '.join(reversed(TIERS))}")


def set_path(lib: ctypes.CDLL, path: str) -> int:
    """Set the tier ("auto" or a name in TIERS); the code of the tier now in effect."""
    if path != "auto" and path not in TIERS:
        raise SimdTierError(f"simd path {path!r}: expected one of auto, {', '.join(reversed(TIERS))}")
    rc = lib.qr_set_simd_path(AUTO if path == "auto" else TIERS.index(path))
    if rc == _EUNSUPPORTED:
        raise _refusal(lib, path, "set_simd_path")
    if rc < 0:
        raise SimdTierError(f"set_simd_path({path!r}): the C library returned error {rc}")
    return rc


def family_paths(lib: ctypes.CDLL) -> dict[str, str]:
    """{kernel family: tier it runs now}, e.g. {"vec": "avx512", "quant": "avx2", ...}."""
    out = {}
    i = 0
    while (name := lib.qr_simd_family_name(i)) is not None:
        out[name.decode()] = tier_name(lib.qr_simd_family_path(i))
        i += 1
    return out
