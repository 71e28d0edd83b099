"""The C kernel set: ctypes binding to ``libqorus.so`` (built from ``csrc/`` by setup.py).

The library is loaded from ``QORUS_LIB`` when set, else from ``_lib/libqorus.so`` next to this
file. Argument types are declared once at load; tensors are passed by their cached address
(``Tensor.p``), so a call creates no array and no ctypes object. Every argument is checked here
before the C call (dtype, sizes, shapes, scalar ranges): a bad call raises ``KernelError``
naming the kernel and the shapes, never crashes the interpreter.

Methods and signatures are those of ``NumpyKernels`` (the reference, with the docstrings); this
class defines every one of them (a test holds it), so no kernel runs in NumPy unseen. A call
the C library does not serve (a non-float32 operand, a GEMM whose output overlaps an input) is
passed to the NumPy fallback explicitly, in the method.
"""

from __future__ import annotations

import ctypes
import math
import os
from ctypes import c_double, c_float, c_int, c_int64, c_uint32, c_void_p

from ..errors import KernelError
from ..tensor import Tensor
from .c_conv import CONV_SIGNATURES, CConvKernels  # conv2d, pooling, batchnorm2d: c_conv.py
from .c_fused import FUSED_SIGNATURES, CFusedKernels  # fused kernels (rope, swiglu, attention, ...)
from .c_rnn import RNN_SIGNATURES, CRnnKernels  # recurrent cell kernels: c_rnn.py
from .numpy import NumpyKernels, check_copy_into
from .numpy_quant import QuantNumpyMixin, QWeight, WeightDispatch, check_embedding_q  # quantized weights

__all__ = ["CKernels", "default_library_path"]

_P, _I64, _I, _F, _D = c_void_p, c_int64, c_int, c_float, c_double

# name -> (restype, argtypes): the whole C API used here, declared once.
_SIGNATURES = {
    "qr_get_threads": (_I, []),
    "qr_set_threads": (_I, [_I]),
    "qr_cpu_features": (ctypes.c_uint, []),
    "qr_simd_path": (_I, []),
    "qr_set_simd_path": (_I, [_I]),
    "qr_simd_compiled": (_I, []),
    "qr_version": (ctypes.c_char_p, []),
    "qr_gemm_f32": (_I, [_I, _I, _I64, _I64, _I64, _F, _P, _P, _F, _P]),
    "qr_bias_add_f32": (_I, [_P, _P, _I64, _I64]),
    "qr_col_sum_f32": (_I, [_P, _P, _I64, _I64, _F]),
    "qr_fill_f32": (_I, [_P, _I64, _F]),
    "qr_copy_f32": (_I, [_P, _P, _I64]),
    "qr_add_f32": (_I, [_P, _P, _P, _I64]),
    "qr_mul_f32": (_I, [_P, _P, _P, _I64]),
    "qr_scale_f32": (_I, [_P, _I64, _F]),
    "qr_axpy_f32": (_I, [_F, _P, _P, _I64]),
    "qr_sumsq_f32": (_D, [_P, _I64]),
    "qr_relu_f32": (_I, [_P, _P, _I64]),
    "qr_relu_bwd_f32": (_I, [_P, _P, _P, _I64]),
    "qr_gelu_f32": (_I, [_P, _P, _I64, _I]),
    "qr_gelu_bwd_f32": (_I, [_P, _P, _P, _I64, _I]),
    "qr_sigmoid_f32": (_I, [_P, _P, _I64]),
    "qr_sigmoid_bwd_f32": (_I, [_P, _P, _P, _I64]),
    "qr_silu_f32": (_I, [_P, _P, _I64]),
    "qr_silu_bwd_f32": (_I, [_P, _P, _P, _I64]),
    "qr_tanh_f32": (_I, [_P, _P, _I64]),
    "qr_tanh_bwd_f32": (_I, [_P, _P, _P, _I64]),
    "qr_softmax_f32": (_I, [_P, _P, _I64, _I64]),
    "qr_softmax_bwd_f32": (_I, [_P, _P, _P, _I64, _I64]),
    "qr_layernorm_f32": (_I, [_P, _P, _P, _P, _P, _P, _I64, _I64, _F]),
    "qr_layernorm_bwd_f32": (_I, [_P, _P, _P, _P, _P, _P, _P, _P, _I64, _I64]),
    "qr_rmsnorm_f32": (_I, [_P, _P, _P, _P, _I64, _I64, _F]),
    "qr_rmsnorm_bwd_f32": (_I, [_P, _P, _P, _P, _P, _P, _I64, _I64]),
    "qr_embedding_f32": (_I, [_P, _P, _P, _I64, _I64, _I64]),
    "qr_embedding_bwd_f32": (_I, [_P, _P, _P, _I64, _I64, _I64]),
    "qr_cross_entropy_f32": (_D, [_P, _P, _P, _I64, _I64, _D]),
    "qr_mse_f32": (_D, [_P, _P, _P, _I64]),
    "qr_count_correct_f32": (_I64, [_P, _P, _I64, _I64]),
    "qr_dropout_mask_f32": (_I, [_P, _I64, c_uint32, _F, c_uint32]),
    "qr_sgd_step_f32": (_I, [_P, _P, _P, _I64, _D, _D, _D, _D, _I, _I]),
    "qr_adam_step_f32": (_I, [_P, _P, _P, _P, _I64, _D, _D, _D, _D, _D, _I64, _I]),
}

