"""Generate the kernel reference (``kernels.md``) from the kernel table at build time.

Every kernel is declared once (``qorus_core/kernels/decl/``): its operands with their roles
and dtypes, its scalars, the C symbol it calls and its NumPy implementation, whose docstring
is the kernel's documentation for both kernel sets. This page lists them family by family,
then the template plugin's kernels (``k.tpl.*``), so it cannot drift from the table.
"""

from __future__ import annotations

import inspect

import mkdocs_gen_files

from qorus_core.kernels.decl import LIB_VERSION, families
from qorus_core.kernels.decl.spec import Kernel


def signature(k: Kernel, name: str) -> str:
    """How a layer calls the kernel: ``k.name(operands..., scalars...)``."""
    params = list(inspect.signature(k.numpy).parameters.values())[1:]   # drop self
    args = ", ".join(p.name if p.default is p.empty else f"{p.name}={p.default!r}" for p in params)
    return f"k.{name}({args})"


def section(k: Kernel, namespace: str | None = None) -> list[str]:
    """One kernel's entry: heading, call, operand table, C symbols, doc."""
    name = f"{namespace}.{k.name}" if namespace else k.full_name
    out = [f"### `{name}`", "", f"```python\n{signature(k, name)}\n```", ""]
    doc = inspect.cleandoc(k.doc or "").strip()
    if doc:
        out += [doc, ""]
    out += ["| operand | role | dtype | optional |", "|---|---|---|---|"]
    out += [f"| `{o.name}` | {o.role} | {o.dtype} | {'yes' if o.optional else ''} |"
            for o in k.operands]
    facts = []
    if k.scalars:
        facts.append("scalars: " + ", ".join(f"`{s}`" for s in k.scalars))
    syms = [s.symbol for s in k.symbols]
    facts.append("C: " + (", ".join(f"`{s}`" for s in syms) if syms else "none (NumPy only)"))
    if namespace is None and syms:
        facts.append(f"SIMD family `{k.simd}`")
    if k.replay:
        facts.append("replayable from C")
    out += ["", "; ".join(facts) + ".", ""]
    return out


def plugin_kernels() -> list[Kernel]:
    """The template plugin's declarations (imported directly: no registry, no library)."""
    try:
        from qorus_layers_template.kernels import KERNELS
    except ImportError:   # pragma: no cover - the docs env puts every package on the path
        return []
    return list(KERNELS)


def main() -> None:
    fams = families()
    lines = ["# Kernels", "",
             f"Generated from the kernel table (`qorus_core/kernels/decl/`, library version "
             f"`{LIB_VERSION}`): {sum(len(v) for v in fams.values())} kernels in "
             f"{len(fams)} families. Both kernel sets, C and NumPy, serve each one as "
             "`k.<name>(...)` (`ctx.k` in a layer, `qorus_core.get_kernels()` elsewhere), "
             "with the same argument check; the NumPy implementation is the reference. "
             "`qorus kernels` lists them with the C tiers this machine runs, "
             "`qorus kernels --json` with their operands.", "",
             "Operand roles: `in` is read, `out` written, `inout` read and added into. A tensor "
             "of rank above 2 is seen as a matrix `(rows, last dimension)`.", "",
             "| family | kernels |", "|---|---|"]
    for fam, ks in fams.items():
        lines.append(f"| [{fam}](#{fam}) | " + ", ".join(f"`{k.name}`" for k in ks) + " |")
    lines.append("")
    for fam, ks in fams.items():
        lines += [f"## {fam}", ""]
        for k in ks:
            lines += section(k)
    extra = plugin_kernels()
    if extra:
        lines += ["## Plugin kernels: tpl", "",
                  "A plugin declares its kernels the same way (`qorus_core.kernels.declare_kernel`) "
                  "and registers them through `qorus_register_kernels`; the template plugin's:", ""]
        for k in extra:
            lines += section(k, "tpl")
    with mkdocs_gen_files.open("kernels.md", "w") as f:
        f.write("\n".join(lines))


main()
