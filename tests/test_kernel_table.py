"""Tests derived from the kernel table (qorus_core/kernels/decl): for every declaration, C
against NumPy on its examples, and the bad arguments both sets must refuse with the same
KernelError text; plus the table's own contracts (symbols bound, versions, replay ops, docs).

Operands are built from the declared roles and dtypes and the example's shapes; each example
runs on both sets from identical inputs, the C set with no NumPy fallback (a kernel that would
quietly run in NumPy fails), and the written operands and the return value are compared within
the declared ``tol`` (EXACT: bit for bit). Bad arguments, derived: every operand whose shape is
tied to the others grown by one in every dimension; every written operand read-only; plus the
declaration's own ``bad`` cases.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from qorus_core.errors import KernelError
from qorus_core.kernels import NumpyKernels, c_status
from qorus_core.kernels.decl import TABLE
from qorus_core.kernels.decl.spec import Kernel
from qorus_core.kernels.examples import build, written
from qorus_core.tensor import Tensor
from qorus_core.testing import (
    c_without_fallback,
    call_kernel,
    check_kernel_example,
    check_kernel_refusal,
    check_read_only_refusal,
    kernel_cases,
)

NK = NumpyKernels()


@pytest.fixture(scope="module")
def cnative():
    """The C set with no fallback: every example must run in C."""
    ck = c_without_fallback()
    if ck is None:
        pytest.skip(f"C kernel library unavailable: {c_status()[1]}")
    return ck


def _cases(kind: str):
    for k in TABLE:
        for i, case in enumerate(kernel_cases(k)[kind]):
            if kind == "bad":
                yield pytest.param(k, *case, id=f"{k.name}-{i}")
            elif kind == "examples":
                yield pytest.param(k, case, id=f"{k.name}-{i}")
            else:
                yield pytest.param(k, case, id=f"{k.name}-{case}")


def test_every_kernel_has_examples():
    for k in TABLE:
        assert k.examples, f"{k.name}: declare at least one example"


@pytest.mark.parametrize("k,ex", list(_cases("examples")))
def test_c_matches_numpy(cnative, k, ex):
    check_kernel_example(cnative, k, ex)


@pytest.mark.parametrize("k,name", list(_cases("grow")))
def test_a_misfit_operand_is_refused_alike(cnative, k, name):
    check_kernel_refusal(cnative, k, lambda: build(k, k.examples[0], grow=name))


@pytest.mark.parametrize("k,name", list(_cases("read_only")))
def test_a_read_only_output_is_refused_alike(cnative, k, name):
    """... before anything is written: no operand changes."""
    check_read_only_refusal(cnative, k, name)


@pytest.mark.parametrize("k,match,over", list(_cases("bad")))
def test_declared_bad_arguments_are_refused_alike(cnative, k, match, over):
    msg = check_kernel_refusal(cnative, k, lambda: build(k, {**k.examples[0], **over}))
    assert re.search(match, msg), f"{k.name}: {msg!r} does not match {match!r}"


# ----------------------------------------------------------------------------- the table itself
def test_the_table_is_every_kernel_of_both_sets():
    """Each public method of the kernel sets is a declared kernel (or one of the weight
    dispatchers), with the table's signature and docstring on both sets."""
    import inspect

    from qorus_core.kernels.c import CKernels

    public = {n for n in dir(NumpyKernels) if not n.startswith("_")}
    assert public - {k.name for k in TABLE} == {"name", "linear", "prompt_linear",
                                                 "embedding_rows", "scratch"}
    for k in TABLE:
        n, c = getattr(NumpyKernels, k.name), getattr(CKernels, k.name)
        assert n.__doc__ == c.__doc__ == k.doc and k.doc, k.name
        assert inspect.signature(n) == inspect.signature(c) == inspect.signature(k.numpy)
        assert c.__qualname__ == f"CKernels.{k.name}"