_CPU_BITS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f")
_ERRORS = {-1: "invalid argument", -2: "target class out of range", -3: "out of memory"}


def default_library_path() -> str:
    """Where the library is looked for: ``QORUS_LIB`` or ``_lib/libqorus.so`` beside this file."""
    env = os.environ.get("QORUS_LIB")
    if env:
        return os.path.abspath(env)
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "_lib", "libqorus.so")


def _load(path: str) -> ctypes.CDLL:
    if not os.path.isfile(path):
        raise OSError(f"C kernel library not found at {path} (build it with "
                      "`pip install -e .` or `python setup.py build_ext --inplace`)")
    lib = ctypes.CDLL(path)
    fns = _bind(lib, _SIGNATURES)
    for name in _SIGNATURES:
        if name not in fns:
            raise OSError(f"{path} is missing {name}: rebuild the C kernels")
    return lib


def _bind(lib: ctypes.CDLL, signatures: dict) -> dict:
    """{C name: function} of the ``signatures`` that ``lib`` exports, typed once. The families
    bound this way (fused, rnn, conv, quant, peak) may be missing from an older library: their
    kernels then run on the NumPy fallback."""
    fns = {}
    for cname, (restype, argtypes) in signatures.items():
        fn = getattr(lib, cname, None)
        if fn is not None:
            fn.restype, fn.argtypes = restype, argtypes
            fns[cname] = fn
    return fns


def _by_kernel(fns: dict) -> dict:
    """``qr_NAME_f32`` -> ``NAME``: the keys the mixins look their functions up by."""
    return {cname[3:-4]: fn for cname, fn in fns.items()}


def _fail(kernel: str, what: str) -> KernelError:
    return KernelError(f"{kernel}: {what}")


def _sizes(kernel: str, what: str, **tensors: Tensor) -> KernelError:
    """KernelError naming the kernel and every operand's shape."""
    shapes = ", ".join(f"{k} {t.shape}" for k, t in tensors.items())
    return KernelError(f"{kernel}: {shapes} {what}")


def _check(kernel: str, rc: int) -> None:
    raise _fail(kernel, f"C kernel returned {rc} ({_ERRORS.get(rc, 'error')})")


# ===================================================================== quantized weights
# quantize / dequantize / matmul_q (csrc/quant.c); NumPy twins and the QWeight type in
# numpy_quant.py. Bound at load, all or none: a library built before quant.c still serves the
# rest (these kernels then run on the NumPy fallback).
_QTYPES = ("q8_0", "q4_0", "q4_1", "f16")
_QUANT_SIGNATURES = {
    "qr_quant_row_bytes": (_I64, [_I, _I64]),
    **{f"qr_{op}_{t}": (_I, [_P, _P, _I64, _I64]) for op in ("quantize", "dequantize")
       for t in _QTYPES},
    **{f"qr_matmul_{t}_f32": (_I, [_P, _P, _P, _I64, _I64, _I64]) for t in _QTYPES},
    **{f"qr_matmul_qf_{t}_f32": (_I, [_P, _P, _P, _I64, _I64, _I64]) for t in _QTYPES},
    **{f"qr_get_rows_{t}": (_I, [_P, _P, _P, _I64, _I64, _I64]) for t in _QTYPES},
    "qr_matmul_q3_f32": (_I, [_P, _I64] + [_I, _P, _P, _I64] * 3),
}
_NO_WEIGHT = (0, None, None, 0)   # an unused slot of qr_matmul_q3_f32


