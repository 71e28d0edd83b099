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

import copy
import dataclasses

import numpy as np
import pytest

from qorus_core.errors import KernelError
from qorus_core.kernels import NumpyKernels, c_status
from qorus_core.kernels.decl import TABLE
from qorus_core.kernels.decl.spec import EXACT, Kernel
from qorus_core.kernels.numpy_quant import QWeight
from qorus_core.tensor import Tensor

NK = NumpyKernels()


def _is_shape(v) -> bool:
    return isinstance(v, tuple) and all(isinstance(d, int) for d in v)


def _value(o, v, rng, grow: bool = False):
    """The argument for operand ``o`` from its example value ``v`` (see the table's docs)."""
    if v is None:
        return None
    if o.seq:
        return [_value(dataclasses.replace(o, seq=False), e, rng) for e in v]
    if callable(v):                                               # rng -> a valid input
        return Tensor(np.ascontiguousarray(v(rng)))
    if isinstance(v, tuple) and v and isinstance(v[0], str):     # (qtype, n, k): a QWeight
        qtype, n, k = v
        if o.role != "in":
            return QWeight.empty(qtype, n, k)
        w = QWeight.empty(qtype, n, k)
        NK.quantize(Tensor(rng.standard_normal((n, k)).astype(np.float32)), w, qtype)
        return w
    if _is_shape(v):
        shape, lo, hi = v, None, None
    else:
        shape, lo, hi = v
    if grow:
        shape = tuple(d + 1 for d in shape)
    if o.dtype == "i32":
        return Tensor(rng.integers(lo, hi, shape).astype(np.int32))
    if lo is None:
        a = rng.standard_normal(shape)
    else:
        a = rng.uniform(lo, hi, shape)
    return Tensor(a.astype(np.float32))


def build(k: Kernel, ex: dict, seed: int = 0, grow: str | None = None,
          read_only: str | None = None) -> list:
    """Positional arguments of ``k`` for example ``ex`` (fresh arrays for each call)."""
    rng = np.random.default_rng(seed)
    names = {o.name for o in k.operands}
    defaults = dict(zip(reversed(k.params), reversed(k.numpy.__defaults__ or ())))
    args = []
    for p in k.params:
        if p in names:
            v = _value(k.operand(p), ex.get(p), rng, grow == p)
            if read_only == p:
                a = v.a.copy()
                a.flags.writeable = False
                v = Tensor(a)
            args.append(v)
        elif p in ex:
            args.append(ex[p])
        else:
            args.append(defaults[p])
    return args


def _arrays(k: Kernel, args: list) -> list[tuple[str, np.ndarray]]:
    """(name, array) of every written operand of a call."""
    out = []
    for p, v in zip(k.params, args):
        if p in {o.name for o in k.operands} and k.operand(p).written and v is not None:
            for i, t in enumerate(v if isinstance(v, list) else [v]):
                out.append((f"{p}[{i}]" if isinstance(v, list) else p, t.a))
    return out


class _NoFallback:
    def __getattr__(self, name):
        raise AssertionError(f"the C set ran {name} on its NumPy fallback")


@pytest.fixture(scope="module")
def cnative():
    """The C set with no fallback: every example must run in C."""
    ok, why = c_status()
    if not ok:
        pytest.skip(f"C kernel library unavailable: {why}")
    from qorus_core.kernels import get_kernels

    ck = copy.copy(get_kernels("c"))
    ck.fallback = _NoFallback()
    return ck


def _cases(kind: str):
    for k in TABLE:
        if kind == "examples":
            for i, ex in enumerate(k.examples):
                yield pytest.param(k, ex, id=f"{k.name}-{i}")
        elif kind == "grow":
            ex = k.examples[0] if k.examples else {}
            for o in k.operands:
                v = ex.get(o.name)
                if o.tensor and not o.free and v is not None and not callable(v):
                    yield pytest.param(k, o.name, id=f"{k.name}-{o.name}")
        elif kind == "read_only":
            ex = k.examples[0] if k.examples else {}
            for o in k.operands:
                if o.tensor and o.written and ex.get(o.name) is not None:
                    yield pytest.param(k, o.name, id=f"{k.name}-{o.name}")
        elif kind == "bad":
            for i, (match, over) in enumerate(k.bad):
                yield pytest.param(k, match, over, id=f"{k.name}-{i}")


