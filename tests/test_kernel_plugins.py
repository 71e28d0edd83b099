"""Kernels from plugins (``qorus_register_kernels``): served on both kernel sets as
``k.<namespace>.<name>``, C from the plugin's own library when it is built, NumPy otherwise;
every bad registration fails the plugin alone, naming the fault."""

from __future__ import annotations

import shutil
import subprocess
import types

import numpy as np
import pytest

from qorus_core import Tensor, get_kernels, hookimpl
from qorus_core.errors import KernelError, RegistryError
from qorus_core.kernels import declare_kernel, same_size
from qorus_core.kernels.extensions import UnknownKernelError, extensions
from qorus_core.registry import Registry
from qorus_core.testing import c_available, check_kernel

C_SOURCE = r"""
#include <stdint.h>
__attribute__((visibility("default")))
int {ns}_twice_f32(const float *x, float *y, int64_t n) {{
    for (int64_t i = 0; i < n; i++) y[i] = 2.0f * x[i];
    return 0;
}}
"""


def twice_kernel(symbol: str | None):
    @declare_kernel("test", "x y:out", check=same_size,
                    c=None if symbol is None else f"{symbol}(x, y, n)",
                    examples=[dict(x=(4, 5), y=(4, 5))], tol=(0.0, 0.0))
    def twice(self, x, y) -> None:
        """y = 2 x."""
        np.multiply(x.a.reshape(y.shape), np.float32(2.0), out=y.w)
    return twice


def plugin(*items):
    """A plugin object registering ``items``: (kernel, library) pairs."""
    @hookimpl
    def qorus_register_kernels(register):
        for k, lib in items:
            register(k, library=lib)
    return types.SimpleNamespace(qorus_register_kernels=qorus_register_kernels)


def load(ns: str, *items):
    r = Registry(autoload=False, builtins=False)
    return r, r.add_plugin(ns, plugin(*items))


def fails(ns: str, *items) -> str:
    r = Registry(autoload=False, builtins=False)
    with pytest.raises(RegistryError) as err:
        r.add_plugin(ns, plugin(*items))
    assert ns not in extensions()          # nothing of a failed plugin is installed
    return str(err.value)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """A built plugin library with ``ktc_twice_f32`` (skips without a C compiler)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    d = tmp_path_factory.mktemp("kplugin")
    (d / "k.c").write_text(C_SOURCE.format(ns="ktc"))
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-fvisibility=hidden", str(d / "k.c"),
                    "-o", str(d / "libk.so")], check=True)
    return str(d / "libk.so")


def test_a_kernel_without_a_library_runs_its_numpy_implementation_on_both_sets():
    k = twice_kernel("ktn_twice_f32")
    _, info = load("ktn", (k, None))
    assert info.items == 1 and k.full_name == "ktn.twice"
    ext = extensions()["ktn"]
    assert not ext.native and "no library" in ext.c_reason
    x = Tensor(np.arange(6, dtype=np.float32))
    for which in ("numpy", "c") if c_available() else ("numpy",):
        y = Tensor(np.zeros(6, np.float32))
        get_kernels(which).ktn.twice(x, y)
        np.testing.assert_array_equal(y.a, 2 * x.a)
    assert check_kernel(k)["grow"] == 2
    with pytest.raises(AssertionError, match="not served in C"):
        check_kernel(k, require_c=True)


def test_a_built_library_serves_the_kernel_in_c(library):
    if not c_available():
        pytest.skip("C kernels unavailable")
    k = twice_kernel("ktc_twice_f32")
    load("ktc", (k, library))
    assert extensions()["ktc"].native
    assert check_kernel(k, require_c=True)["examples"] == 1
    ck = get_kernels("c")
    assert ck.ktc.twice.__qualname__ == "CKernels.ktc.twice"
    with pytest.raises(KernelError, match=r"^ktc\.twice: x \(2,\), y \(3,\) must have the same"):
        ck.ktc.twice(Tensor(np.zeros(2, np.float32)), Tensor(np.zeros(3, np.float32)))


def test_an_absent_library_file_is_said_not_built(tmp_path):
    _, _ = load("ktabsent", (twice_kernel("ktabsent_twice_f32"), str(tmp_path / "nope.so")))
    assert "is not built" in extensions()["ktabsent"].c_reason


def test_a_library_lacking_a_declared_symbol_fails_the_plugin(library):
    k = twice_kernel("ktmiss_twice_f32")
    msg = fails("ktmiss", (k, library))
    assert "lacks ktmiss_twice_f32" in msg
    assert k.namespace is None       # a failed plugin leaves its declarations unclaimed


def test_a_library_that_does_not_load_fails_the_plugin(tmp_path):
    bad = tmp_path / "libbad.so"
    bad.write_bytes(b"not an ELF file")
    assert "does not load" in fails("ktbad", (twice_kernel("ktbad_twice_f32"), str(bad)))


@pytest.mark.parametrize("ns,items,match", [
    ("ktqr", lambda: [(twice_kernel("qr_twice_f32"), None)], "the qr_ prefix is core's"),
    ("relu", lambda: [(twice_kernel("relu_twice_f32"), None)], "no kernel-set attribute"),
    ("ktnot", lambda: [(lambda x: x, None)], "is not a kernel declaration"),
    ("ktcore", lambda: [(__import__("qorus_core.kernels.decl", fromlist=["get"]).get("relu"),
                         None)], "one of core's kernels"),
    ("ktpath", lambda: [(twice_kernel("ktpath_twice_f32"), 42)], "library 42 is not a path"),
    ("kttwo", lambda: [(twice_kernel("kttwo_a_f32"), None), (twice_kernel("kttwo_b_f32"), None)],
     "twice"),
])
def test_bad_registrations_fail_the_plugin_naming_the_fault(ns, items, match):
    assert match in fails(ns, *items())


def test_a_symbol_of_another_plugin_is_refused():
    load("ktown", (twice_kernel("ktown_twice_f32"), None))
    assert "belong to plugin 'ktown'" in fails("ktthief", (twice_kernel("ktown_twice_f32"), None))


def test_an_unknown_namespace_is_a_kernel_error_and_hasattr_false():
    k = get_kernels("numpy")
    assert not hasattr(k, "kt_never_registered")
    with pytest.raises(UnknownKernelError, match="no kernel or kernel namespace 'kt_never"):
        k.kt_never_registered   # noqa: B018 - the lookup is what is tested
    with pytest.raises(AttributeError):
        k._private_missing   # noqa: B018


def test_a_namespace_registered_again_replaces_the_kernels_on_every_set():
    load("ktre", (twice_kernel(None), None))
    k = get_kernels("numpy")
    first = k.ktre.twice
    y = Tensor(np.zeros(3, np.float32))

    @declare_kernel("test", "x y:out", check=same_size, examples=[dict(x=(3,), y=(3,))])
    def twice(self, x, y) -> None:
        """y = 3 x (a new version of the plugin)."""
        np.multiply(x.a, np.float32(3.0), out=y.w)

    load("ktre", (twice, None))
    assert k.ktre.twice != first
    k.ktre.twice(Tensor(np.ones(3, np.float32)), y)
    np.testing.assert_array_equal(y.a, 3.0)
