"""Build step of the template plugin: compiles csrc/*.c into the plugin's own shared library.

Metadata lives in pyproject.toml. The library is a plain shared object (not a Python
extension), loaded by qorus_core through ctypes when the plugin registers its kernels
(``qorus_register_kernels``): ``src/qorus_layers_template/_lib/libqorus_tpl.so``. Without a C
compiler, or if compiling fails, the install still succeeds with a warning and the kernels run
their NumPy implementations. ``QORUS_CFLAGS`` appends flags (as for qorus-core's build), ``CC``
picks the compiler.
"""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile

from setuptools import Distribution, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))
LIB = os.path.join("src", "qorus_layers_template", "_lib", "libqorus_tpl.so")
FLAGS = ["-O3", "-std=c11", "-fPIC", "-shared", "-fvisibility=hidden", "-Wall"]


def build_library(out_path: str) -> bool:
    """Compile csrc/*.c into ``out_path`` (atomically); False, with a warning, if it cannot."""
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    if not cc or not shutil.which(cc[0]):
        cc = ["cc"] if shutil.which("cc") else []
    sources = sorted(glob.glob(os.path.join(ROOT, "csrc", "*.c")))
    if not cc or not sources:
        print("WARNING: qorus-layers-template: no C compiler or sources; its kernels run in "
              "NumPy", file=sys.stderr)
        return False
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    fd, staged = tempfile.mkstemp(suffix=".so.tmp", dir=os.path.dirname(out_path))
    os.close(fd)
    cmd = cc + FLAGS + shlex.split(os.environ.get("QORUS_CFLAGS", "")) + sources + ["-o", staged]
    print(" ".join(cmd))
    if subprocess.run(cmd).returncode != 0:
        os.unlink(staged)
        print("WARNING: qorus-layers-template: compiling its kernels failed; they run in NumPy",
              file=sys.stderr)
        return False
    os.chmod(staged, 0o755)
    os.replace(staged, out_path)     # a process that has the old file mapped keeps it
    return True


class BuildKernels(build_ext):
    """build_ext that builds the plugin's library (in the source tree for editable installs)."""

    def run(self) -> None:
        super().run()
        editable = self.inplace or getattr(self, "editable_mode", False)
        target = os.path.join(ROOT if editable else os.path.abspath(self.build_lib),
                              LIB if editable else LIB.split(os.sep, 1)[1])
        self._outputs = [target] if build_library(target) else []

    def get_outputs(self) -> list[str]:
        return super().get_outputs() + list(getattr(self, "_outputs", []))


class BinaryDistribution(Distribution):
    """The wheel carries a native library: platform-specific, and build_ext runs."""

    def has_ext_modules(self) -> bool:
        return True


if __name__ == "__main__":
    setup(distclass=BinaryDistribution, cmdclass={"build_ext": BuildKernels})
