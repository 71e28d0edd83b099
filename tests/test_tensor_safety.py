"""Kernels never write into memory they may not write; a Tensor is immutable (issue 12).

Every kernel of the set (the public methods of ``NumpyKernels``) is run on valid operands:
each example the kernel table declares for it (``qorus_core.kernels.examples.build``), plus the recipes
below for the weight dispatchers, which are not table kernels, and for paths no example
takes. The operands it changes are its outputs (each one an operand the table declares
written); then each operand in turn is made read-only: an output must be refused with a
``KernelError`` naming the kernel and the operand, before anything is written, the same on
both kernel sets; an input must still be accepted (a GGUF weight is a read-only mmap) and
give the same result. Read-only here is the NumPy flag on ordinary memory, so a kernel that
wrote anyway would show as changed bytes rather than a crash; the mmap and ``bytes`` tests
then use memory the OS refuses to write.
"""

from __future__ import annotations

import inspect
import pickle
import subprocess
import sys

import numpy as np
import pytest

from qorus_core.errors import KernelError
from qorus_core.kernels import NumpyKernels, get_kernels
from qorus_core.kernels.decl import TABLE
from qorus_core.kernels.examples import build
from qorus_core.kernels.numpy_quant import QWeight
from qorus_core.tensor import ReadOnlyTensor, Tensor

KERNELS = sorted(n for n in dir(NumpyKernels) if not n.startswith("_") and n != "scratch"
                 and callable(getattr(NumpyKernels, n)))
DECLARED = {k.name: k for k in TABLE}


# ----------------------------------------------------------------------------- cases
class _Maker:
    """Deterministic operands for one recipe."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def f(self, *shape) -> Tensor:
        return Tensor(self.rng.standard_normal(shape).astype(np.float32))

    def ids(self, n: int, hi: int) -> Tensor:
        return Tensor(self.rng.integers(0, hi, n).astype(np.int32))

    def q(self, n: int, k: int, qtype: str = "q8_0") -> QWeight:
        w = QWeight.empty(qtype, n, k)
        NumpyKernels().quantize(self.f(n, k), w, qtype)
        return w


def _r(fn):
    return lambda seed: fn(_Maker(seed))


def _example(k, ex):
    return lambda seed: build(k, ex, seed)


# (case id, kernel, recipe, the operands it may write: None for the declared written ones)
RECIPES = [
    ("linear", "linear", _r(lambda m: [m.f(1, 32), m.q(4, 32, "q4_0"), m.f(1, 4)]), {"y"}),
    ("linear_f32", "linear", _r(lambda m: [m.f(3, 5), m.f(4, 5), m.f(3, 4)]), {"y"}),
    ("linear_prompt", "linear", _r(lambda m: [m.f(3, 32), m.q(4, 32, "q4_0"), m.f(3, 4)]), {"y"}),
    ("prompt_linear", "prompt_linear", _r(lambda m: [m.f(1, 32), m.q(4, 32), m.f(1, 4)]), {"y"}),
    ("prompt_linear_qf", "prompt_linear",
     _r(lambda m: [m.f(3, 32), m.q(4, 32, "q5_0"), m.f(3, 4)]), {"y"}),
    ("embedding_rows", "embedding_rows", _r(lambda m: [m.ids(3, 4), m.q(4, 32), m.f(3, 32)]),
     {"y"}),
    ("embedding_rows_f32", "embedding_rows",
     _r(lambda m: [m.ids(3, 4), m.f(4, 5), m.f(3, 5)]), {"y"}),
    ("quantize_bytes", "quantize", _r(lambda m: [m.f(2, 32), np.zeros(68, np.uint8), "q8_0"]),
     None),
    ("gemm_beta0_trans", "gemm", _r(lambda m: [m.f(4, 3), m.f(5, 4), m.f(3, 5), True, True, 2.0,
                                               0.0]), None),
]
CASES = [(f"{k.name}-{i}", k.name, _example(k, ex), None)
         for k in TABLE for i, ex in enumerate(k.examples)] + RECIPES


def _may_write(kernel: str, args, declared: set | None) -> set:
    """The operand paths a case may change: the declared written operands of a table
    kernel (those given: not None), or the recipe's own set."""
    if declared is None:
        k = DECLARED[kernel]
        declared = {o.name for o in k.operands if o.written}
    return {p for p in _operands(args) if _label(kernel, p).split("[")[0] in declared}


# ----------------------------------------------------------------------------- machinery
def _operands(args) -> list[tuple]:
    """Paths of the memory operands: (i,) for args[i], (i, j) for args[i][j]."""
    paths = []
    for i, a in enumerate(args):
        if isinstance(a, (Tensor, QWeight, np.ndarray)):
            paths.append((i,))
        elif isinstance(a, list):
            paths += [(i, j) for j, e in enumerate(a) if isinstance(e, (Tensor, QWeight))]
    return paths