class _QuantCMixin(WeightDispatch):
    """The C quantized-weight kernels; same signatures as ``QuantNumpyMixin``. Needs
    ``_bind_quant`` called at load (``CKernels.__init__``)."""

    def _bind_quant(self, lib: ctypes.CDLL) -> frozenset:
        """Bind the quant functions (per qtype, so a call formats no name); returns the kernels
        served natively."""
        fns = _bind(lib, _QUANT_SIGNATURES)
        if len(fns) < len(_QUANT_SIGNATURES):
            self._qfn = self._quantize_fn = self._dequantize_fn = self._matmul_fn = {}
            self._matmul_qf_fn = self._get_rows_fn = {}
            self._matmul_q3 = None
            return frozenset()
        self._qfn = fns
        self._quantize_fn = {t: fns[f"qr_quantize_{t}"] for t in _QTYPES}
        self._dequantize_fn = {t: fns[f"qr_dequantize_{t}"] for t in _QTYPES}
        self._matmul_fn = {t: fns[f"qr_matmul_{t}_f32"] for t in _QTYPES}
        self._matmul_qf_fn = {t: fns[f"qr_matmul_qf_{t}_f32"] for t in _QTYPES}
        self._get_rows_fn = {t: fns[f"qr_get_rows_{t}"] for t in _QTYPES}
        self._matmul_q3 = fns["qr_matmul_q3_f32"]
        return frozenset(("quantize", "dequantize", "matmul_q", "matmul_qf", "embedding_q",
                          "linears"))

    def _quant(self, name: str):
        """The bound C function named ``name`` (tests call the C entry points directly), or
        None when the library predates quant.c."""
        return self._qfn.get(name)

    def quantize(self, x: Tensor, out, qtype) -> None:
        name, rows, k, buf = QuantNumpyMixin._q_args(x, out, qtype)
        fn = self._quantize_fn.get(name)
        if fn is None:
            return self.fallback.quantize(x, out, qtype)
        if rows * k:
            rc = fn(x.p, buf.ctypes.data, rows, k)
            if rc:
                _check("quantize", rc)

    def dequantize(self, w: QWeight, y: Tensor) -> None:
        QuantNumpyMixin._q_check_out(w, y, "dequantize")
        fn = self._dequantize_fn.get(w.qtype)
        if fn is None:
            return self.fallback.dequantize(w, y)
        if w.n * w.k:
            rc = fn(w.p, y.p, w.n, w.k)
            if rc:
                _check("dequantize", rc)

    def embedding_q(self, ids: Tensor, w: QWeight, y: Tensor) -> None:
        check_embedding_q(ids, w, y)
        fn = self._get_rows_fn.get(w.qtype)
        if fn is None:
            return self.fallback.embedding_q(ids, w, y)
        rc = fn(w.p, ids.p, y.p, ids.size, w.n, w.k)
        if rc:
            _check("embedding_q", rc)

    def _product(self, kernel: str, fns: dict, x: Tensor, w: QWeight, y: Tensor) -> None:
        """matmul_q / matmul_qf: the function of ``w``'s qtype in ``fns``, else the fallback."""
        m, n, k = QuantNumpyMixin._q_check_mm(x, w, y)
        fn = fns.get(w.qtype)
        if fn is None:
            return getattr(self.fallback, kernel)(x, w, y)
        rc = fn(x.p, w.p, y.p, m, n, k)
        if rc:
            _check(kernel, rc)

    def matmul_q(self, x: Tensor, w: QWeight, y: Tensor) -> None:
        self._product("matmul_q", self._matmul_fn, x, w, y)

    def matmul_qf(self, x: Tensor, w: QWeight, y: Tensor) -> None:
        self._product("matmul_qf", self._matmul_qf_fn, x, w, y)

    def linears(self, x: Tensor, ws, ys) -> None:
        fn = self._matmul_q3
        if fn is None or x.rows != 1 or not 0 < len(ws) <= 3 or len(ws) != len(ys):
            return WeightDispatch.linears(self, x, ws, ys)
        args = []
        for w, y in zip(ws, ys):
            if not isinstance(w, QWeight):           # a float32 weight: linear each
                return WeightDispatch.linears(self, x, ws, ys)
            QuantNumpyMixin._q_check_mm(x, w, y)
            args += (w.code, w.p, y.p, w.n)
        rc = fn(x.p, x.cols, *args, *_NO_WEIGHT * (3 - len(ws)))
        if rc:
            _check("linears", rc)


for _name in ("quantize", "dequantize", "matmul_q", "matmul_qf", "embedding_q", "linears"):
    getattr(_QuantCMixin, _name).__doc__ = getattr(QuantNumpyMixin, _name).__doc__
# ===================================================================== end quantized weights


