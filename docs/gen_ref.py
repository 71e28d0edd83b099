"""Generate the API reference: one page per public module of core and of each plugin package.

Run by mkdocs-gen-files at build time (``mkdocs.yml``). A module is public when no part of its
dotted name starts with an underscore; each page holds a mkdocstrings ``:::`` directive, which
renders the module's docstring and every public member's from the sources (griffe reads them
statically: nothing is imported for the pages). A package's page also renders what its
``__all__`` re-exports (``from qorus_core import Model``: the names users import), then
lists its submodules. ``reference/SUMMARY.md`` is the navigation
(mkdocs-literate-nav), one section per package.
"""

from __future__ import annotations

from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parents[1]
#: (import package, the directory holding it, the distribution) in the order the nav shows them
PACKAGES = [
    ("qorus_core", ROOT, "qorus-core"),
    ("qorus_layers_mlp", ROOT / "qorus_layers_mlp" / "src", "qorus-layers-mlp"),
    ("qorus_layers_llm", ROOT / "qorus_layers_llm" / "src", "qorus-layers-llm"),
    ("qorus_layers_cnn", ROOT / "plugins" / "cnn" / "src", "qorus-layers-cnn"),
    ("qorus_layers_rnn", ROOT / "plugins" / "rnn" / "src", "qorus-layers-rnn"),
    ("qorus_layers_template", ROOT / "plugins" / "template" / "src", "qorus-layers-template"),
]


def public_modules(package: str, base: Path) -> list[tuple[str, ...]]:
    """Dotted-name parts of every public module under ``base/package``, packages first."""
    out = []
    for path in sorted((base / package).rglob("*.py")):
        parts = path.relative_to(base).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(p.startswith("_") for p in parts):
            continue
        out.append(parts)
    return sorted(out)


def module_page(parts: tuple[str, ...], is_package: bool, children: list[tuple[str, ...]]) -> str:
    """The Markdown of one module's page."""
    name = ".".join(parts)
    if not is_package:
        return f"::: {name}\n"
    lines = [f"::: {name}", ""]
    subs = [c for c in children if len(c) == len(parts) + 1 and c[:-1] == parts]
    if subs:
        lines += ["## Modules", ""]
        lines += [f"- [`{'.'.join(c)}`][{'.'.join(c)}]" for c in subs]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    nav = mkdocs_gen_files.Nav()
    index = ["# API reference", "",
             "Generated from the docstrings of every public module (no leading underscore) of "
             "core and of each first-party plugin package.", "",
             "| package | distribution |", "|---|---|"]
    for package, base, dist in PACKAGES:
        modules = public_modules(package, base)
        packages = {p for p in modules if (base.joinpath(*p) / "__init__.py").exists()}
        for parts in modules:
            is_package = parts in packages
            doc = Path(*parts, "index.md") if is_package else Path(*parts).with_suffix(".md")
            nav[parts] = doc.as_posix()
            with mkdocs_gen_files.open(Path("reference", doc), "w") as f:
                f.write(module_page(parts, is_package, modules))
            src = base.joinpath(*parts, "__init__.py") if is_package else base.joinpath(*parts[:-1],
                                                                                          parts[-1] + ".py")
            mkdocs_gen_files.set_edit_path(Path("reference", doc), src.relative_to(ROOT))
        index.append(f"| [`{package}`]({package}/index.md) | `{dist}` |")
    with mkdocs_gen_files.open("reference/index.md", "w") as f:
        f.write("\n".join(index) + "\n")
    with mkdocs_gen_files.open("reference/SUMMARY.md", "w") as f:
        f.write("* [Overview](index.md)\n")
        f.writelines(nav.build_literate_nav())


main()