def _copy(a, read_only: bool):
    """A copy of one memory operand in fresh memory, read-only (the NumPy flag) if asked."""
    if isinstance(a, Tensor):
        arr = a.a.copy()
    elif isinstance(a, QWeight):
        arr = a.a.copy()
    else:
        arr = a.copy()
    if read_only:
        arr.flags.writeable = False
    if isinstance(a, Tensor):
        return Tensor(arr, a.name)
    if isinstance(a, QWeight):
        return QWeight(arr, a.qtype, a.n, a.k)
    return arr


def _fresh(args, ro: tuple | None = None) -> list:
    out = []
    for i, a in enumerate(args):
        if isinstance(a, (Tensor, QWeight, np.ndarray)):
            out.append(_copy(a, ro == (i,)))
        elif isinstance(a, list):
            out.append([_copy(e, ro == (i, j)) if isinstance(e, (Tensor, QWeight)) else e
                        for j, e in enumerate(a)])
        else:
            out.append(a)
    return out


def _at(args, path):
    return args[path[0]] if len(path) == 1 else args[path[0]][path[1]]


def _bytes(a) -> bytes:
    return (a.a if isinstance(a, (Tensor, QWeight)) else a).tobytes()


def _label(kernel: str, path: tuple) -> str:
    params = list(inspect.signature(getattr(NumpyKernels, kernel)).parameters)[1:]
    return params[path[0]] if len(path) == 1 else f"{params[path[0]]}[{path[1]}]"


def _run(k, kernel: str, args) -> None:
    with np.errstate(all="ignore"):
        getattr(k, kernel)(*args)


def _probe(k, kernel: str, recipe) -> tuple[set, dict]:
    """(the operands the kernel writes, {operand: error message or None}) on kernel set k,
    checking along the way what the module docstring promises."""
    base = recipe(0)
    paths = _operands(base)
    ref = _fresh(base)
    _run(k, kernel, ref)
    outputs = {p for p in paths if _bytes(_at(ref, p)) != _bytes(_at(base, p))}
    messages = {}
    for p in paths:
        args = _fresh(base, ro=p)
        before = [_bytes(_at(args, q)) for q in paths]
        if p in outputs:
            with pytest.raises(KernelError) as err:
                _run(k, kernel, args)
            msg = str(err.value)
            assert msg.startswith(kernel) and _label(kernel, p) in msg and "read-only" in msg, \
                (kernel, p, msg)
            after = [_bytes(_at(args, q)) for q in paths]
            assert after == before, f"{kernel}: refused read-only {p} after writing"
            messages[p] = msg
        else:      # a read-only input is fine, and gives the same result
            _run(k, kernel, args)
            after = [_bytes(_at(args, q)) for q in paths]
            assert after == [_bytes(_at(ref, q)) for q in paths], (kernel, p)
            messages[p] = None
    return outputs, messages


# ----------------------------------------------------------------------------- tests
def test_every_kernel_has_a_case():
    covered = {c[1] for c in CASES}
    assert KERNELS and set(KERNELS) == covered, \
        f"give these kernels an example or a recipe: {sorted(set(KERNELS) - covered)}"
    for name in KERNELS:       # the C set has the same kernels
        assert callable(getattr(get_kernels("numpy"), name))


@pytest.mark.parametrize("case, kernel, recipe, declared", CASES, ids=[c[0] for c in CASES])
def test_read_only_output_refused(kernels, case, kernel, recipe, declared):
    outputs, _ = _probe(get_kernels(kernels), kernel, recipe)
    may = _may_write(kernel, recipe(0), declared)
    assert outputs <= may, f"{case}: wrote {sorted(outputs - may)}, which it does not declare"
    if may:
        assert outputs, f"{case}: the case shows no output operand"
    else:                       # a number returned, nothing written (sumsq, count_correct)
        assert not outputs


@pytest.mark.parametrize("case, kernel, recipe, declared", CASES, ids=[c[0] for c in CASES])
def test_same_refusal_on_both_sets(ck, nk, case, kernel, recipe, declared):
    assert _probe(ck, kernel, recipe) == _probe(nk, kernel, recipe)


def test_tensor_is_immutable():
    t = Tensor(np.arange(6, dtype=np.float32).reshape(2, 3), "t")
    fields = {f: getattr(t, f) for f in Tensor.__slots__}
    for f in Tensor.__slots__:
        with pytest.raises(AttributeError, match="immutable"):
            setattr(t, f, 1 << 40)
        with pytest.raises(AttributeError, match="immutable"):
            delattr(t, f)
    with pytest.raises(AttributeError, match="immutable"):
        t.extra = 1
    assert {f: getattr(t, f) for f in Tensor.__slots__} == fields
    assert t.writeable and t.w is t.a and t.wp == t.p and type(t) is Tensor
    assert (t.rows, t.cols, t.size) == (2, 3, 6)
    c = pickle.loads(pickle.dumps(t))
    assert type(c) is Tensor and c.shape == t.shape and np.array_equal(c.a, t.a)


def test_tensor_rows_of_empty_columns():
    t = Tensor(np.zeros((3, 0), np.float32))
    assert (t.rows, t.cols, t.size) == (3, 0, 0)