def _run(kset, k: Kernel, args: list):
    with np.errstate(all="ignore"):             # NumPy warns on exp overflow; C does not
        return getattr(kset, k.name)(*args)


def test_every_kernel_has_examples():
    for k in TABLE:
        assert k.examples, f"{k.name}: declare at least one example"


@pytest.mark.parametrize("k,ex", list(_cases("examples")))
def test_c_matches_numpy(cnative, k, ex):
    args_c, args_n, before = build(k, ex), build(k, ex), build(k, ex)
    rc, rn = _run(cnative, k, args_c), _run(NK, k, args_n)
    rtol, atol = k.tol
    changed = rc is not None
    for (name, c), (_, n), (_, b) in zip(_arrays(k, args_c), _arrays(k, args_n),
                                         _arrays(k, before)):
        if k.tol == EXACT:
            np.testing.assert_array_equal(c, n, err_msg=f"{k.name}: {name}")
        else:
            np.testing.assert_allclose(c, n, rtol=rtol, atol=atol, err_msg=f"{k.name}: {name}")
        changed = changed or not np.array_equal(c, b, equal_nan=True)
    assert changed, f"{k.name}: the example wrote nothing and returned nothing"
    if isinstance(rn, float):
        assert rc == pytest.approx(rn, rel=max(rtol, 1e-6), abs=max(atol, 1e-7))
    else:
        assert rc == rn


def _same_refusal(cnative, k: Kernel, make) -> str:
    """Both sets raise KernelError with the same text for the arguments ``make()`` builds."""
    msgs = []
    for kset in (cnative, NK):
        with pytest.raises(KernelError) as err:
            _run(kset, k, make())
        msgs.append(str(err.value))
    assert msgs[0] == msgs[1], f"{k.name}: C says {msgs[0]!r}, NumPy {msgs[1]!r}"
    assert msgs[0].startswith(k.name + ":") or f" {k.name}:" in msgs[0], msgs[0]
    return msgs[0]


@pytest.mark.parametrize("k,name", list(_cases("grow")))
def test_a_misfit_operand_is_refused_alike(cnative, k, name):
    _same_refusal(cnative, k, lambda: build(k, k.examples[0], grow=name))


@pytest.mark.parametrize("k,name", list(_cases("read_only")))
def test_a_read_only_output_is_refused_alike(cnative, k, name):
    """... before anything is written: no operand changes."""
    calls = []

    def make():
        calls.append(build(k, k.examples[0], read_only=name))
        return calls[-1]

    msg = _same_refusal(cnative, k, make)
    assert "read-only" in msg and name in msg
    fresh = build(k, k.examples[0])
    for args in calls:
        for (n, got), (_, want) in zip(_arrays(k, args), _arrays(k, fresh)):
            np.testing.assert_array_equal(got, want, err_msg=f"{k.name}: {n} was written")


@pytest.mark.parametrize("k,match,over", list(_cases("bad")))
def test_declared_bad_arguments_are_refused_alike(cnative, k, match, over):
    import re

    msg = _same_refusal(cnative, k, lambda: build(k, {**k.examples[0], **over}))
    assert re.search(match, msg), f"{k.name}: {msg!r} does not match {match!r}"


# ----------------------------------------------------------------------------- the table itself
def test_the_table_is_every_kernel_of_both_sets():
    """Each public method of the kernel sets is a declared kernel (or one of the two weight
    dispatchers), with the table's signature and docstring on both sets."""
    import inspect

    from qorus_core.kernels.c import CKernels

    public = {n for n in dir(NumpyKernels) if not n.startswith("_")}
    assert public - {k.name for k in TABLE} == {"name", "linear", "embedding_rows"}
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
    assert "if not (a.size == out.size and b.size == out.size):\n        _check(" in src
    assert src.count("_check(") == 1 and "self._qr_add_f32(a.p, b.p, out.wp, n)" in src


def test_qorus_kernels_lists_the_table(capsys):
    import json

    from qorus_core.cli import main

    assert main(["kernels", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in info["kernels"]}
    assert set(rows) == {k.name for k in TABLE}
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
