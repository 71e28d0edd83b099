"""Generate the layer pages: each plugin's ``docs.md`` as it stands, and a catalogue of every
registered layer with its config keys, built from the registry at build time.

The ``docs.md`` files stay beside their packages (one source, also read on PyPI and in a
checkout); the site includes them unchanged. The catalogue (``layers/index.md``) is what
``qorus layers NAME`` prints for each layer: its doc, inputs and constructor keys with their
defaults, for core and the first-party plugins (``site_registry``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import mkdocs_gen_files

sys.path.insert(0, str(Path(__file__).resolve().parent))
from site_registry import FIRST_PARTY, registry  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: namespace -> the package's docs.md
PAGES = {
    "mlp": ROOT / "qorus_layers_mlp" / "docs.md",
    "llm": ROOT / "qorus_layers_llm" / "docs.md",
    "cnn": ROOT / "plugins" / "cnn" / "docs.md",
    "rnn": ROOT / "plugins" / "rnn" / "docs.md",
    "tpl": ROOT / "plugins" / "template" / "docs.md",
}


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def catalogue() -> list[str]:
    """The layer table: one row per registered layer, core's first."""
    from qorus_core.cli import describe

    reg = registry()
    lines = ["# Layers", "",
             "Every layer core and the first-party plugins register, as `qorus layers NAME` "
             "describes it: the name a TOML file or `layer_from_dict` uses, the inputs, and the "
             "constructor's config keys with their defaults. The package pages (left) give "
             "each layer's parameters and shapes.", "",
             "| layer | inputs | config keys (default) | what it is |", "|---|---|---|---|"]
    for entry in reg.entries("layer"):
        info = describe("layer", entry.name)
        keys = ", ".join(f"`{k}`" + ("" if v == "required" else f" ({v})")
                         for k, v in info["config"].items()) or "none"
        first = info["doc"].split("\n\n")[0]
        ns = entry.name.split(".")[0]
        name = f"[`{entry.name}`]({ns}.md)" if ns in PAGES else f"`{entry.name}`"
        lines.append(f"| {name} | {', '.join(info['inputs'])} | {cell(keys)} | {cell(first)} |")
    return lines


def main() -> None:
    nav = ["* [All layers](index.md)"]
    for ns, path in PAGES.items():
        with mkdocs_gen_files.open(f"layers/{ns}.md", "w") as f:
            f.write(path.read_text())
        mkdocs_gen_files.set_edit_path(f"layers/{ns}.md", path.relative_to(ROOT))
        nav.append(f"* [{FIRST_PARTY[ns][1]} ({ns}.*)]({ns}.md)")
    with mkdocs_gen_files.open("layers/index.md", "w") as f:
        f.write("\n".join(catalogue()) + "\n")
    with mkdocs_gen_files.open("layers/SUMMARY.md", "w") as f:
        f.write("\n".join(nav) + "\n")


main()
