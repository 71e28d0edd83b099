"""Build step for qorus-core: compiles the C kernels into a plain shared library.

Metadata lives in pyproject.toml; this file only adds the native build, which setuptools
merges in. The library is not a Python extension module: ``qorus_core.kernels.c`` loads it
with ctypes from ``qorus_core/kernels/_lib/libqorus.so``.

    pip install .                       # wheel: the library is built into the wheel
    pip install -e . --no-build-isolation   # editable: built in the source tree
    python setup.py build_ext --inplace     # developers: (re)build in the source tree

Flags: -O3 -std=c11 -fPIC -pthread for every file; -mavx2 -mfma -mf16c only for *_avx2.c and
-mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c only for *_avx512.c (x86 only; whether
they run is decided at run time from the CPU's features, cpu.c). A tier whose files do not
compile is left out (the AVX-512 one needs the AVX2 one), with a warning. ``QORUS_CFLAGS``
appends flags to every compile and link (e.g. ``-O1 -g -fsanitize=address,undefined``);
``CC`` picks the compiler. If there is no compiler or the build fails, installation still
succeeds with a warning and Qorus runs on its NumPy kernels.
"""

from __future__ import annotations

import glob
import os
import platform
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile

from setuptools import Distribution, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join("qorus_core", "kernels", "csrc")
LIB_DIR = os.path.join("qorus_core", "kernels", "_lib")
LIB_NAME = "libqorus.so"

BASE_FLAGS = ["-O3", "-std=c11", "-fPIC", "-pthread", "-ffp-contract=off", "-fno-math-errno",
              "-fno-trapping-math", "-Wall",
              "-fvisibility=hidden", "-DNDEBUG"]
AVX2_FLAGS = ["-mavx2", "-mfma", "-mf16c"]
# 512-bit vectors for the auto-vectorized loops too (GCC's generic tuning may prefer 256)
AVX512_FLAGS = ["-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512bw", "-mavx512vl",
                "-mavx512dq", "-mprefer-vector-width=512"]
# (suffix, flags, define): the SIMD tiers, narrowest first; each needs the ones before it
TIERS = [("_avx2.c", AVX2_FLAGS, "-DQR_HAVE_AVX2_BUILD"),
         ("_avx512.c", AVX512_FLAGS, "-DQR_HAVE_AVX512_BUILD")]


def _warn(msg: str) -> None:
    print(f"WARNING: qorus: {msg}", file=sys.stderr, flush=True)


def _compiler() -> list[str] | None:
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    cmd = shlex.split(cc)
    if cmd and shutil.which(cmd[0]):
        return cmd
    for name in ("cc", "gcc", "clang"):
        if shutil.which(name):
            return [name]
    return None


def _run(cmd: list[str]) -> bool:
    print(" ".join(cmd))
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.stdout:
        print(proc.stdout, end="")
    return proc.returncode == 0


def build_library(out_path: str) -> bool:
    """Compile csrc/*.c into ``out_path``; False (with a warning) when it cannot."""
    cc = _compiler()
    if cc is None:
        _warn("no C compiler found; the C kernels are not built (NumPy kernels will be used)")
        return False
    src_dir = os.path.join(ROOT, CSRC)
    sources = sorted(glob.glob(os.path.join(src_dir, "*.c")))
    if not sources:
        _warn(f"no C sources in {src_dir}; the C kernels are not built")
        return False
    extra = shlex.split(os.environ.get("QORUS_CFLAGS", ""))
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
    tiered = tuple(sfx for sfx, _, _ in TIERS)
    plain = [s for s in sources if not s.endswith(tiered)]
    with tempfile.TemporaryDirectory(prefix="qorus-build-") as tmp:
        objects: list[str] = []
        defines: list[str] = []
        for sfx, flags, define in (TIERS if x86 else []):
            simd = [s for s in sources if s.endswith(sfx)]
            if not simd:
                break
            simd_objs = []
            for src in simd:
                obj = os.path.join(tmp, os.path.basename(src)[:-2] + ".o")
                cmd = cc + BASE_FLAGS + flags + defines + [define, "-I", src_dir]
                if not _run(cmd + extra + ["-c", src, "-o", obj]):
                    _warn(f"{os.path.basename(src)} did not compile with {' '.join(flags)}; "
                          f"building without the {sfx[1:-2]} tier")
                    simd_objs = []
                    break
                simd_objs.append(obj)
            if not simd_objs:
                break
            objects += simd_objs
            defines = defines + [define]
        for src in plain:
            obj = os.path.join(tmp, os.path.basename(src)[:-2] + ".o")
            if not _run(cc + BASE_FLAGS + defines + ["-I", src_dir] + extra
                        + ["-c", src, "-o", obj]):
                _warn(f"compiling {os.path.basename(src)} failed; the C kernels are not built "
                      "(NumPy kernels will be used)")
                return False
            objects.append(obj)
        os.makedirs(os.path.dirname(out_path), exist_ok=True)
        tmp_lib = os.path.join(tmp, LIB_NAME)
        if not _run(cc + ["-shared", "-pthread"] + extra + objects + ["-o", tmp_lib, "-lm"]):
            _warn("linking libqorus failed; the C kernels are not built")
            return False
        _install(tmp_lib, out_path)
    print(f"qorus: built {out_path}")
    return True


def _install(built: str, out_path: str) -> None:
    """Copy ``built`` to ``out_path`` atomically: a process that has the old file mapped keeps
    it, and builds racing to the same path (parallel tox envs, two shells) each stage their copy
    under a name of their own, so the file at ``out_path`` is always one whole library."""
    fd, staged = tempfile.mkstemp(prefix=LIB_NAME + ".", suffix=".tmp",
                                  dir=os.path.dirname(out_path) or ".")
    try:
        with os.fdopen(fd, "wb") as dst, open(built, "rb") as src:
            shutil.copyfileobj(src, dst)
        os.chmod(staged, 0o644)   # as a plain copy would be (mkstemp makes it 0600)
        os.replace(staged, out_path)
    except BaseException:
        if os.path.exists(staged):
            os.unlink(staged)
        raise


class BuildQorusLib(build_ext):
    """build_ext that also builds libqorus.so (in place for --inplace / editable installs)."""

    def run(self) -> None:
        super().run()
        if self.inplace or getattr(self, "editable_mode", False):
            target = os.path.join(ROOT, LIB_DIR, LIB_NAME)
        else:
            target = os.path.join(os.path.abspath(self.build_lib), LIB_DIR, LIB_NAME)
        try:
            built = build_library(target)
        except Exception as exc:  # never fail the install over the optional library
            _warn(f"building the C kernels failed: {exc}")
            built = False
        self._qorus_outputs = [target] if built else []

    def get_outputs(self) -> list[str]:
        return super().get_outputs() + list(getattr(self, "_qorus_outputs", []))


class BinaryDistribution(Distribution):
    """The wheel carries a native library, so it is platform-specific (and build_ext runs)."""

    def has_ext_modules(self) -> bool:
        return True


if __name__ == "__main__":   # setuptools runs this file as __main__; `import setup` only builds
    setup(distclass=BinaryDistribution, cmdclass={"build_ext": BuildQorusLib})
