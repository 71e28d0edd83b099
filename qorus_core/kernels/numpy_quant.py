"""Quantized weights: the ``QWeight`` type and the helpers the quant kernels share (the formats
themselves, bit for bit with ggml, are in ``numpy_qformats.py``; the kernels are declared in
``decl/quant.py``), and ``WeightDispatch``, the base of both kernel sets.

A quantized matrix [N, K] is N rows of ``row_bytes(qtype, K)`` bytes (the layout of a GGUF
tensor, whose dims read (K, N)). A weight is a ``QWeight``: raw uint8 bytes (e.g. an mmap view
of a GGUF file, read-only is fine), its qtype and (N, K), its byte size checked when it is made;
a QWeight is immutable, so that check holds for every later C call.

Products ``y[M,N] = x[M,K] @ W^T`` quantize each row of x to 8-bit blocks of 32 as ggml does for
its Q8_0 / Q8_1 activation blocks (d = amax / 127, q = round half away from zero, s = d * sum q;
scales kept in float32), take the exact integer dot product of each weight block (its
sub-block scales folded in) with the activation block and sum ``D_w * d_x * sumi`` (minus the
block's offsets times the activations, for the formats with offsets) in float32. F16 / BF16
weights multiply the float32 activations directly. NaN / inf in an activation row makes that
row's outputs NaN (F16: as float math has it); inf fp16 scales give inf / NaN, as in ggml.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import KernelError
from ..tensor import Tensor
from .numpy_qformats import FORMATS, quantize_blocks, unpack_products

__all__ = ["INT8_PROMPT", "QTYPES", "QWeight", "WeightDispatch", "qtype_name", "row_bytes",
           "to_float32"]

# name -> (ggml type number, values a block, bytes a block)
QTYPES = {f.name: (f.number, f.block_values, f.block_bytes) for f in FORMATS.values()}
_BY_NUMBER = {v[0]: k for k, v in QTYPES.items()}
#: the formats whose prompts (several rows) take ``matmul_qp``'s 8-bit activations: those with
#: an integer GEMM, faster there than ``matmul_qf``'s float GEMM (bench/bench_llm.py); the
#: other formats' prompts multiply float32 activations
INT8_PROMPT = frozenset({"q8_0", "q4_0", "q4_1", "q6_k"})


def qtype_name(qtype) -> str:
    """A format name ('q8_0', 'q4_k', 'bf16', ...: ``QTYPES``) from a name (any case) or a ggml
    type number/enum."""
    if isinstance(qtype, str):
        name = qtype.strip().lower()
        if name in QTYPES:
            return name
    elif isinstance(qtype, (int, np.integer)) and int(qtype) in _BY_NUMBER:
        return _BY_NUMBER[int(qtype)]
    raise KernelError(f"quant type {qtype!r}: expected one of {', '.join(QTYPES)} "
                      "(or its ggml type number)")


def row_bytes(qtype, k: int) -> int:
    """Bytes of one row of k values; k must be a whole number of the format's blocks (32
    values, 256 for the K-quants)."""
    name = qtype_name(qtype)
    _, bk, bb = QTYPES[name]
    if k < 0 or k % bk:
        raise KernelError(f"{name}: a row of {k} values is not a whole number of {bk}-value "
                          "blocks")
    return k // bk * bb


def _as_bytes(buf, what: str, writable: bool = False) -> np.ndarray:
    if isinstance(buf, QWeight):
        buf = buf.a
    if not isinstance(buf, np.ndarray):
        try:
            buf = np.frombuffer(buf, dtype=np.uint8)
        except (TypeError, ValueError) as exc:
            raise KernelError(f"{what}: expected a uint8 buffer, got {type(buf).__name__}") from exc
    if buf.dtype != np.uint8 or not buf.flags.c_contiguous:
        raise KernelError(f"{what}: expected a C-contiguous uint8 array, got {buf.dtype} "
                          f"{'contiguous' if buf.flags.c_contiguous else 'strided'}")
    if writable and not buf.flags.writeable:
        raise KernelError(f"{what}: the buffer is read-only")
    return buf.reshape(-1)


class QWeight:
    """A quantized weight W [n, k]: raw bytes, qtype, shape; ``p`` is the bytes' address.

    ``buf``: any C-contiguous uint8 array or bytes-like object (a GGUF tensor's mmap view);
    its size must be exactly ``n * row_bytes(qtype, k)`` bytes."""

    __slots__ = ("a", "p", "qtype", "code", "n", "k", "nbytes", "row_bytes")

    def __init__(self, buf, qtype, n: int, k: int) -> None:
        name, n, k = qtype_name(qtype), int(n), int(k)
        if n < 0:
            raise KernelError(f"{name} weight: n={n} is negative")
        rb = row_bytes(name, k)
        a = _as_bytes(buf, f"{name} weight [{n}, {k}]")
        if a.nbytes != n * rb:
            raise KernelError(f"{name} weight [{n}, {k}]: needs {n * rb} bytes "
                              f"({n} rows of {rb}), the buffer has {a.nbytes}")
        fields = {"a": a, "p": int(a.ctypes.data), "qtype": name, "code": QTYPES[name][0],
                  "n": n, "k": k, "nbytes": n * rb, "row_bytes": rb}
        for field, value in fields.items():
            object.__setattr__(self, field, value)

    def __setattr__(self, name: str, value) -> None:
        raise KernelError(f"QWeight is immutable (its size was checked once): cannot set {name}")

    @classmethod
    def empty(cls, qtype, n: int, k: int) -> QWeight:
        """A zeroed weight of this shape (to quantize into)."""
        return cls(np.zeros(int(n) * row_bytes(qtype, k), np.uint8), qtype, n, k)

    @property
    def shape(self) -> tuple[int, int]:
        """``(n, k)``: the weight's rows and columns, as the float32 matrix it stands for."""
        return (self.n, self.k)

    def __repr__(self) -> str:
        return f"QWeight({self.qtype}, n={self.n}, k={self.k}, {self.nbytes} bytes)"


def _quantize_blocks(name: str, x: np.ndarray) -> np.ndarray:
    """x [nblocks, 32] float32 -> [nblocks, block bytes] uint8 (ggml's reference quantizers)."""
    return quantize_blocks(name, x)


def _unpack(name: str, w: np.ndarray, n: int, k: int):
    """Weight bytes -> (qs [n, nb, 32] float32 integers, D [n, nb], mins [n, nb, 32] or None):
    each value is ``D * qs - mins`` (numpy_qformats.unpack_products)."""
    return unpack_products(name, w, n, k)


def quantize_q8_rows(x: np.ndarray):
    """Activation rows x [M, K] -> (q [M, nb, 32] float32 integers, d [M, nb], s [M, nb]):
    d = amax / 127, q = round half away from zero of x / d, s = d * sum q. A block holding a NaN
    or inf gets q = 0 and d = s = NaN, so every output it feeds is NaN."""
    m, k = x.shape
    xb = x.reshape(m, k // 32, 32)
    bad = ~np.isfinite(xb).all(axis=2)          # NaN / inf: q = 0, d = s = NaN
    with np.errstate(invalid="ignore"):
        d = np.abs(xb).max(axis=2) / np.float32(127)
        d[bad] = np.nan
        inv = np.divide(np.float32(1), d, out=np.zeros_like(d), where=(d != 0) & ~bad)
        v = np.where(bad[..., None], np.float32(0), xb) * inv[..., None]
    a = np.abs(v)
    t = np.trunc(a)
    r = t + (a - t >= np.float32(0.5)).astype(np.float32)
    q = np.where(v < 0, -r, r)
    s = d * q.sum(axis=2, dtype=np.float32)     # integer sums: exact in float32
    return q, d, s


def to_float32(w: QWeight, kernels) -> np.ndarray:
    """A new float32 [n, k] array of a quantized weight's values, by ``kernels.dequantize``
    (loading or converting a model: never on a hot path)."""
    out = Tensor(np.empty(w.shape, np.float32))
    kernels.dequantize(w, out)
    return out.a


class WeightDispatch:
    """The base of both kernel sets: what takes a weight in either form, a float32 Tensor or
    a ``QWeight`` (a GGUF tensor used where it lies), so one layer serves training and
    quantized inference (``linears``, the fused form, is a kernel: decl/quant.py)."""

    #: the formats whose prompt products take 8-bit activations: none by default (float32
    #: activations, ``matmul_qf``), ``INT8_PROMPT`` with ``QORUS_INT8_PROMPTS=1`` (1.3-1.7x
    #: faster prompts, but greedy answers that tip at near ties: SmolLM2 Q4_1 then answers
    #: "L'Étoile" to the capital of France, where llama.cpp and the float path say Paris);
    #: a set's own attribute overrides it (the tests set both ways)
    _int8_prompt = INT8_PROMPT if os.environ.get("QORUS_INT8_PROMPTS") == "1" else frozenset()

    def linear(self, x: Tensor, w, y: Tensor) -> None:
        """y [M, N] = x [M, K] @ w^T for w [N, K] (PyTorch's Linear layout and GGUF's row
        layout agree): ``gemm`` for a Tensor. For a QWeight, one row (a decode step, memory
        bound) takes ``matmul_q``'s 8-bit activations, ggml's arithmetic; several rows (a
        prompt, compute bound) take ``prompt_linear``: 8-bit activations through
        ``matmul_qp``'s integer GEMM for the ``INT8_PROMPT`` formats (Q8_0, Q4_0, Q4_1, Q6_K),
        float32 activations (``matmul_qf``) for the others."""
        if not isinstance(w, QWeight):
            self.gemm(x, w, y, trans_b=True)
        elif x.rows <= 1:
            self.matmul_q(x, w, y)
        else:
            self.prompt_linear(x, w, y)

    def prompt_linear(self, x: Tensor, w, y: Tensor) -> None:
        """y [M, N] = x [M, K] @ w^T as the rows of a prompt take it, whatever M (a prompt's
        last position alone, too): ``matmul_qp`` (8-bit activations, each row the portable
        one-row kernel's bits) for a QWeight in an ``INT8_PROMPT`` format, ``matmul_qf``
        (float32 activations) for the other QWeights, ``gemm`` for a Tensor."""
        if not isinstance(w, QWeight):
            self.gemm(x, w, y, trans_b=True)
        elif w.qtype in self._int8_prompt:
            self.matmul_qp(x, w, y)
        else:
            self.matmul_qf(x, w, y)

    def scratch(self, key: str, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
        """This thread's scratch array ``key`` of ``shape`` and ``dtype`` (made on first use;
        its contents are the caller's until its next call): the temporaries of NumPy code,
        so a warmed-up step allocates nothing (a plugin kernel's NumPy implementation takes
        its own, keys prefixed with its namespace). ``dtype`` is a NumPy type such as
        ``np.float32``, keyed as given: no ``np.dtype`` built per call."""
        return self.fallback.scratch(key, shape, dtype)     # the C set: its NumPy set's

    def embedding_rows(self, ids: Tensor, w, y: Tensor) -> None:
        """y[i, :] = w[ids[i], :] for a float32 table (``embedding``) or a QWeight
        (``embedding_q``, rows dequantized)."""
        if isinstance(w, QWeight):
            self.embedding_q(ids, w, y)
        else:
            self.embedding(ids, w, y)