class CKernels(_QuantCMixin, CFusedKernels, CRnnKernels, CConvKernels):
    """The C kernel set; same methods and signatures as ``NumpyKernels``."""

    name = "c"

    def __init__(self, fallback: NumpyKernels | None = None, path: str | None = None) -> None:
        self.fallback = fallback if fallback is not None else NumpyKernels()
        self.library_path = os.path.abspath(path) if path else default_library_path()
        lib = self._lib = _load(self.library_path)
        for n in _SIGNATURES:   # bound C functions, looked up once
            setattr(self, "_" + n[3:], getattr(lib, n))
        self._fused = _by_kernel(_bind(lib, FUSED_SIGNATURES))   # c_fused.py
        self._rnn = _by_kernel(_bind(lib, RNN_SIGNATURES))       # c_rnn.py
        self._conv = _by_kernel(_bind(lib, CONV_SIGNATURES))     # c_conv.py
        self._fma_peak_fn = _bind(lib, {"qr_fma_peak_f32": (_D, [_I64])}).get("qr_fma_peak_f32")
        self._replay = _bind(lib, {"qr_replay_op": (_I, [ctypes.c_char_p]),   # replay.py
                                   "qr_replay_run": (_I, [_P, _I64, _I64])})
        self.native = frozenset(n[3:-4] for n in _SIGNATURES if n.endswith("_f32")).union(
            self._fused, self._rnn, self._conv, self._bind_quant(lib))

    def __repr__(self) -> str:
        return f"CKernels({self.library_path!r}, threads={self.threads}, simd={self.simd_path})"

    # ----------------------------------------------------------------- runtime
    @property
    def threads(self) -> int:
        """Threads the C kernels use (``QORUS_NUM_THREADS``, default: usable cores)."""
        return self._get_threads()

    def set_threads(self, n: int) -> int:
        """Set the thread count (n <= 0: the default); returns the count now in effect."""
        return self._set_threads(int(n))

    def cpu_features(self) -> dict[str, bool]:
        """CPU features detected at run time by the library."""
        bits = self._cpu_features()
        return {name: bool(bits >> i & 1) for i, name in enumerate(_CPU_BITS)}

    @property
    def simd_path(self) -> str:
        """The GEMM path in use: "avx2" (AVX2 + FMA present and compiled in) or "portable"."""
        return "avx2" if self._simd_path() == 1 else "portable"

    def set_simd_path(self, path: str) -> str:
        """Force "portable", or "auto" (AVX2 where available); returns the path in effect."""
        if path not in ("portable", "auto", "avx2"):
            raise KernelError(f"simd path {path!r}: expected 'portable', 'auto' or 'avx2'")
        self._set_simd_path(0 if path == "portable" else 1)
        return self.simd_path

    @property
    def version(self) -> str:
        return self._version().decode()

    # ----------------------------------------------------------------- FMA peak probe
    def fma_peak(self, iters: int) -> float | None:
        """Run the FMA peak probe (csrc/peak.c) on every pool thread: the flops it did (time
        the call for GFLOP/s), or None when the library predates peak.c."""
        fn = self._fma_peak_fn
        return None if fn is None else float(fn(max(0, int(iters))))

    # ----------------------------------------------------------------- dense algebra
    def gemm(self, a: Tensor, b: Tensor, c: Tensor, trans_a: bool = False, trans_b: bool = False,
             alpha: float = 1.0, beta: float = 0.0) -> None:
        cp, ce = c.p, c.p + 4 * c.size          # C must not overlap A or B
        if a.dtype != "f32" or b.dtype != "f32" or c.dtype != "f32" or \
                (a.p < ce and cp < a.p + 4 * a.size) or (b.p < ce and cp < b.p + 4 * b.size):
            return self.fallback.gemm(a, b, c, trans_a, trans_b, alpha, beta)
        if trans_a:
            k, m = a.rows, a.cols
        else:
            m, k = a.rows, a.cols
        if trans_b:
            n, kb = b.rows, b.cols
        else:
            kb, n = b.rows, b.cols
        if kb != k or c.rows != m or c.cols != n:
            raise _fail("gemm", f"op(A) is {m}x{k} (A {a.shape}, trans_a={bool(trans_a)}), "
                                f"op(B) is {kb}x{n} (B {b.shape}, trans_b={bool(trans_b)}), "
                                f"C is {c.rows}x{c.cols} {c.shape}: expected C {m}x{n} and "
                                "matching inner dimensions")
        rc = self._gemm_f32(1 if trans_a else 0, 1 if trans_b else 0, m, n, k, alpha, a.p, b.p,
                            beta, cp)
        if rc:
            _check("gemm", rc)

    def bias_add(self, y: Tensor, bias: Tensor) -> None:
        if y.dtype != "f32" or bias.dtype != "f32":
            return self.fallback.bias_add(y, bias)
        if bias.size != y.cols:
            raise _sizes("bias_add", f"do not match: bias needs {y.cols} values", y=y, bias=bias)
        self._bias_add_f32(y.p, bias.p, y.rows, y.cols)

    def col_sum(self, x: Tensor, out: Tensor, beta: float = 0.0) -> None:
        if x.dtype != "f32" or out.dtype != "f32":
            return self.fallback.col_sum(x, out, beta)
        if out.size != x.cols:
            raise _sizes("col_sum", f"do not match: out needs {x.cols} values", x=x, out=out)
        self._col_sum_f32(x.p, out.p, x.rows, x.cols, beta)

    # ----------------------------------------------------------------- elementwise
    def fill(self, x: Tensor, value: float) -> None:
        if x.dtype != "f32":
            return self.fallback.fill(x, value)
        self._fill_f32(x.p, x.size, value)

    def copy(self, src: Tensor, dst: Tensor) -> None:
        if src.dtype != dst.dtype or (src.p != dst.p and src.p < dst.p + 4 * dst.size
                                      and dst.p < src.p + 4 * src.size):   # partial overlap
            return self.fallback.copy(src, dst)
        if src.size != dst.size:
            raise _sizes("copy", "must have the same size", src=src, dst=dst)
        self._copy_f32(src.p, dst.p, dst.size)

    def copy_into(self, src: Tensor, dst: Tensor, offset: int) -> None:
        n = check_copy_into(src, dst, offset)
        if n:
            self._copy_f32(src.p, dst.p + 4 * offset, n)

    def add(self, a: Tensor, b: Tensor, out: Tensor) -> None:
        if a.dtype != "f32" or b.dtype != "f32" or out.dtype != "f32":
            return self.fallback.add(a, b, out)
        if a.size != out.size or b.size != out.size:
            raise _sizes("add", "must have the same size", a=a, b=b, out=out)
        self._add_f32(a.p, b.p, out.p, out.size)

    def mul(self, a: Tensor, b: Tensor, out: Tensor) -> None:
        if a.dtype != "f32" or b.dtype != "f32" or out.dtype != "f32":
            return self.fallback.mul(a, b, out)
        if a.size != out.size or b.size != out.size:
            raise _sizes("mul", "must have the same size", a=a, b=b, out=out)
        self._mul_f32(a.p, b.p, out.p, out.size)

    def scale(self, x: Tensor, alpha: float) -> None:
        if x.dtype != "f32":
            return self.fallback.scale(x, alpha)
        self._scale_f32(x.p, x.size, alpha)

    def axpy(self, alpha: float, x: Tensor, y: Tensor) -> None:
        if x.dtype != "f32" or y.dtype != "f32":
            return self.fallback.axpy(alpha, x, y)
        if x.size != y.size:
            raise _sizes("axpy", "must have the same size", x=x, y=y)
        self._axpy_f32(alpha, x.p, y.p, y.size)

    def sumsq(self, x: Tensor) -> float:
        if x.dtype != "f32":
            return self.fallback.sumsq(x)
        s = self._sumsq_f32(x.p, x.size)
        return _check("sumsq", -3) if s < 0.0 else s   # NaN in x: NaN out

    # ----------------------------------------------------------------- activations
    def relu(self, x: Tensor, y: Tensor) -> None:
        if x.dtype != "f32" or y.dtype != "f32":
            return self.fallback.relu(x, y)
        if x.size != y.size:
            raise _sizes("relu", "must have the same size", x=x, y=y)
        self._relu_f32(x.p, y.p, y.size)

    def relu_bwd(self, x: Tensor, dy: Tensor, dx: Tensor) -> None:
        if x.dtype != "f32" or dy.dtype != "f32" or dx.dtype != "f32":
            return self.fallback.relu_bwd(x, dy, dx)
        if x.size != dx.size or dy.size != dx.size:
            raise _sizes("relu_bwd", "must have the same size", x=x, dy=dy, dx=dx)
        self._relu_bwd_f32(x.p, dy.p, dx.p, dx.size)

    def gelu(self, x: Tensor, y: Tensor, approximate: bool = False) -> None:
        if x.dtype != "f32" or y.dtype != "f32":
            return self.fallback.gelu(x, y, approximate)
        if x.size != y.size:
            raise _sizes("gelu", "must have the same size", x=x, y=y)
        self._gelu_f32(x.p, y.p, y.size, 1 if approximate else 0)

    def gelu_bwd(self, x: Tensor, dy: Tensor, dx: Tensor, approximate: bool = False) -> None:
        if x.dtype != "f32" or dy.dtype != "f32" or dx.dtype != "f32":
            return self.fallback.gelu_bwd(x, dy, dx, approximate)
        if x.size != dx.size or dy.size != dx.size:
            raise _sizes("gelu_bwd", "must have the same size", x=x, dy=dy, dx=dx)
        self._gelu_bwd_f32(x.p, dy.p, dx.p, dx.size, 1 if approximate else 0)

    def sigmoid(self, x: Tensor, y: Tensor) -> None:
        if x.dtype != "f32" or y.dtype != "f32":
            return self.fallback.sigmoid(x, y)
        if x.size != y.size:
            raise _sizes("sigmoid", "must have the same size", x=x, y=y)
        self._sigmoid_f32(x.p, y.p, y.size)

    def sigmoid_bwd(self, y: Tensor, dy: Tensor, dx: Tensor) -> None:
        if y.dtype != "f32" or dy.dtype != "f32" or dx.dtype != "f32":
            return self.fallback.sigmoid_bwd(y, dy, dx)
        if y.size != dx.size or dy.size != dx.size:
            raise _sizes("sigmoid_bwd", "must have the same size", y=y, dy=dy, dx=dx)
        self._sigmoid_bwd_f32(y.p, dy.p, dx.p, dx.size)

    def silu(self, x: Tensor, y: Tensor) -> None:
        if x.dtype != "f32" or y.dtype != "f32":
            return self.fallback.silu(x, y)
        if x.size != y.size:
            raise _sizes("silu", "must have the same size", x=x, y=y)
        self._silu_f32(x.p, y.p, y.size)

    def silu_bwd(self, x: Tensor, dy: Tensor, dx: Tensor) -> None:
        if x.dtype != "f32" or dy.dtype != "f32" or dx.dtype != "f32":
            return self.fallback.silu_bwd(x, dy, dx)
        if x.size != dx.size or dy.size != dx.size:
            raise _sizes("silu_bwd", "must have the same size", x=x, dy=dy, dx=dx)
        self._silu_bwd_f32(x.p, dy.p, dx.p, dx.size)

    def tanh(self, x: Tensor, y: Tensor) -> None:
        if x.dtype != "f32" or y.dtype != "f32":
            return self.fallback.tanh(x, y)
        if x.size != y.size:
            raise _sizes("tanh", "must have the same size", x=x, y=y)
        self._tanh_f32(x.p, y.p, y.size)

    def tanh_bwd(self, y: Tensor, dy: Tensor, dx: Tensor) -> None:
        if y.dtype != "f32" or dy.dtype != "f32" or dx.dtype != "f32":
            return self.fallback.tanh_bwd(y, dy, dx)
        if y.size != dx.size or dy.size != dx.size:
            raise _sizes("tanh_bwd", "must have the same size", y=y, dy=dy, dx=dx)
        self._tanh_bwd_f32(y.p, dy.p, dx.p, dx.size)

    # ----------------------------------------------------------------- row-wise
    def softmax(self, x: Tensor, y: Tensor) -> None:
        if x.dtype != "f32" or y.dtype != "f32":
            return self.fallback.softmax(x, y)
        if x.size != y.size or x.cols != y.cols:
            raise _sizes("softmax", "must have the same rows and last dimension", x=x, y=y)
        self._softmax_f32(x.p, y.p, x.rows, x.cols)

    def softmax_bwd(self, y: Tensor, dy: Tensor, dx: Tensor) -> None:
        if y.dtype != "f32" or dy.dtype != "f32" or dx.dtype != "f32":
            return self.fallback.softmax_bwd(y, dy, dx)
        if not (y.size == dy.size == dx.size and y.cols == dy.cols == dx.cols):
            raise _sizes("softmax_bwd", "must have the same rows and last dimension", y=y, dy=dy,
                         dx=dx)
        self._softmax_bwd_f32(y.p, dy.p, dx.p, y.rows, y.cols)

    def layernorm(self, x: Tensor, gamma: Tensor, beta: Tensor, y: Tensor, mean: Tensor,
                  rstd: Tensor, eps: float) -> None:
        if "i32" in (x.dtype, gamma.dtype, beta.dtype, y.dtype, mean.dtype, rstd.dtype):
            return self.fallback.layernorm(x, gamma, beta, y, mean, rstd, eps)
        n, r = x.cols, x.rows
        if y.size != x.size or y.cols != n or gamma.size != n or beta.size != n \
                or mean.size != r or rstd.size != r:
            raise _sizes("layernorm", f"do not fit: y like x, gamma/beta of {n}, mean/rstd of {r}",
                         x=x, y=y, gamma=gamma, beta=beta, mean=mean, rstd=rstd)
        self._layernorm_f32(x.p, gamma.p, beta.p, y.p, mean.p, rstd.p, r, n, eps)

    def layernorm_bwd(self, x: Tensor, gamma: Tensor, mean: Tensor, rstd: Tensor, dy: Tensor,
                      dx: Tensor | None, dgamma: Tensor, dbeta: Tensor) -> None:
        if "i32" in (x.dtype, gamma.dtype, mean.dtype, rstd.dtype, dy.dtype, dgamma.dtype,
                     dbeta.dtype) or (dx is not None and dx.dtype != "f32"):
            return self.fallback.layernorm_bwd(x, gamma, mean, rstd, dy, dx, dgamma, dbeta)
        n, r = x.cols, x.rows
        if dy.size != x.size or dy.cols != n or gamma.size != n or dgamma.size != n \
                or dbeta.size != n or mean.size != r or rstd.size != r \
                or (dx is not None and (dx.size != x.size or dx.cols != n)):
            raise _sizes("layernorm_bwd", f"do not fit: dy/dx like x, gamma/dgamma/dbeta of {n}, "
                         f"mean/rstd of {r}", x=x, dy=dy, **({} if dx is None else {"dx": dx}),
                         gamma=gamma, dgamma=dgamma, dbeta=dbeta, mean=mean, rstd=rstd)
        self._layernorm_bwd_f32(x.p, gamma.p, mean.p, rstd.p, dy.p,
                                dx.p if dx is not None else None, dgamma.p, dbeta.p, r, n)

    def rmsnorm(self, x: Tensor, weight: Tensor, y: Tensor, rstd: Tensor, eps: float) -> None:
        if "i32" in (x.dtype, weight.dtype, y.dtype, rstd.dtype):
            return self.fallback.rmsnorm(x, weight, y, rstd, eps)
        n, r = x.cols, x.rows
        if y.size != x.size or y.cols != n or weight.size != n or rstd.size != r:
            raise _sizes("rmsnorm", f"do not fit: y like x, weight of {n}, rstd of {r}", x=x, y=y,
                         weight=weight, rstd=rstd)
        self._rmsnorm_f32(x.p, weight.p, y.p, rstd.p, r, n, eps)

    def rmsnorm_bwd(self, x: Tensor, weight: Tensor, rstd: Tensor, dy: Tensor, dx: Tensor | None,
                    dweight: Tensor) -> None:
        if "i32" in (x.dtype, weight.dtype, rstd.dtype, dy.dtype, dweight.dtype) or \
                (dx is not None and dx.dtype != "f32"):
            return self.fallback.rmsnorm_bwd(x, weight, rstd, dy, dx, dweight)
        n, r = x.cols, x.rows
        if dy.size != x.size or dy.cols != n or weight.size != n or dweight.size != n \
                or rstd.size != r or (dx is not None and (dx.size != x.size or dx.cols != n)):
            raise _sizes("rmsnorm_bwd", f"do not fit: dy/dx like x, weight/dweight of {n}, rstd "
                         f"of {r}", x=x, dy=dy, **({} if dx is None else {"dx": dx}),
                         weight=weight, dweight=dweight, rstd=rstd)
        self._rmsnorm_bwd_f32(x.p, weight.p, rstd.p, dy.p, dx.p if dx is not None else None,
                              dweight.p, r, n)

    def _bad_id(self, kernel: str, ids: Tensor, vocab: int) -> KernelError:
        lo, hi = int(ids.a.min()), int(ids.a.max())
        return _fail(kernel, f"token id {lo if lo < 0 else hi} outside [0, {vocab})")

    def embedding(self, ids: Tensor, weight: Tensor, y: Tensor) -> None:
        if ids.dtype != "i32" or weight.dtype != "f32" or y.dtype != "f32":
            return self.fallback.embedding(ids, weight, y)
        vocab = weight.shape[0]
        dim = weight.size // vocab if vocab else 0
        if y.size != ids.size * dim or y.cols != dim:
            raise _sizes("embedding", f"do not fit: y must be ({ids.size}, {dim})", ids=ids,
                         weight=weight, y=y)
        if self._embedding_f32(ids.p, weight.p, y.p, ids.size, vocab, dim):
            raise self._bad_id("embedding", ids, vocab)

    def embedding_bwd(self, ids: Tensor, dy: Tensor, dweight: Tensor) -> None:
        if ids.dtype != "i32" or dy.dtype != "f32" or dweight.dtype != "f32":
            return self.fallback.embedding_bwd(ids, dy, dweight)
        vocab = dweight.shape[0]
        dim = dweight.size // vocab if vocab else 0
        if dy.size != ids.size * dim or dy.cols != dim:
            raise _sizes("embedding_bwd", f"do not fit: dy must be ({ids.size}, {dim})", ids=ids,
                         dy=dy, dweight=dweight)
        if self._embedding_bwd_f32(ids.p, dy.p, dweight.p, ids.size, vocab, dim):
            raise self._bad_id("embedding_bwd", ids, vocab)

    # ----------------------------------------------------------------- randomness
    def dropout_mask(self, mask: Tensor, p: float, seed: int) -> None:
        if mask.dtype != "f32":
            return self.fallback.dropout_mask(mask, p, seed)
        if not 0.0 <= p <= 1.0:
            raise _fail("dropout_mask", f"p={p} is outside [0, 1]")
        # the same threshold and scale as numpy.py: ceil(p * 2^24), float32(1 / (1 - p))
        threshold = min(int(math.ceil(p * (1 << 24))), 1 << 24)
        scale = 1.0 / (1.0 - p) if p < 1.0 else 0.0
        self._dropout_mask_f32(mask.p, mask.size, threshold, scale, int(seed) & 0xFFFFFFFF)

    # ----------------------------------------------------------------- losses
    def cross_entropy(self, logits: Tensor, targets: Tensor, dlogits: Tensor | None,
                      label_smoothing: float = 0.0) -> float:
        if logits.dtype != "f32" or targets.dtype != "i32" or \
                (dlogits is not None and dlogits.dtype != "f32"):
            return self.fallback.cross_entropy(logits, targets, dlogits, label_smoothing)
        n, c = logits.rows, logits.cols
        if n == 0 or c == 0:
            raise _fail("cross_entropy", f"empty logits {logits.shape}")
        if targets.size != n:
            raise _sizes("cross_entropy", f"do not fit: {targets.size} targets for {n} rows",
                         logits=logits, targets=targets)
        if dlogits is not None and (dlogits.size != logits.size or dlogits.cols != c):
            raise _sizes("cross_entropy", "do not match", logits=logits, dlogits=dlogits)
        if not 0.0 <= label_smoothing <= 1.0:
            raise _fail("cross_entropy", f"label_smoothing={label_smoothing} is outside [0, 1]")
        loss = self._cross_entropy_f32(logits.p, targets.p, dlogits.p if dlogits is not None
                                       else None, n, c, label_smoothing)
        if loss < 0.0:
            if loss == -2.0:
                raise _fail("cross_entropy", f"target class out of range [0, {c}), logits {logits.shape}")
            _check("cross_entropy", int(loss))
        return loss

    def mse(self, pred: Tensor, target: Tensor, dpred: Tensor | None) -> float:
        if pred.dtype != "f32" or target.dtype != "f32" or \
                (dpred is not None and dpred.dtype != "f32"):
            return self.fallback.mse(pred, target, dpred)
        if pred.size == 0:
            raise _fail("mse", f"empty pred {pred.shape}")
        if target.size != pred.size or (dpred is not None and dpred.size != pred.size):
            raise _sizes("mse", "must have the same size", pred=pred, target=target,
                         **({} if dpred is None else {"dpred": dpred}))
        loss = self._mse_f32(pred.p, target.p, dpred.p if dpred is not None else None,
                             pred.size)
        if loss < 0.0:
            _check("mse", int(loss))
        return loss

    def count_correct(self, logits: Tensor, targets: Tensor) -> int:
        if logits.dtype != "f32" or targets.dtype != "i32":
            return self.fallback.count_correct(logits, targets)
        if targets.size != logits.rows:
            raise _sizes("count_correct", f"do not fit: {targets.size} targets for {logits.rows} "
                         "rows", logits=logits, targets=targets)
        return self._count_correct_f32(logits.p, targets.p, logits.rows, logits.cols)

    # ----------------------------------------------------------------- optimizers
    def sgd_step(self, p: Tensor, g: Tensor, buf: Tensor, lr: float, momentum: float,
                 dampening: float, weight_decay: float, nesterov: bool, first: bool) -> None:
        if p.dtype != "f32" or g.dtype != "f32" or buf.dtype != "f32":
            return self.fallback.sgd_step(p, g, buf, lr, momentum, dampening, weight_decay,
                                          nesterov, first)
        if g.size != p.size or (momentum and buf.size != p.size):
            raise _sizes("sgd_step", "must have the same size", p=p, g=g, buf=buf)
        self._sgd_step_f32(p.p, g.p, buf.p, p.size, lr, momentum, dampening, weight_decay,
                           1 if nesterov else 0, 1 if first else 0)

    def adam_step(self, p: Tensor, g: Tensor, m: Tensor, v: Tensor, lr: float, beta1: float,
                  beta2: float, eps: float, weight_decay: float, step: int,
                  decoupled: bool) -> None:
        if p.dtype != "f32" or g.dtype != "f32" or m.dtype != "f32" or v.dtype != "f32":
            return self.fallback.adam_step(p, g, m, v, lr, beta1, beta2, eps, weight_decay,
                                           step, decoupled)
        if not (g.size == m.size == v.size == p.size):
            raise _sizes("adam_step", "must have the same size", p=p, g=g, m=m, v=v)
        if step < 1:
            raise _fail("adam_step", f"step={step}: steps count from 1")
        self._adam_step_f32(p.p, g.p, m.p, v.p, p.size, lr, beta1, beta2, eps, weight_decay,
                            step, 1 if decoupled else 0)


for _name in (n[3:-4] for n in _SIGNATURES if n.endswith("_f32")):   # the reference's docs
    getattr(CKernels, _name).__doc__ = getattr(getattr(NumpyKernels, _name, None), "__doc__", None)
CKernels.copy_into.__doc__ = NumpyKernels.copy_into.__doc__
