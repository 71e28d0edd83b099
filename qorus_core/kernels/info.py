"""What the kernels run on: ``backend_info()`` feeds ``qorus backend [--json]``."""

from __future__ import annotations

import os

import numpy as np

from ..errors import KernelError
from . import c_status, get_kernels
from .simd import CPU_BITS, usable_tiers

__all__ = ["backend_info"]


def _numpy_blas() -> str | None:
    """Name and version of NumPy's BLAS, from numpy.show_config (cheap: no benchmark)."""
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        name, version = blas.get("name"), blas.get("version")
        if name:
            return f"{name} {version}" if version else str(name)
    except Exception:  # older NumPy or an unusual build: optional information
        pass
    return None


_CPU_FLAGS = CPU_BITS   # /proc/cpuinfo spells them as the library does (avx512_bf16 aside)
_PROC_NAMES = {"avx512vnni": "avx512_vnni", "avx512bf16": "avx512_bf16"}


def _cpu_from_proc() -> dict[str, bool]:
    """CPU features from /proc/cpuinfo (Linux), for when the C library is not loaded."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return {f: _PROC_NAMES.get(f, f) in flags for f in _CPU_FLAGS}
    except OSError:
        pass
    return {}


def _default_threads() -> int:
    env = os.environ.get("QORUS_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def backend_info() -> dict:
    """Kernel set in use, C library status, CPU features, SIMD tier (overall and per kernel
    family), threads, NumPy's BLAS."""
    try:
        ok, reason = c_status()
    except KernelError as exc:   # QORUS_SIMD names a tier this CPU lacks
        ok, reason = False, f"{type(exc).__name__}: {exc}"
    try:
        kernel_set = get_kernels().name
    except KernelError as exc:   # e.g. QORUS_KERNELS=c without the library
        kernel_set = f"error: {exc}"
    info: dict = {
        "kernel_set": kernel_set,
        "kernels_env": os.environ.get("QORUS_KERNELS", "auto"),
        "c_available": ok,
        "c_reason": reason,
        "cpu": _cpu_from_proc(),
        "simd_env": os.environ.get("QORUS_SIMD", "auto"),
        "simd_path": "none",        # "avx512", "avx2" or "portable" when the C library loads
        "simd_families": {},        # kernel family -> the tier it runs (C library loaded)
        "simd_tiers": [],           # tiers this CPU and build can run, widest first
        "threads": _default_threads(),
        "native_kernels": [],
        "numpy_version": np.__version__,
        "numpy_blas": _numpy_blas(),
    }
    if ok:
        ck = get_kernels("c")
        info.update(cpu=ck.cpu_features(), simd_path=ck.simd_path,
                    simd_families=ck.simd_families(), simd_tiers=usable_tiers(ck._lib)[::-1],
                    threads=ck.threads, native_kernels=sorted(ck.native),
                    library_version=ck.version)
    return info
