"""Without a working C compiler `pip install` still succeeds, the NumPy kernels serve, and
`qorus backend` says why."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("setuptools", reason="building qorus-core needs setuptools")


def test_install_without_compiler_uses_numpy_kernels(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "qorus_core", src / "qorus_core",
                    ignore=shutil.ignore_patterns("_lib", "__pycache__", "*.so"))
    site = tmp_path / "site"
    env = {k: v for k, v in os.environ.items() if not k.startswith("QORUS_")}
    env["CC"] = "false"                      # a compiler that always fails
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-v", "--no-deps",
                           "--no-build-isolation", "--target", str(site), str(src)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "WARNING: qorus" in proc.stdout + proc.stderr
    assert not list(site.glob("qorus_core/kernels/_lib/*.so"))

    env["PYTHONPATH"] = str(site)
    probe = ("import json; from qorus_core import get_kernels; "
             "from qorus_core.kernels.info import backend_info as b; "
             "print(json.dumps([b()['c_available'], b()['c_reason'], get_kernels().name]))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    available, reason, kernel_set = json.loads(out.stdout)
    assert (available, kernel_set) == (False, "numpy")
    assert "libqorus" in reason
    assert "running on the NumPy kernels" in out.stderr      # said once, not silent
    cli = subprocess.run([sys.executable, "-m", "qorus_core.cli", "backend"], capture_output=True,
                         text=True, env=env, cwd=tmp_path, timeout=60)
    assert cli.returncode == 0 and "libqorus" in cli.stdout, cli.stdout + cli.stderr
