"""Quantized weights in NumPy: the reference for ``csrc/quant.c`` (mixed into ``NumpyKernels``).

Formats are ggml's, bit for bit (32 values a block, fp16 scales, little-endian):

=====  =====  ===========================================  =====================
qtype  bytes  block                                        value
=====  =====  ===========================================  =====================
q8_0   34     fp16 d, int8 q[32]                           d * q
q4_0   18     fp16 d, 16 bytes of nibbles                  d * (q - 8)
q4_1   20     fp16 d, fp16 m, 16 bytes of nibbles          d * q + m
f16    2      one IEEE half per value                      exact
=====  =====  ===========================================  =====================

Q4 nibbles: element j in the low nibble of byte j, element j + 16 in its high nibble. A
quantized matrix [N, K] is N rows of ``row_bytes(qtype, K)`` bytes (the layout of a GGUF
tensor, whose dims read (K, N)). A weight is a ``QWeight``: raw uint8 bytes (e.g. an mmap view
of a GGUF file, read-only is fine), its qtype and (N, K), its byte size checked when it is made;
a QWeight is immutable, so that check holds for every later C call.

Products ``y[M,N] = x[M,K] @ W^T`` quantize each row of x to 8-bit blocks as ggml does for its
Q8_0 / Q8_1 activation blocks (d = amax / 127, q = round half away from zero, s = d * sum q;
scales kept in float32), take the exact integer dot product of each block pair and sum
``d_w * d_x * sumi`` (+ ``m_w * s_x`` for q4_1) in float32. F16 weights multiply the float32
activations directly. NaN / inf in an activation row makes that row's outputs NaN (F16: as
float math has it); inf fp16 scales (values beyond 65504 quantized) give inf / NaN, as in ggml.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import KernelError
from ..tensor import Tensor

__all__ = ["QTYPES", "QWeight", "QuantNumpyMixin", "qtype_name", "row_bytes"]

# name -> (ggml type number, values a block, bytes a block)
QTYPES = {"f16": (1, 1, 2), "q4_0": (2, 32, 18), "q4_1": (3, 32, 20), "q8_0": (8, 32, 34)}
_BY_NUMBER = {v[0]: k for k, v in QTYPES.items()}
_F16 = np.dtype("<f2")


def qtype_name(qtype) -> str:
    """'q8_0', 'q4_0', 'q4_1' or 'f16' from a name (any case) or a ggml type number/enum."""
    if isinstance(qtype, str):
        name = qtype.strip().lower()
        if name in QTYPES:
            return name
    elif isinstance(qtype, (int, np.integer)) and int(qtype) in _BY_NUMBER:
        return _BY_NUMBER[int(qtype)]
    raise KernelError(f"quant type {qtype!r}: expected one of {', '.join(QTYPES)} "
                      "(or its ggml type number)")


def row_bytes(qtype, k: int) -> int:
    """Bytes of one row of k values; k must be a multiple of 32 for the block formats."""
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
        return (self.n, self.k)

    def __repr__(self) -> str:
        return f"QWeight({self.qtype}, n={self.n}, k={self.k}, {self.nbytes} bytes)"


def _half(a: np.ndarray) -> np.ndarray:
    """float32 -> the fp16 bytes (round to nearest even; beyond 65504: inf, as ggml)."""
    with np.errstate(over="ignore"):
        return a.astype(_F16).view(np.uint8)


def _quantize_blocks(name: str, x: np.ndarray) -> np.ndarray:
    """x [nblocks, 32] float32 -> [nblocks, block bytes] uint8 (ggml's reference quantizers)."""
    nbk = x.shape[0]
    if name == "q8_0":
        amax = np.abs(x).max(axis=1, keepdims=True)
        d = amax / np.float32(127)
        inv = np.divide(np.float32(1), d, out=np.zeros_like(d), where=d != 0)
        v = x * inv
        a = np.abs(v)
        t = np.trunc(a)
        r = t + (a - t >= np.float32(0.5)).astype(np.float32)   # round half away from zero
        q = np.where(v < 0, -r, r).astype(np.int8)
        return np.concatenate([_half(d), q.view(np.uint8)], axis=1)
    if name == "q4_0":
        imax = np.abs(x).argmax(axis=1)[:, None]                # first of largest magnitude
        mx = np.take_along_axis(x, imax, axis=1)
        d = mx / np.float32(-8)
        inv = np.divide(np.float32(1), d, out=np.zeros_like(d), where=d != 0)
        q = np.minimum(np.trunc(x * inv + np.float32(8.5)), np.float32(15)).astype(np.uint8)
        q = q.reshape(nbk, 2, 16)
        return np.concatenate([_half(d), q[:, 0] | (q[:, 1] << np.uint8(4))], axis=1)
    # q4_1
    lo = x.min(axis=1, keepdims=True)
    hi = x.max(axis=1, keepdims=True)
    d = (hi - lo) / np.float32(15)
    inv = np.divide(np.float32(1), d, out=np.zeros_like(d), where=d != 0)
    q = np.minimum(np.trunc((x - lo) * inv + np.float32(0.5)), np.float32(15)).astype(np.uint8)
    q = q.reshape(nbk, 2, 16)
    return np.concatenate([_half(d), _half(lo), q[:, 0] | (q[:, 1] << np.uint8(4))], axis=1)


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """[..., 16] packed -> [..., 32] values 0..15 in element order."""
    return np.concatenate([qs & np.uint8(15), qs >> np.uint8(4)], axis=-1)


def _unpack(name: str, w: np.ndarray, n: int, k: int):
    """Weight bytes -> (q [n, nb, 32] float32 integers, d [n, nb], m [n, nb] or None)."""
    nb = k // 32
    blk = w.reshape(n, nb, QTYPES[name][2])
    d = blk[..., 0:2].copy().view(_F16)[..., 0].astype(np.float32)
    if name == "q8_0":
        return blk[..., 2:].view(np.int8).astype(np.float32), d, None
    if name == "q4_0":
        return _nibbles(blk[..., 2:]).astype(np.float32) - np.float32(8), d, None
    m = blk[..., 2:4].copy().view(_F16)[..., 0].astype(np.float32)
    return _nibbles(blk[..., 4:]).astype(np.float32), d, m


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


PANEL_ROWS = 128     # weight rows dequantized at a time by matmul_qf


class WeightDispatch:
    """Kernels that take a weight in either form: a float32 Tensor or a ``QWeight`` (a GGUF
    tensor used where it lies). Layers call these so one layer serves training and
    quantized inference."""

    def linear(self, x: Tensor, w, y: Tensor) -> None:
        """y [M, N] = x [M, K] @ w^T for w [N, K] (PyTorch's Linear layout and GGUF's row
        layout agree): ``gemm`` for a Tensor. For a QWeight, one row (a decode step, memory
        bound) takes ``matmul_q``'s 8-bit activations, ggml's arithmetic; several rows (a
        prompt, compute bound) take ``matmul_qf``: float32 activations, as llama.cpp's BLAS
        path does, so prompt logits match a float32 reference."""
        if not isinstance(w, QWeight):
            self.gemm(x, w, y, trans_b=True)
        elif x.rows <= 1:
            self.matmul_q(x, w, y)
        else:
            self.matmul_qf(x, w, y)

    def embedding_rows(self, ids: Tensor, w, y: Tensor) -> None:
        """y[i, :] = w[ids[i], :] for a float32 table (``embedding``) or a QWeight
        (``embedding_q``, rows dequantized)."""
        if isinstance(w, QWeight):
            self.embedding_q(ids, w, y)
        else:
            self.embedding(ids, w, y)

    def linears(self, x: Tensor, ws: Sequence, ys: Sequence[Tensor]) -> None:
        """``linear(x, ws[i], ys[i])`` for each weight: projections of one input (q/k/v,
        gate/up). The C set runs a decode row (one row, up to three QWeights) as one call: x
        quantized once, one parallel region over all the rows; the results are the same."""
        if len(ws) != len(ys):
            raise KernelError(f"linears: {len(ws)} weights but {len(ys)} outputs")
        for w, y in zip(ws, ys):
            self.linear(x, w, y)


def check_embedding_q(ids: Tensor, w: QWeight, y: Tensor) -> None:
    """ids int32 (n,), y float32 (n, k) for a QWeight [vocab, k]; ids in range; or KernelError."""
    QuantNumpyMixin._q_weight(w, "embedding_q")
    if ids.dtype != "i32" or y.dtype != "f32" or y.size != ids.size * w.k:
        raise KernelError(f"embedding_q: ids {ids.shape} {ids.dtype} must be int32 and y "
                          f"{y.shape} {y.dtype} float32 of {ids.size} x {w.k} for {w!r}")
    if ids.size:
        lo, hi = int(ids.a.min()), int(ids.a.max())
        if lo < 0 or hi >= w.n:
            raise KernelError(f"embedding_q: token id {lo if lo < 0 else hi} outside [0, {w.n})")


class QuantNumpyMixin(WeightDispatch):
    """quantize / dequantize / matmul_q of the NumPy kernel set (the reference)."""

    def quantize(self, x: Tensor, out, qtype) -> None:
        """out (uint8 bytes, or a QWeight) = x [rows, k] quantized row by row to qtype
        ('q8_0', 'q4_0', 'q4_1', 'f16'), bit-exact with ggml's reference quantizers."""
        name, rows, k, buf = self._q_args(x, out, qtype)
        X = x.a.reshape(rows, k)
        if name == "f16":
            buf[:] = _half(X).reshape(-1)
        elif X.size:
            buf[:] = _quantize_blocks(name, X.reshape(-1, 32)).reshape(-1)

    def dequantize(self, w: QWeight, y: Tensor) -> None:
        """y [n, k] (any shape of n * k float32) = the values of the quantized weight w."""
        self._q_check_out(w, y, "dequantize")
        if w.qtype == "f16":
            y.a.reshape(-1)[:] = w.a.view(_F16).astype(np.float32)
            return
        if w.n * w.k == 0:
            return
        q, d, m = _unpack(w.qtype, w.a, w.n, w.k)
        Y = y.a.reshape(w.n, w.k // 32, 32)
        if w.qtype == "q4_1":
            np.multiply(d[..., None], q, out=Y)
            np.add(Y, m[..., None], out=Y)
        else:
            np.multiply(q, d[..., None], out=Y)

    def embedding_q(self, ids: Tensor, w: QWeight, y: Tensor) -> None:
        """y[i, :] = dequantize(w[ids[i], :]) for a quantized table w [vocab, k]."""
        check_embedding_q(ids, w, y)
        Y = y.a.reshape(ids.size, w.k)
        for i, t in enumerate(ids.a.reshape(-1).tolist()):
            row = QWeight(w.a[t * w.row_bytes:(t + 1) * w.row_bytes], w.qtype, 1, w.k)
            self.dequantize(row, Tensor(Y[i:i + 1]))

    def matmul_qf(self, x: Tensor, w: QWeight, y: Tensor) -> None:
        """y [M, N] = x [M, K] @ dequantize(W)^T in float32: panels of 128 weight rows are
        dequantized into a scratch buffer (made once per shape) and multiplied by ``gemm``."""
        M, N, K = QuantNumpyMixin._q_check_mm(x, w, y)
        if M * N == 0:
            return
        Y = y.a.reshape(M, N)
        for n0 in range(0, N, PANEL_ROWS):
            n = min(PANEL_ROWS, N - n0)
            panel, yp = self._qf_scratch("panel", (n, K)), self._qf_scratch("y", (M, n))
            self.dequantize(QWeight(w.a[n0 * w.row_bytes:(n0 + n) * w.row_bytes], w.qtype, n, K), panel)
            self.gemm(x, panel, yp, trans_b=True)        # yp (M, n) = x panel^T
            Y[:, n0:n0 + n] = yp.a

    def _qf_scratch(self, name: str, shape: tuple[int, int]) -> Tensor:
        cache = self.__dict__.setdefault("_qf_buffers", {})
        t = cache.get((name, shape))
        if t is None:
            t = cache[(name, shape)] = Tensor(np.empty(shape, np.float32), f"matmul_qf {name}")
        return t

    def matmul_q(self, x: Tensor, w: QWeight, y: Tensor) -> None:
        """y [M, N] = x [M, K] @ W^T for a quantized weight W [N, K] (a QWeight).
        x is quantized to 8-bit blocks per row and each block pair's integer dot product is
        scaled by d_w * d_x (+ m_w * s_x for q4_1) and summed in float32, as ggml does; F16
        weights multiply x in float32. Rank > 2 tensors are seen as (rows, cols)."""
        M, N, K = self._q_check_mm(x, w, y)
        Y = y.a.reshape(M, N)
        if M * N == 0:
            return
        if K == 0:
            Y[...] = 0
            return
        X = x.a.reshape(M, K)
        if w.qtype == "f16":
            np.matmul(X, w.a.view(_F16).reshape(N, K).astype(np.float32).T, out=Y)
            return
        qx, dx, sx = quantize_q8_rows(X)
        nb = K // 32
        qxt = np.ascontiguousarray(qx.transpose(1, 0, 2))             # [nb, M, 32]
        step = max(1, (1 << 22) // max(1, nb * M))                    # bounded temporaries
        for n0 in range(0, N, step):
            n1 = min(N, n0 + step)
            qw, dw, mw = _unpack(w.qtype, w.a[n0 * w.row_bytes:n1 * w.row_bytes], n1 - n0, K)
            sumi = np.matmul(qxt, qw.transpose(1, 2, 0))              # [nb, M, n] exact ints
            scale = dx.T[:, :, None] * dw.T[:, None, :]               # d_w * d_x
            acc = (scale * sumi).sum(axis=0, dtype=np.float32)
            if mw is not None:
                acc += sx @ mw.T
            Y[:, n0:n1] = acc

    # ----------------------------------------------------------------- argument checks
    @staticmethod
    def _q_args(x: Tensor, out, qtype):
        name = qtype_name(qtype)
        if isinstance(out, QWeight) and out.qtype != name:
            raise KernelError(f"quantize: out is a {out.qtype} weight, qtype is {name}")
        if x.dtype != "f32":
            raise KernelError(f"quantize: x {x.shape} must be float32")
        rows, k = x.rows, x.cols
        need = rows * row_bytes(name, k)
        buf = _as_bytes(out, f"quantize {name} out", writable=True)
        if buf.nbytes != need:
            raise KernelError(f"quantize: x {x.shape} as {name} needs {need} bytes ({rows} rows "
                              f"of {row_bytes(name, k)}), out has {buf.nbytes}")
        return name, rows, k, buf

    @staticmethod
    def _q_weight(w, kernel: str) -> None:
        if not isinstance(w, QWeight):   # immutable, its size checked when made
            raise KernelError(f"{kernel}: w must be a QWeight, got {type(w).__name__}")

    @staticmethod
    def _q_check_out(w: QWeight, y: Tensor, kernel: str) -> None:
        QuantNumpyMixin._q_weight(w, kernel)
        if y.dtype != "f32" or y.size != w.n * w.k:
            raise KernelError(f"{kernel}: y {y.shape} {y.dtype} must be float32 with {w.n * w.k} "
                              f"values for {w!r}")

    @staticmethod
    def _q_check_mm(x: Tensor, w: QWeight, y: Tensor) -> tuple[int, int, int]:
        QuantNumpyMixin._q_weight(w, "matmul_q")
        if x.dtype != "f32" or y.dtype != "f32":
            raise KernelError(f"matmul_q: x {x.shape} and y {y.shape} must be float32")
        if x.cols != w.k or y.cols != w.n or y.rows != x.rows:
            raise KernelError(f"matmul_q: x {x.shape} @ W^T with W [{w.n}, {w.k}] ({w.qtype}) "
                              f"-> y {y.shape}: expected x (M, {w.k}) and y (M, {w.n})")
        return x.rows, w.n, w.k
