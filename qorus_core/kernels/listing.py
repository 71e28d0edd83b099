"""``qorus kernels [--json]``: the kernel table, each kernel with the C tiers it can run here.

    qorus kernels            # name, family, C tiers on this CPU, what it computes
    qorus kernels --json     # the same, machine-readable, with the C symbols and operands
    qorus kernels --family norm   # one family (an unknown one: KernelError, listing them)

The core plugin registers the command (``builtin_plugin.py``); this module does not import the
CLI. The tiers of a kernel are those of its C family (``simd.family_paths``): the tiers this
CPU and build can run, up to the widest the family has kernels for; none where the C library
is unavailable (the NumPy set serves every kernel then). Plugins' kernels (``tpl.prelu``) come
after core's, with their library, or why the C set runs them in NumPy.
"""

from __future__ import annotations

import argparse
import json

from ..errors import KernelError
from .decl import TABLE, Kernel, families
from .extensions import extensions

__all__ = ["kernel_list", "setup", "run"]


def _c_tiers() -> tuple[dict[str, list[str]], dict]:
    """({SIMD family: its tiers here, narrowest first}, library facts) from the C set."""
    from . import c_status, get_kernels, simd

    ok, why = c_status()
    if not ok:
        return {}, {"c_available": False, "c_reason": why}
    ck = get_kernels("c")
    lib = {"c_available": True, "library": ck.library_path, "version": ck.version,
           "simd_path": ck.simd_path}
    usable = simd.usable_tiers(ck._lib)
    out = {family: usable[:simd.TIERS.index(now) + 1]
           for family, now in ck.simd_families().items()}
    return out, lib


def _row(k: Kernel, tiers: dict[str, list[str]]) -> dict:
    return {"name": k.full_name, "family": k.family, "doc": k.doc.split("\n\n")[0].replace("\n", " "),
            "c_symbols": [s.symbol for s in k.symbols], "simd_family": k.simd,
            "c_tiers": tiers.get(k.simd, []) if k.c else [],
            "operands": [{"name": o.name, "role": o.role, "dtype": o.dtype,
                          "optional": o.optional} for o in k.operands],
            "replayable": k.replay}


def _plugin_row(k: Kernel, ext, c_available: bool) -> dict:
    row = _row(k, {})
    served = c_available and ext.native and bool(k.c)
    return {**row, "plugin": ext.namespace, "simd_family": None, "c_tiers": ["plugin"] if served else [],
            "c_library": ext.library if served else None,
            "c_reason": "" if served or not k.c else (ext.c_reason or "C library unavailable")}


def kernel_list() -> dict:
    """{"kernels": [one row per declared kernel, core's then plugins'], and the C library's
    facts}."""
    tiers, lib = _c_tiers()
    rows = [_row(k, tiers) for k in TABLE]
    for ext in extensions(load=True).values():
        rows += [_plugin_row(k, ext, lib["c_available"]) for k in ext.kernels.values()]
    return {**lib, "kernels": rows}


def setup(p: argparse.ArgumentParser) -> None:
    """The arguments of ``qorus kernels``: ``--json``, ``--family``."""
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.add_argument("--family", default="", help="only the kernels of this family")


def run(args: argparse.Namespace) -> int:
    """Run ``qorus kernels``: the kernel table with the C tiers this machine runs, or its JSON."""
    known = {**families(), **{k.family: [] for e in extensions(load=True).values()
                              for k in e.kernels.values()}}
    if args.family and args.family not in known:
        raise KernelError(f"qorus kernels --family {args.family}: no such kernel family; the "
                          f"families are {', '.join(known)}")
    info = kernel_list()
    rows = [r for r in info["kernels"] if not args.family or r["family"] == args.family]
    if args.json:
        print(json.dumps({**info, "kernels": rows}, indent=1))
        return 0
    head = (f"C library {info['library']} ({info['version']}), SIMD tier {info['simd_path']}"
            if info["c_available"] else f"C library unavailable ({info['c_reason']}): NumPy only")
    print(f"{len(rows)} kernels; {head}")
    w = max((len(r["name"]) for r in rows), default=4)
    for r in rows:
        tiers = "/".join(r["c_tiers"]) or "numpy"
        print(f"  {r['name']:<{w}}  {r['family']:<11}  {tiers:<20}  {r['doc']}")
    return 0
