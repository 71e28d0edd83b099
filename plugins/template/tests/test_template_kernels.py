"""The template's own kernels (``kernels.py``, C in ``csrc/``): the checks the kernel table
derives for every kernel, through ``qorus_core.testing.check_kernel``, and how the layer uses
them. With a C compiler present the plugin's ``pip install`` built its library, so the C set
must serve them in C (a missing build fails here instead of quietly running NumPy)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from qorus_core import Tensor, get_kernels, get_registry
from qorus_core.errors import KernelError
from qorus_core.testing import c_available, check_kernel
from qorus_layers_template.kernels import KERNELS, LIBRARY, prelu, prelu_bwd

NAMESPACE = "tpl"


@pytest.fixture(scope="module", autouse=True)
def registered():
    """The kernels are the registry's (as the layer finds them: loading the plugins)."""
    get_registry().entries("kernel")


@pytest.mark.parametrize("k", KERNELS, ids=lambda k: k.name)
def test_the_derived_kernel_checks_pass(k):
    counts = check_kernel(k, require_c=c_available() and shutil.which("cc") is not None)
    assert counts["grow"] and counts["read_only"]
    if c_available() and shutil.which("cc"):
        assert counts["examples"] == len(k.examples)


def test_the_c_library_is_the_plugins_own():
    from qorus_core.kernels.extensions import extensions

    ext = extensions()[NAMESPACE]
    assert ext.library == LIBRARY and set(ext.kernels) == {"prelu", "prelu_bwd"}
    if shutil.which("cc"):
        assert ext.native, ext.c_reason
        assert sorted(ext.c_functions) == ["_tpl_prelu_bwd_f32", "_tpl_prelu_f32"]


@pytest.mark.parametrize("which", ["numpy", "c"])
def test_prelu_kernels_compute_the_formula(which):
    if which == "c" and not c_available():
        pytest.skip("C kernels unavailable")
    k = get_kernels(which)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 7)).astype(np.float32)
    w = rng.uniform(-1, 1, 7).astype(np.float32)
    dy = rng.standard_normal((5, 7)).astype(np.float32)
    y, dx, dw = np.empty_like(x), np.empty_like(x), np.full(7, 0.5, np.float32)
    k.tpl.prelu(Tensor(x), Tensor(w), Tensor(y))
    np.testing.assert_allclose(y, np.where(x > 0, x, w * x), rtol=1e-6)
    k.tpl.prelu_bwd(Tensor(x), Tensor(w), Tensor(dy), Tensor(dx), Tensor(dw))
    np.testing.assert_allclose(dx, np.where(x > 0, dy, w * dy), rtol=1e-6)
    np.testing.assert_allclose(dw, 0.5 + (np.where(x > 0, 0, dy * x)).sum(0), rtol=1e-5)
    # in place: y over x, dx over dy
    xc = x.copy()
    k.tpl.prelu(Tensor(xc), Tensor(w), Tensor(xc))
    np.testing.assert_array_equal(xc, y)


def test_a_bad_call_names_the_kernel_and_shapes():
    k = get_kernels()
    x, w = Tensor(np.zeros((3, 4), np.float32)), Tensor(np.zeros(5, np.float32))
    with pytest.raises(KernelError, match=r"tpl\.prelu: x \(3, 4\), weight \(5,\)"):
        k.tpl.prelu(x, w, Tensor(np.zeros((3, 4), np.float32)))
    with pytest.raises(KernelError, match="no kernel or kernel namespace 'tpx'"):
        k.tpx.prelu   # noqa: B018 - the attribute lookup is what is tested
    assert not hasattr(k, "no_such_namespace")


def test_the_declarations_are_the_registered_ones():
    reg = get_registry()
    assert reg.get("kernel", "tpl.prelu") is prelu and reg.get("kernel", "tpl.prelu_bwd") is prelu_bwd
    assert prelu.doc.startswith("y = x where x > 0")
