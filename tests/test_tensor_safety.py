"""Kernels never write into memory they may not write; a Tensor is immutable (issue 12).

Every kernel of the set (the public methods of ``NumpyKernels``: a kernel added without a
recipe below fails ``test_every_kernel_has_a_recipe``) is run on valid operands. The operands
it changes are its outputs; then each operand in turn is made read-only: an output must be
refused with a ``KernelError`` naming the kernel and the operand, before anything is written,
the same on both kernel sets; an input must still be accepted (a GGUF weight is a read-only
mmap) and give the same result. Read-only here is the NumPy flag on ordinary memory, so a
kernel that wrote anyway would show as changed bytes rather than a crash; the mmap and
``bytes`` tests then use memory the OS refuses to write.
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
from qorus_core.kernels.numpy_quant import QWeight
from qorus_core.tensor import ReadOnlyTensor, Tensor

KERNELS = sorted(n for n in dir(NumpyKernels)
                 if not n.startswith("_") and callable(getattr(NumpyKernels, n)))
NO_OUTPUT = {"sumsq", "count_correct"}      # they return a number and write nothing


# ----------------------------------------------------------------------------- recipes
class _Maker:
    """Deterministic operands for one recipe."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def f(self, *shape) -> Tensor:
        return Tensor(self.rng.standard_normal(shape).astype(np.float32))

    def pos(self, *shape) -> Tensor:
        return Tensor(self.rng.uniform(0.5, 2.0, shape).astype(np.float32))

    def unit(self, *shape) -> Tensor:
        return Tensor(self.rng.uniform(0.05, 0.95, shape).astype(np.float32))

    def ids(self, n: int, hi: int) -> Tensor:
        return Tensor(self.rng.integers(0, hi, n).astype(np.int32))

    def i32(self, *shape, value: int = -7) -> Tensor:
        return Tensor(np.full(shape, value, np.int32))

    def q(self, n: int, k: int, qtype: str = "q8_0") -> QWeight:
        w = QWeight.empty(qtype, n, k)
        NumpyKernels().quantize(self.f(n, k), w, qtype)
        return w


def _r(fn):
    return lambda seed: fn(_Maker(seed))