def test_every_declared_symbol_is_bound_with_the_derived_types(cnative):
    from qorus_core.kernels.decl import bind

    sigs = bind.signatures()
    assert {s.symbol for k in TABLE for s in k.symbols} == set(sigs)
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(cnative, "_" + name)
        assert fn.__name__ == name and fn.restype is restype and fn.argtypes == argtypes
    assert cnative.native == {k.name for k in TABLE if k.c}
    assert "qr_copy_f32" in sigs                 # shared by copy and copy_into: one signature


def test_replay_ops_are_the_kernels_the_table_marks_replayable(cnative):
    lib = cnative._lib
    ops = {lib.qr_replay_op_name(i).decode() for i in range(lib.qr_replay_op_count())}
    assert lib.qr_replay_op_name(lib.qr_replay_op_count()) is None
    declared = {s.symbol for k in TABLE if k.replay for s in k.symbols}
    assert ops == declared, (f"replay.c runs {sorted(ops - declared)} not marked replayable; "
                             f"marked but not in replay.c: {sorted(declared - ops)}")


def test_a_library_of_another_version_is_refused(cnative, monkeypatch):
    from qorus_core.kernels import c

    monkeypatch.setattr(c, "LIB_VERSION", "qorus-kernels 0.0")
    with pytest.raises(OSError, match=r"is qorus-kernels \d.*needs 'qorus-kernels 0.0': rebuild"):
        c.CKernels(path=cnative.library_path)


def test_a_library_lacking_a_declared_symbol_is_refused(cnative, monkeypatch):
    """No family binds optionally: a library without one declared symbol does not load (it
    would run that kernel in NumPy, and the parity tests would compare NumPy with NumPy)."""
    from qorus_core.kernels import c
    from qorus_core.kernels.decl.spec import DECLARED, kernel, same_size

    @kernel("elementwise", "x y:out", check=same_size, c="qr_no_such_kernel_f32(x, y, n)",
            register=False)
    def no_such_kernel(self, x, y):
        """y = x."""

    monkeypatch.setitem(DECLARED, "no_such_kernel", no_such_kernel)
    with pytest.raises(OSError, match="lacks qr_no_such_kernel_f32: rebuild"):
        c.CKernels(path=cnative.library_path)


def test_a_stale_library_makes_the_c_set_unavailable(monkeypatch, tmp_path):
    """QORUS_LIB naming a library the table does not match: QORUS_KERNELS=c fails loudly."""
    from qorus_core import kernels

    monkeypatch.setenv("QORUS_LIB", str(tmp_path / "libqorus.so"))
    kernels._c.cache_clear()
    try:
        ok, why = kernels.c_status()
        assert not ok and "not found" in why
        with pytest.raises(KernelError, match="C kernels requested but unavailable"):
            kernels.get_kernels("c")
    finally:
        monkeypatch.delenv("QORUS_LIB")
        kernels._c.cache_clear()


def test_declarations_are_checked_when_made():
    from qorus_core.kernels.decl.spec import kernel, parse_operands, same_size

    with pytest.raises(ValueError, match="unknown word"):
        parse_operands("x:outt")

    def bad(self, x, y, eps):
        """doc."""

    with pytest.raises(ValueError, match="needs a type"):
        kernel("norm", "x y:out", check=same_size, c="qr_f(x, y, n, eps)", register=False)(bad)
    with pytest.raises(ValueError, match="not parameters"):
        kernel("norm", "x z:out", check=same_size, register=False)(bad)
    with pytest.raises(ValueError, match="declared twice"):
        kernel("act", "x y:out", check=same_size)(TABLE[0].numpy)
    with pytest.raises(ValueError, match="no docstring"):
        kernel("act", "x y:out", check=same_size, register=False)(lambda self, x, y: None)
    with pytest.raises(ValueError, match="must be passed as a ptr"):
        kernel("norm", "x y:out", check=same_size, c="qr_f(x:i64, y, n)", register=False)(bad)
    from qorus_core.kernels.decl.spec import Fit

    with pytest.raises(ValueError, match=r"dims \['eps'\] are parameters"):
        kernel("norm", "x y:out", check=Fit({"eps": "x.cols"}, {"y": "{t}.size == x.size"}, "?"),
               register=False)(bad)
    with pytest.raises(ValueError, match="no operand 'z'"):
        kernel("norm", "x y:out", check=Fit({"n": "x.cols"}, {"z": "{t}.size == n"}, "?"),
               register=False)(bad)


