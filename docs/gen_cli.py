"""Generate the command-line reference (``cli.md``) from the argparse parsers at build time.

The ``qorus`` command's subcommands come from the plugins' ``qorus_register_commands`` hooks
(core's own included), so the page is built from the same parser tree ``qorus`` builds
(``qorus_core.cli.build_parser``), with core and the first-party plugins loaded
(``site_registry``): ``qorus --help`` and every subcommand's ``--help``, verbatim.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import mkdocs_gen_files

sys.path.insert(0, str(Path(__file__).resolve().parent))
from site_registry import registry  # noqa: E402

os.environ["COLUMNS"] = "100"          # argparse wraps help at the terminal width


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """{name: parser} of the ``qorus`` subcommands, in registration order."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def command_sections(words: list[str], parser: argparse.ArgumentParser, level: int) -> list[str]:
    """A command's heading and help, then its own subcommands' (``qorus bench kernels``)."""
    anchor = "-".join(words)
    out = [f"{'#' * level} `{' '.join(words)}` {{#{anchor}}}", "", "```text",
           parser.format_help().rstrip(), "```", ""]
    for name, sub in subcommands(parser).items():
        out += command_sections([*words, name], sub, min(level + 1, 4))
    return out


def main() -> None:
    registry()
    from qorus_core.cli import build_parser

    parser = build_parser()
    subs = subcommands(parser)
    lines = ["# Command line", "",
             "Generated from the parsers `qorus` builds: core's commands and those the "
             "first-party plugins add through `qorus_register_commands` (a plugin of yours adds "
             "its own the same way; `qorus --help` lists what is installed). Exit codes: 0 ok, 2 "
             "for a usage error or a `QorusError` (one line on stderr; the traceback too with "
             "`QORUS_DEBUG=1`), 1 when the backend cannot be inspected, 130 on Ctrl-C.", "",
             "| command | what it does |", "|---|---|"]
    helps = {a.dest: a.help for a in parser._subparsers._group_actions[0]._choices_actions}
    lines += [f"| [`qorus {name}`](#qorus-{name}) | {helps.get(name, '')} |" for name in subs]
    lines += ["", "## `qorus`", "", "```text", parser.format_help().rstrip(), "```", ""]
    for name, sub in subs.items():
        lines += command_sections(["qorus", name], sub, 2)
    with mkdocs_gen_files.open("cli.md", "w") as f:
        f.write("\n".join(lines))


main()