RECIPES = {
    "gemm": _r(lambda m: [m.f(3, 4), m.f(4, 5), m.f(3, 5), False, False, 1.0, 0.5]),
    "bias_add": _r(lambda m: [m.f(3, 5), m.f(5)]),
    "col_sum": _r(lambda m: [m.f(3, 5), m.f(5), 0.5]),
    "fill": _r(lambda m: [m.f(6), 1.5]),
    "copy": _r(lambda m: [m.f(6), m.f(6)]),
    "copy_into": _r(lambda m: [m.f(4), m.f(10), 3]),
    "add": _r(lambda m: [m.f(6), m.f(6), m.f(6)]),
    "mul": _r(lambda m: [m.f(6), m.f(6), m.f(6)]),
    "scale": _r(lambda m: [m.f(6), 0.5]),
    "axpy": _r(lambda m: [0.5, m.f(6), m.f(6)]),
    "sumsq": _r(lambda m: [m.f(6)]),
    **{k: _r(lambda m: [m.f(6), m.f(6)]) for k in ("relu", "sigmoid", "silu", "tanh")},
    "gelu": _r(lambda m: [m.f(6), m.f(6), True]),
    **{k: _r(lambda m: [m.f(6), m.f(6), m.f(6)])
       for k in ("relu_bwd", "sigmoid_bwd", "silu_bwd", "tanh_bwd")},
    "gelu_bwd": _r(lambda m: [m.f(6), m.f(6), m.f(6), False]),
    "softmax": _r(lambda m: [m.f(3, 5), m.f(3, 5)]),
    "softmax_bwd": _r(lambda m: [m.f(3, 5), m.f(3, 5), m.f(3, 5)]),
    "layernorm": _r(lambda m: [m.f(3, 5), m.f(5), m.f(5), m.f(3, 5), m.f(3), m.f(3), 1e-5]),
    "layernorm_bwd": _r(lambda m: [m.f(3, 5), m.f(5), m.f(3), m.pos(3), m.f(3, 5), m.f(3, 5),
                                   m.f(5), m.f(5)]),
    "rmsnorm": _r(lambda m: [m.f(3, 5), m.f(5), m.f(3, 5), m.f(3), 1e-5]),
    "rmsnorm_bwd": _r(lambda m: [m.f(3, 5), m.f(5), m.pos(3), m.f(3, 5), m.f(3, 5), m.f(5)]),
    "embedding": _r(lambda m: [m.ids(4, 7), m.f(7, 5), m.f(4, 5)]),
    "embedding_bwd": _r(lambda m: [m.ids(4, 7), m.f(4, 5), m.f(7, 5)]),
    "dropout_mask": _r(lambda m: [m.f(16), 0.3, 7]),
    "cross_entropy": _r(lambda m: [m.f(3, 5), m.ids(3, 5), m.f(3, 5), 0.1]),
    "mse": _r(lambda m: [m.f(6), m.f(6), m.f(6)]),
    "count_correct": _r(lambda m: [m.f(3, 5), m.ids(3, 5)]),
    "sgd_step": _r(lambda m: [m.f(6), m.f(6), m.f(6), 0.1, 0.9, 0.0, 0.01, False, False]),
    "adam_step": _r(lambda m: [m.f(6), m.f(6), m.f(6), m.pos(6), 0.01, 0.9, 0.999, 1e-8, 0.01,
                               3, True]),
    # elementwise primitives (decl/elementwise.py)
    **{k: _r(lambda m: [m.f(6), m.pos(6), m.f(6)]) for k in ("sub", "div", "maximum", "minimum")},
    **{k: _r(lambda m: [m.pos(6), m.f(6)]) for k in ("exp", "log", "sqrt", "abs", "neg")},
    **{k: _r(lambda m: [m.pos(6), m.f(6), m.f(6)])
       for k in ("exp_bwd", "log_bwd", "sqrt_bwd", "abs_bwd")},
    **{k: _r(lambda m: [m.f(6), m.pos(6), m.f(6), m.f(6), m.f(6)])
       for k in ("div_bwd", "maximum_bwd", "minimum_bwd")},
    "sub_bwd": _r(lambda m: [m.f(6), m.f(6), m.f(6)]),
    "neg_bwd": _r(lambda m: [m.f(6), m.f(6)]),
    "where": _r(lambda m: [m.f(6), m.f(6), m.f(6), m.f(6)]),
    "where_bwd": _r(lambda m: [m.f(6), m.f(6), m.f(6), m.f(6)]),
    # quantized weights: a QWeight (or a uint8 buffer) as quantize's output, an input elsewhere
    "quantize": _r(lambda m: [m.f(2, 32), QWeight.empty("q8_0", 2, 32), "q8_0"]),
    "dequantize": _r(lambda m: [m.q(2, 32), m.f(2, 32)]),
    "embedding_q": _r(lambda m: [m.ids(3, 4), m.q(4, 32), m.f(3, 32)]),
    "embedding_rows": _r(lambda m: [m.ids(3, 4), m.q(4, 32), m.f(3, 32)]),
    "matmul_q": _r(lambda m: [m.f(1, 32), m.q(4, 32), m.f(1, 4)]),
    "matmul_qf": _r(lambda m: [m.f(3, 32), m.q(4, 32), m.f(3, 4)]),
    "linear": _r(lambda m: [m.f(1, 32), m.q(4, 32, "q4_0"), m.f(1, 4)]),
    "linears": _r(lambda m: [m.f(1, 32), [m.q(4, 32), m.q(2, 32, "q4_1")], [m.f(1, 4), m.f(1, 2)]]),
    # fused
    "rope": _r(lambda m: [m.f(1, 3, 2, 4), m.f(1, 3, 2, 4), 2, 10000.0, False]),
    "rope_bwd": _r(lambda m: [m.f(1, 3, 2, 4), m.f(1, 3, 2, 4), 2, 10000.0, True]),
    "swiglu": _r(lambda m: [m.f(6), m.f(6), m.f(6)]),
    "swiglu_bwd": _r(lambda m: [m.f(6), m.f(6), m.f(6), m.f(6), m.f(6)]),
    "add_bcast": _r(lambda m: [m.f(3, 5), m.f(5), m.f(3, 5)]),
    "add_bcast_bwd": _r(lambda m: [m.f(3, 5), m.f(3, 5), m.f(5)]),
    "mul_bcast": _r(lambda m: [m.f(3, 5), m.f(5), m.f(3, 5)]),
    "mul_bcast_bwd": _r(lambda m: [m.f(3, 5), m.f(5), m.f(3, 5), m.f(3, 5), m.f(5)]),
    "softmax_masked": _r(lambda m: [m.f(2, 3, 4), m.f(2, 3, 4), 0.5, True]),
    "softmax_masked_bwd": _r(lambda m: [m.unit(2, 3, 4), m.f(2, 3, 4), m.f(2, 3, 4), 0.5, True]),
    "attention": _r(lambda m: [m.f(1, 3, 2, 4), m.f(1, 3, 1, 4), m.f(1, 3, 1, 4), m.f(1, 3, 2, 4),
                               m.f(1, 2, 3), None, 2, 1, True]),
    "attention_bwd": _r(lambda m: [m.f(1, 3, 2, 4), m.f(1, 3, 1, 4), m.f(1, 3, 1, 4),
                                   m.f(1, 3, 2, 4), m.pos(1, 2, 3), m.f(1, 3, 2, 4),
                                   m.f(1, 3, 2, 4), m.f(1, 3, 1, 4), m.f(1, 3, 1, 4), None, 2, 1,
                                   True]),
    "attention_decode": _r(lambda m: [m.f(1, 2, 4), m.f(1, 5, 1, 4), m.f(1, 5, 1, 4), m.f(1, 2, 4),
                                      3, None, 2, 1]),
    # recurrent
    "seq_transpose": _r(lambda m: [m.f(3, 2, 4), m.f(2, 3, 4)]),
    "rnn_cell": _r(lambda m: [m.f(2, 3), m.f(2, 3), m.f(3), m.f(2, 3)]),
    "rnn_cell_bwd": _r(lambda m: [m.unit(2, 3), m.f(2, 3), m.f(2, 3), m.f(2, 3)]),
    "lstm_cell": _r(lambda m: [m.f(2, 12), m.f(2, 12), m.f(12), m.f(2, 3), m.f(2, 12), m.f(2, 3),
                               m.f(2, 3)]),
    "lstm_cell_bwd": _r(lambda m: [m.unit(2, 12), m.f(2, 3), m.f(2, 3), m.f(2, 3), m.f(2, 3),
                                   m.f(2, 3), m.f(2, 12)]),
    "gru_cell": _r(lambda m: [m.f(2, 9), m.f(2, 9), m.f(9), m.f(2, 3), m.f(2, 9), m.f(2, 3),
                              m.f(2, 3)]),
    "gru_cell_bwd": _r(lambda m: [m.unit(2, 9), m.f(2, 3), m.f(2, 3), m.f(2, 3), m.f(2, 3),
                                  m.f(2, 9), m.f(2, 9)]),
    # convolution, pooling, batchnorm
    "conv2d": _r(lambda m: [m.f(2, 3, 5, 5), m.f(4, 3, 3, 3), m.f(4), m.f(2, 4, 3, 3), (1, 1),
                            (0, 0), (1, 1), 1]),
    "conv2d_bwd": _r(lambda m: [m.f(2, 3, 5, 5), m.f(4, 3, 3, 3), m.f(2, 4, 3, 3),
                                m.f(2, 3, 5, 5), m.f(4, 3, 3, 3), m.f(4), (1, 1), (0, 0),
                                (1, 1), 1]),
    "maxpool2d": _r(lambda m: [m.f(2, 3, 4, 4), m.f(2, 3, 2, 2), m.i32(2, 3, 2, 2), (2, 2),
                               (2, 2), (0, 0)]),
    "maxpool2d_bwd": _r(lambda m: [m.f(2, 3, 2, 2), m.i32(2, 3, 2, 2, value=5), m.f(2, 3, 4, 4)]),
    "avgpool2d": _r(lambda m: [m.f(2, 3, 4, 4), m.f(2, 3, 2, 2), (2, 2), (2, 2), (0, 0)]),
    "avgpool2d_bwd": _r(lambda m: [m.f(2, 3, 2, 2), m.f(2, 3, 4, 4), (2, 2), (2, 2), (0, 0)]),
    "batchnorm2d": _r(lambda m: [m.f(2, 3, 2, 2), m.f(3), m.f(3), m.f(2, 3, 2, 2), m.f(3),
                                 m.f(3), m.f(3), m.pos(3), 1e-5, 0.1, True]),
    "batchnorm2d_bwd": _r(lambda m: [m.f(2, 3, 2, 2), m.f(3), m.f(3), m.pos(3), m.f(2, 3, 2, 2),
                                     m.f(2, 3, 2, 2), m.f(3), m.f(3)]),
}
# other paths of a kernel: (case id, kernel, recipe)
VARIANTS = [
    ("linear_f32", "linear", _r(lambda m: [m.f(3, 5), m.f(4, 5), m.f(3, 4)])),
    ("linears_rows", "linears", _r(lambda m: [m.f(2, 32), [m.q(4, 32), m.f(2, 32)],
                                              [m.f(2, 4), m.f(2, 2)]])),
    ("embedding_rows_f32", "embedding_rows", _r(lambda m: [m.ids(3, 4), m.f(4, 5), m.f(3, 5)])),
    ("quantize_bytes", "quantize", _r(lambda m: [m.f(2, 32), np.zeros(68, np.uint8), "q8_0"])),
    ("quantize_f16", "quantize", _r(lambda m: [m.f(2, 32), QWeight.empty("f16", 2, 32), "f16"])),
    ("batchnorm2d_eval", "batchnorm2d", _r(lambda m: [m.f(2, 3, 2, 2), m.f(3), m.f(3),
                                                      m.f(2, 3, 2, 2), m.f(3), m.f(3), m.f(3),
                                                      m.pos(3), 1e-5, 0.1, False])),
    ("gemm_beta0_trans", "gemm", _r(lambda m: [m.f(4, 3), m.f(5, 4), m.f(3, 5), True, True, 2.0,
                                               0.0])),
    ("sgd_plain", "sgd_step", _r(lambda m: [m.f(6), m.f(6), m.f(6), 0.1, 0.0, 0.0, 0.0, False,
                                            True])),
    ("adam_l2", "adam_step", _r(lambda m: [m.f(6), m.f(6), m.f(6), m.pos(6), 0.01, 0.9, 0.999,
                                           1e-8, 0.01, 1, False])),
]
CASES = [(k, k, RECIPES[k]) for k in sorted(RECIPES)] + VARIANTS


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
def test_every_kernel_has_a_recipe():
    assert KERNELS and set(KERNELS) == set(RECIPES), \
        f"give these kernels a recipe: {sorted(set(KERNELS) - set(RECIPES))}"
    for name in KERNELS:       # the C set has the same kernels
        assert callable(getattr(get_kernels("numpy"), name))


@pytest.mark.parametrize("case, kernel, recipe", CASES, ids=[c[0] for c in CASES])
def test_read_only_output_refused(kernels, case, kernel, recipe):
    outputs, _ = _probe(get_kernels(kernels), kernel, recipe)
    if kernel in NO_OUTPUT:
        assert not outputs
    else:
        assert outputs, f"{case}: the recipe shows no output operand"


@pytest.mark.parametrize("case, kernel, recipe", CASES, ids=[c[0] for c in CASES])
def test_same_refusal_on_both_sets(ck, nk, case, kernel, recipe):
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