@pytest.mark.parametrize("which", ["numpy", "c"])
def test_a_generated_call_allocates_nothing(which):
    """After one warm-up call, the generated methods (check, dispatch, C call or NumPy
    implementation) leave no array behind."""
    from qorus_core.kernels import get_kernels
    from qorus_core.testing import trace_allocations

    if which == "c" and not c_status()[0]:
        pytest.skip("C kernel library unavailable")
    k = get_kernels(which)
    t = lambda *s: Tensor(np.ones(s, np.float32))  # noqa: E731
    a, b, o = t(64), t(64), t(64)
    x, g, be, y, m, r = t(4, 16), t(16), t(16), t(4, 16), t(4), t(4)
    A, B, C = t(3, 5), t(5, 4), t(3, 4)

    def step():
        k.add(a, b, o)
        k.sub(a, b, o)
        k.maximum_bwd(a, b, o, a, b)
        k.gemm(A, B, C)
        k.layernorm(x, g, be, y, m, r, 1e-5)

    step()
    assert trace_allocations(step, repeat=20).array_bytes == 0


def test_rules_are_inlined_in_the_c_methods():
    """A Rule check costs no call on the fast path: the generated C method compares inline
    and calls the check only to raise."""
    from qorus_core.kernels.decl import gen

    src = gen.source("c", "add")
    assert "if not (a.size == out.size and b.size == out.size):\n            _check(" in src
    assert src.count("_check(") == 1 and "self._qr_add_f32(a.p, b.p, out.wp, n)" in src