def test_tensor_over_bytes(kernels):
    k = get_kernels(kernels)
    raw = np.arange(8, dtype=np.float32).tobytes()
    t = Tensor(np.frombuffer(raw, np.float32), "bytes")
    assert not t.writeable and isinstance(t, ReadOnlyTensor) and "read-only" in repr(t)
    out = Tensor(np.zeros(8, np.float32))
    k.add(t, t, out)                                  # an input: fine
    assert np.array_equal(out.a, 2 * np.arange(8, dtype=np.float32))
    for call in (lambda: k.fill(t, 0.0), lambda: k.scale(t, 2.0), lambda: k.copy(out, t),
                 lambda: k.add(out, out, t), lambda: k.relu(out, t)):
        with pytest.raises(KernelError, match="read-only"):
            call()
    assert raw == np.arange(8, dtype=np.float32).tobytes()
    with pytest.raises(KernelError, match=r"^tensor \(8,\) \('bytes'\) is read-only"):
        t.wp  # noqa: B018


_MAPPED = """
import mmap, sys
import numpy as np
from qorus_core.errors import KernelError
from qorus_core.kernels import get_kernels
from qorus_core.tensor import Tensor

k, path = get_kernels(sys.argv[1]), sys.argv[2]
data = np.fromfile(path, np.float32)
mm = np.memmap(path, np.float32, mode="r", shape=(8, 8))
with open(path, "rb") as fh:                       # as gguf.py maps a model file
    raw = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
for t in (Tensor(mm, "memmap"), Tensor(np.frombuffer(raw, np.float32).reshape(8, 8), "mmap")):
    assert not t.writeable
    y = Tensor(np.zeros((8, 8), np.float32))
    k.gemm(t, t, y)                                 # read as a weight: fine
    assert np.allclose(y.a, data.reshape(8, 8) @ data.reshape(8, 8), atol=1e-6)
    calls = {"fill": lambda: k.fill(t, 0.0),
             "gemm": lambda: k.gemm(y, y, t),
             "softmax": lambda: k.softmax(y, t),
             "rmsnorm": lambda: k.rmsnorm(y, Tensor(np.ones(8, np.float32)), t,
                                          Tensor(np.zeros(8, np.float32)), 1e-5),
             "sgd_step": lambda: k.sgd_step(t, y, y, 0.1, 0.0, 0.0, 0.0, False, True)}
    for name, call in calls.items():
        try:
            call()
        except KernelError as exc:
            assert str(exc).startswith(name + ": ") and "read-only" in str(exc), exc
        else:
            raise AssertionError(name + " wrote into a read-only mapping")
print("ok")
"""


def test_tensor_over_read_only_mmap(kernels, tmp_path):
    """Read-only mappings (a GGUF F32 weight is used in place): the OS faults on a write, so
    an unchecked kernel kills the interpreter; the calls run in a child for that reason."""
    path = tmp_path / "w.bin"
    data = np.linspace(-1, 1, 64, dtype=np.float32)
    path.write_bytes(data.tobytes())
    r = subprocess.run([sys.executable, "-c", _MAPPED, kernels, str(path)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", \
        f"exit {r.returncode} (negative: killed by that signal)\n{r.stdout}{r.stderr}"
    assert path.read_bytes() == data.tobytes()


@pytest.mark.parametrize("ta, tb", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("alpha, beta", [(1.0, 0.0), (2.0, 0.0), (1.0, 1.0), (-1.5, 0.5)])
def test_gemm_k0(kernels, ta, tb, alpha, beta):
    """K = 0: op(A) @ op(B) is a matrix of zeros, so C = alpha * 0 + beta * C (BLAS: with
    beta = 0, C is not read: a NaN there becomes 0)."""
    k = get_kernels(kernels)
    M, N = 3, 4
    a = np.zeros((0, M) if ta else (M, 0), np.float32)
    b = np.zeros((N, 0) if tb else (0, N), np.float32)
    c0 = np.random.default_rng(1).standard_normal((M, N)).astype(np.float32)
    c0[0, 0] = np.nan
    c = Tensor(c0.copy())
    k.gemm(Tensor(a), Tensor(b), c, ta, tb, alpha, beta)
    want = np.float32(alpha) * ((a.T if ta else a) @ (b.T if tb else b))
    if beta:
        want = want + np.float32(beta) * c0
    np.testing.assert_array_equal(c.a, want)


def test_gemm_k0_shapes_still_checked(kernels):
    k = get_kernels(kernels)
    c = Tensor(np.ones((3, 4), np.float32))
    for a, b in (((3, 0), (1, 4)), ((3, 0), (0, 5)), ((2, 0), (0, 4))):
        with pytest.raises(KernelError, match="gemm"):
            k.gemm(Tensor(np.zeros(a, np.float32)), Tensor(np.zeros(b, np.float32)), c)
    assert np.array_equal(c.a, np.ones((3, 4), np.float32))
    empty = Tensor(np.zeros((0, 4), np.float32))             # M = 0, K = 0: nothing to do
    k.gemm(Tensor(np.zeros((0, 0), np.float32)), Tensor(np.zeros((0, 4), np.float32)), empty)
