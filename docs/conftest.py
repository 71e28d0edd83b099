"""Run every code block of the tutorials (``docs/tutorials/*.md``) as a test, with Sybil.

Each tutorial is one sequence: its blocks run in order in a fresh temporary directory (the
working directory while it runs), sharing one Python namespace, as a reader pasting them in
order would. What a block is decides how it runs:

- a ``python`` block is executed in that namespace (with the interpreter's ``bin`` directory
  first on ``PATH``, for the commands it starts);
- a ``sh`` block runs in ``bash -euo pipefail`` in that directory, with the interpreter's
  ``bin`` directory first on ``PATH`` (so ``python``, ``qorus`` and ``pytest`` are this
  environment's); a failing command fails the test, its output in the message;
- a block with a file name as its title (````toml title="digits.toml"````, any language) is
  written to that path (relative to the directory), for the blocks after it to use;
- ``<!-- skip: next -->`` before a block skips it (Sybil's skip directive): for commands
  that need the network or a model download (``pip download``, ``twine upload``).

So that no tutorial installs anything into the environment that runs the tests, ``pip
install`` in a ``sh`` block goes to a throwaway target directory (``--no-deps
--no-build-isolation --target``, ``-e`` dropped), which later blocks see on ``PYTHONPATH``:
an entry point installed there is found by ``qorus`` like one installed for real. The
commands also see ``EXTRA_ENV`` (matplotlib's Agg backend; Open MPI allowed to run as root,
as CI runs). ``tests/test_docs_site.py`` checks that every block of every tutorial is covered here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from sybil import Region, Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser
from sybil.parsers.markdown.lexers import FencedCodeBlockLexer, RawFencedCodeBlockLexer

DOCS = Path(__file__).resolve().parent
#: a fence whose info string names a file: ```lang title="path"
TITLED = re.compile(r'(?P<language>[\w+-]+)\s+title="(?P<title>[^"]+)"[^\n]*$\n', re.MULTILINE)
#: for the commands the tutorials start: CI and these machines run the tests as root, which Open
#: MPI's mpirun refuses unless told (a no-op for a normal user and for other MPI builds)
EXTRA_ENV = {"MPLBACKEND": "Agg", "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
PIP_SHIM = """#!/usr/bin/env bash
# docs tests: `pip install` goes to a throwaway target seen on PYTHONPATH, never the venv
if [ "${1:-}" != install ]; then exec "$QORUS_DOCS_PYTHON" -m pip "$@"; fi
shift; args=()
for a in "$@"; do [ "$a" = -e ] || [ "$a" = --editable ] || args+=("$a"); done
exec "$QORUS_DOCS_PYTHON" -m pip install -q --no-deps --no-build-isolation --no-index \\
    --upgrade --target "$QORUS_DOCS_SITE" "${args[@]}"
"""


class FileBlockParser:
    """Titled fences: each writes its content to the file its title names."""

    def __init__(self) -> None:
        self.lexer = RawFencedCodeBlockLexer(info_pattern=TITLED,
                                             mapping={"title": "title", "source": "source"})

    def __call__(self, document):
        for region in self.lexer(document):
            title = region.lexemes["title"]
            source = str(region.lexemes["source"])
            yield Region(region.start, region.end, (title, source), write_file)


def write_file(example) -> None:
    """Write a titled block's content under the tutorial's directory."""
    title, source = example.parsed
    path = Path(example.namespace["_docs_dir"], title)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)


class ShellBlockParser:
    """``sh`` fences: run in bash in the tutorial's directory."""

    def __init__(self) -> None:
        self.lexer = FencedCodeBlockLexer("sh")

    def __call__(self, document):
        for region in self.lexer(document):
            yield Region(region.start, region.end, str(region.lexemes["source"]), run_shell)


def run_shell(example) -> str | None:
    """Run a ``sh`` block; the failure message (command output) if it exits non-zero."""
    ns = example.namespace
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", example.parsed], cwd=ns["_docs_dir"],
                          env=ns["_docs_env"], capture_output=True, text=True, timeout=300)
    ns["_docs_last_output"] = proc.stdout
    if proc.returncode != 0:
        return (f"sh block exited {proc.returncode}:\n{example.parsed}\n--- stdout\n{proc.stdout}"
                f"\n--- stderr\n{proc.stderr}")
    return None


def setup(namespace: dict) -> None:
    """A fresh directory, the working directory while the tutorial runs, and the shell's
    environment (``PATH`` with this interpreter first, the ``pip`` shim, its target)."""
    tmp = tempfile.TemporaryDirectory(prefix="qorus-docs-")
    root = Path(tmp.name)
    shim, site = root / ".docs-bin", root / ".docs-site"
    shim.mkdir()
    site.mkdir()
    (shim / "pip").write_text(PIP_SHIM)
    (shim / "pip").chmod(0o755)
    env = dict(os.environ, **EXTRA_ENV, QORUS_DOCS_PYTHON=sys.executable, QORUS_DOCS_SITE=str(site))
    env["PATH"] = os.pathsep.join([str(shim), str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(site), env.get("PYTHONPATH", "")] if p)
    work = root / "work"
    work.mkdir()
    saved = {k: os.environ.get(k) for k in ["PATH", *EXTRA_ENV]}
    namespace.update(_docs_tmp=tmp, _docs_dir=str(work), _docs_env=env, _docs_cwd=os.getcwd(),
                     _docs_path=list(sys.path), _docs_environ=saved)
    os.environ.update(EXTRA_ENV)                       # for the commands Python blocks start
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), saved["PATH"] or ""])
    os.chdir(work)


def teardown(namespace: dict) -> None:
    """Back to the old working directory and ``sys.path``; the directory is removed."""
    os.chdir(namespace["_docs_cwd"])
    sys.path[:] = namespace["_docs_path"]
    for key, value in namespace["_docs_environ"].items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    namespace["_docs_tmp"].cleanup()


def _mpi_missing() -> bool:
    """No mpirun or mpi4py here, and QORUS_REQUIRE_MPI=1 (CI) does not demand them."""
    if os.environ.get("QORUS_REQUIRE_MPI") == "1":
        return False
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return True
    return shutil.which("mpirun") is None


#: the MPI tutorial runs mpirun: left out where MPI is not installed (tests/test_data_parallel.py
#: skips saying so), never in CI
EXCLUDED = ["tutorials/distributed.md"] if _mpi_missing() else []

pytest_collect_file = Sybil(
    parsers=[PythonCodeBlockParser(), ShellBlockParser(), FileBlockParser(), SkipParser()],
    patterns=["tutorials/*.md"],
    excludes=EXCLUDED,
    setup=setup,
    teardown=teardown,
).pytest()