def test_qorus_kernels_lists_the_table(capsys):
    import json

    from qorus_core.cli import main

    assert main(["kernels", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in info["kernels"] if "plugin" not in r}
    assert set(rows) == {k.name for k in TABLE}
    plugins = {r["name"]: r for r in info["kernels"] if "plugin" in r}
    assert {"tpl.prelu", "tpl.prelu_bwd"} <= set(plugins)        # the template's (installed)
    assert plugins["tpl.prelu"]["c_symbols"] == ["tpl_prelu_f32"]
    assert rows["gemm"]["family"] == "dense" and rows["gemm"]["simd_family"] == "gemm"
    assert rows["sub"]["doc"].startswith("out = a - b") and rows["sub"]["c_symbols"] == ["qr_sub_f32"]
    if info["c_available"]:
        assert "portable" in rows["relu"]["c_tiers"]
        assert rows["relu"]["c_tiers"][-1] == info["simd_path"] or info["simd_path"] == "avx512"
    else:
        assert all(not r["c_tiers"] for r in rows.values())
    assert main(["kernels", "--family", "quant"]) == 0
    out = capsys.readouterr().out
    assert "matmul_q " in out and "relu" not in out


# ----------------------------------------------------------------------------- argument kinds
def _wrong_kinds(k: Kernel, ex: dict):
    """(parameter, wrong value) pairs: an ndarray for each operand the example gives (of its
    shape, so a size check passes), a string for each float or int parameter, None for a
    float one, a fraction for an int one."""
    args = build(k, ex)
    for p, v in zip(k.params, args):
        if p in {o.name for o in k.operands}:
            if isinstance(v, Tensor):
                yield p, np.zeros(v.shape, np.float32)
            elif v is not None:
                yield p, np.zeros(3, np.float32)
        else:
            note = k.numpy.__annotations__.get(p)
            if note in ("float", "int", "float | None"):
                yield p, "bad"
            if note == "float":
                yield p, None
            if note == "int":
                yield p, 1.5


def _kind_cases():
    for k in TABLE:
        for p, v in _wrong_kinds(k, k.examples[0]):
            yield pytest.param(k, p, v, id=f"{k.name}-{p}-{type(v).__name__}")


@pytest.mark.parametrize("k,param,value", list(_kind_cases()))
def test_an_argument_of_the_wrong_kind_is_named_alike(ck, k, param, value):
    """Never a raw AttributeError / TypeError / ctypes error: a KernelError naming the
    kernel and the argument, the same on both sets (and None for a float is not NaN). The
    C set as it is: an ndarray's dtype is not "f32", so it may reach the fallback."""
    def make():
        args = build(k, k.examples[0])
        args[k.params.index(param)] = value
        return args

    msg = check_kernel_refusal(ck, k, make)
    assert re.search(rf"\b{param}\b", msg), f"{k.name}: {msg!r} does not name {param}"


def test_an_error_with_every_argument_of_its_kind_stands(monkeypatch):
    """The diagnosis names bad input only: a genuine error inside a kernel is not masked."""
    k = [k for k in TABLE if k.name == "relu"][0]
    args = build(k, k.examples[0])

    def broken(self, x, y):
        raise TypeError("a bug")

    from qorus_core.kernels.decl import gen

    monkeypatch.setattr(k, "numpy", broken)
    method = gen.numpy_method(k)
    with pytest.raises(TypeError, match="a bug"):
        method(NK, *args)


# ----------------------------------------------------------------------------- other shapes
def _reshaped_cases():
    for k in TABLE:
        for i, ex in enumerate(k.examples):
            for o in k.operands:
                v = ex.get(o.name)
                if o.tensor and v is not None and not callable(v) and \
                        len(v if _plain_shape(v) else v[0]) > 1:
                    yield pytest.param(k, ex, o.name, id=f"{k.name}-{i}-{o.name}")


def _plain_shape(v) -> bool:
    return all(isinstance(d, int) for d in v)


@pytest.mark.parametrize("k,ex,name", list(_reshaped_cases()))
def test_an_operand_flattened_is_served_or_refused_alike(cnative, k, ex, name):
    """An operand given flat (its size kept, e.g. same_size's contract): both sets compute
    what they compute with its declared shape, or both refuse it with one KernelError."""
    def make():
        args = build(k, ex)
        i = k.params.index(name)
        args[i] = Tensor(args[i].a.reshape(-1))
        return args

    outcomes = []
    for kset in (cnative, NK):
        args = make()
        try:
            r = call_kernel(kset, k, args)
        except KernelError as exc:
            outcomes.append(("refused", str(exc)))
            continue
        ref = build(k, ex)
        rr = call_kernel(kset, k, ref)
        for (n, got), (_, want) in zip(written(k, args), written(k, ref)):
            np.testing.assert_array_equal(got.reshape(-1), want.reshape(-1),
                                          err_msg=f"{k.name}: {n} with {name} flat")
        assert r == rr or (r != r and rr != rr)
        outcomes.append(("served", None))
    assert outcomes[0] == outcomes[1], f"{k.name}: C {outcomes[0]}, NumPy {outcomes[1]}"


def test_the_typed_interface_is_the_table():
    """kernel_set.py (what editors and type checkers see of the generated methods) is what
    decl/typed.py renders from the table now, and names each method of both sets with its
    signature and docstring."""
    import inspect

    from qorus_core.kernels.decl import typed
    from qorus_core.kernels.kernel_set import KernelSet

    with open(typed.PATH, encoding="utf-8") as fh:
        assert fh.read() == typed.render(), \
            "kernel_set.py is stale: run python -m qorus_core.kernels.decl.typed"
    public = {n for n in dir(NumpyKernels) if not n.startswith("_")} - {"name"}
    assert {n for n in dir(KernelSet) if not n.startswith("_")} == public
    for n in public:
        want, got = getattr(NumpyKernels, n), getattr(KernelSet, n)
        assert inspect.signature(got) == inspect.signature(want), n
        assert inspect.getdoc(got) == inspect.getdoc(want), n
