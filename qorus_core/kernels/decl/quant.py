"""Quantized weights (csrc/quant*.c): quantize, dequantize, products and lookups with a
``QWeight`` (ggml's block formats, bit for bit: numpy_qformats.py lists them; the helpers are
in ``numpy_quant.py``). Each C kernel has one symbol per qtype (its variants)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ...errors import KernelError
from ...tensor import Tensor
from ..numpy_qformats import FLOAT_FORMATS, FORMATS, _half, bf16_bytes
from ..numpy_qformats import dequantize as dequantize_format
from ..numpy_quant import (
    QTYPES,
    QWeight,
    _as_bytes,
    _quantize_blocks,
    _unpack,
    qtype_name,
    quantize_q8_rows,
    row_bytes,
)
from .dense import check_gemm
from .spec import EXACT, kernel

FAMILY = "quant"
PANEL_ROWS = 128     # weight rows dequantized at a time by matmul_qf
_QT = tuple(QTYPES)            # every format
_QUANTIZABLE = tuple(t for t in _QT if FORMATS[t].quantizable)


def _per_qtype(call: str, qtypes: tuple[str, ...] = _QT) -> dict[str, str]:
    """{qtype: the call with {t} replaced}: one C symbol per qtype."""
    return {t: call.format(t=t) for t in qtypes}


def _k(qtype: str, k: int) -> int:
    """A row width for examples: ``k`` in the format's blocks (the K-quants: 256 a block)."""
    return k * 4 if FORMATS[qtype].block_values == 256 else k


# ----------------------------------------------------------------------------- checks
def q_weight(w, kernel: str) -> None:
    """KernelError unless ``w`` is a ``QWeight``."""
    if not isinstance(w, QWeight):   # immutable, its size checked when made
        raise KernelError(f"{kernel}: w must be a QWeight, got {type(w).__name__}")


def check_quantize(kernel: str, x: Tensor, out, qtype):
    """(qtype name, rows, k, the output bytes) of a quantize call."""
    name = qtype_name(qtype)
    if not FORMATS[name].quantizable:
        raise KernelError(f"{kernel}: no quantizer for {name} here (quantizable: "
                          f"{', '.join(_QUANTIZABLE)})")
    if isinstance(out, QWeight) and out.qtype != name:
        raise KernelError(f"{kernel}: out is a {out.qtype} weight, qtype is {name}")
    if x.dtype != "f32":
        raise KernelError(f"{kernel}: x {x.shape} must be float32")
    rows, k = x.rows, x.cols
    try:
        rb = row_bytes(name, k)
    except KernelError as exc:           # k not a whole number of blocks
        raise KernelError(f"{kernel}: x {x.shape}: {exc}") from None
    buf = _as_bytes(out, f"{kernel}: {name} out", writable=True)
    if buf.nbytes != rows * rb:
        raise KernelError(f"{kernel}: x {x.shape} as {name} needs {rows * rb} bytes ({rows} "
                          f"rows of {rb}), out has {buf.nbytes}")
    return name, rows, k, buf


def check_dequantize(kernel: str, w: QWeight, y: Tensor) -> tuple[int, int]:
    """(n, k) of a dequantize call: y float32 with ``n * k`` values."""
    q_weight(w, kernel)
    if y.dtype != "f32" or y.size != w.n * w.k:
        raise KernelError(f"{kernel}: y {y.shape} {y.dtype} must be float32 with {w.n * w.k} "
                          f"values for {w!r}")
    return w.n, w.k


def check_embedding_q(kernel: str, ids: Tensor, w: QWeight, y: Tensor) -> tuple[int, int, int]:
    """ids int32 (n,), y float32 (n, k) for a QWeight [vocab, k]; ids in range; or KernelError."""
    q_weight(w, kernel)
    if ids.dtype != "i32" or y.dtype != "f32" or y.size != ids.size * w.k:
        raise KernelError(f"{kernel}: ids {ids.shape} {ids.dtype} must be int32 and y "
                          f"{y.shape} {y.dtype} float32 of {ids.size} x {w.k} for {w!r}")
    if ids.size:
        lo, hi = int(ids.a.min()), int(ids.a.max())
        if lo < 0 or hi >= w.n:
            raise KernelError(f"{kernel}: token id {lo if lo < 0 else hi} outside [0, {w.n})")
    return ids.size, w.n, w.k


def check_mm(kernel: str, x: Tensor, w: QWeight, y: Tensor) -> tuple[int, int, int]:
    """(M, N, K) of y [M, N] = x [M, K] @ W^T, W [N, K] a QWeight."""
    q_weight(w, kernel)
    if x.dtype != "f32" or y.dtype != "f32":
        raise KernelError(f"{kernel}: x {x.shape} and y {y.shape} must be float32")
    if x.cols != w.k or y.cols != w.n or y.rows != x.rows:
        raise KernelError(f"{kernel}: x {x.shape} @ W^T with W [{w.n}, {w.k}] ({w.qtype}) "
                          f"-> y {y.shape}: expected x (M, {w.k}) and y (M, {w.n})")
    return x.rows, w.n, w.k


def check_weight_list(kernel: str, x: Tensor, ws: Sequence, ys: Sequence[Tensor],
                      check_pair: Callable[[str, Tensor, Any, Tensor], object],
                      quantized: bool = True) -> None:
    """The contract of the several-weights products (``linears``, ``linears_qp``,
    ``linears_rows``): one Tensor output per weight, each weight a QWeight where
    ``quantized``, each pair's shapes as ``check_pair(kernel, x, w, y)`` checks them."""
    if len(ws) != len(ys):
        raise KernelError(f"{kernel}: {len(ws)} weights but {len(ys)} outputs")
    for i, (w, y) in enumerate(zip(ws, ys)):
        if not isinstance(y, Tensor):
            raise KernelError(f"{kernel}: ys[{i}] must be a Tensor, got {type(y).__name__}")
        if quantized and not isinstance(w, QWeight):
            raise KernelError(f"{kernel}: ws[{i}] must be a QWeight, got {type(w).__name__}")
        check_pair(kernel, x, w, y)


def _check_linear_pair(kernel: str, x: Tensor, w, y: Tensor) -> None:
    if isinstance(w, QWeight):
        check_mm(kernel, x, w, y)
    else:
        check_gemm(kernel, x, w, y, False, True, 1.0, 0.0)


def check_linears(kernel: str, x: Tensor, ws: Sequence, ys: Sequence[Tensor]) -> None:
    """One output per weight, each product's shapes (a QWeight as matmul_q, a Tensor as
    the gemm of ``linear``)."""
    check_weight_list(kernel, x, ws, ys, _check_linear_pair, quantized=False)


# ----------------------------------------------------------------------------- kernels
@kernel(FAMILY, "x out:out:bytes", check=check_quantize, dims="qname rows k buf",
        variant="qname", c=_per_qtype("qr_quantize_{t}(x, buf.ctypes.data:ptr, rows, k)",
                                      _QUANTIZABLE),
        tol=EXACT, examples=[dict(x=(3, 64), out=(t, 3, 64), qtype=t) for t in _QUANTIZABLE],
        bad=[("whole number", dict(x=(3, 40), out=("q8_0", 3, 32), qtype="q8_0")),
             ("is a q4_0 weight", dict(out=("q4_0", 3, 64))),
             ("needs 204 bytes", dict(out=("q8_0", 2, 64), qtype="q8_0"))])
def quantize(self, x: Tensor, out, qtype) -> None:
    """out (uint8 bytes, or a QWeight) = x [rows, k] quantized row by row to qtype
    (q8_0, q4_0, q4_1, q5_0, q5_1, f16, bf16: the formats the ``gguf`` package writes),
    bit-exact with ggml's reference quantizers."""
    name, rows, k, buf = check_quantize("quantize", x, out, qtype)
    X = x.a.reshape(rows, k)
    if name == "f16":
        buf[:] = _half(X).reshape(-1)
    elif name == "bf16":
        buf[:] = bf16_bytes(X).reshape(-1)
    elif X.size:
        buf[:] = _quantize_blocks(name, X.reshape(-1, 32)).reshape(-1)


@kernel(FAMILY, "w:qweight y:out", check=check_dequantize, dims="n k", variant="w.qtype",
        c=_per_qtype("qr_dequantize_{t}(w, y, n, k)"), tol=EXACT,
        examples=[dict(w=(t, 5, _k(t, 64)), y=(5, _k(t, 64))) for t in _QT])
def dequantize(self, w: QWeight, y: Tensor) -> None:
    """y [n, k] (any shape of n * k float32) = the values of the quantized weight w,
    bit-exact with the ``gguf`` package's dequantizers."""
    dequantize_format(w.qtype, w.a, w.n, w.k, y.w)


@kernel(FAMILY, "ids:i32 w:qweight y:out", check=check_embedding_q, dims="n vocab k",
        variant="w.qtype", c=_per_qtype("qr_get_rows_{t}(w, ids, y, n, vocab, k)"),
        replay=True, tol=EXACT,
        examples=[dict(ids=((4,), 0, 6), w=(t, 6, _k(t, 64)), y=(4, _k(t, 64))) for t in _QT],
        bad=[(r"embedding_q: token id 6 outside \[0, 6\)", dict(ids=((4,), 6, 7)))])
def embedding_q(self, ids: Tensor, w: QWeight, y: Tensor) -> None:
    """y[i, :] = dequantize(w[ids[i], :]) for a quantized table w [vocab, k]."""
    Y = y.w.reshape(ids.size, w.k)
    for i, t in enumerate(ids.a.reshape(-1).tolist()):
        row = QWeight(w.a[t * w.row_bytes:(t + 1) * w.row_bytes], w.qtype, 1, w.k)
        self.dequantize(row, Tensor(Y[i:i + 1]))


def _qf_scratch(self, name: str, shape: tuple[int, int]) -> Tensor:
    """This thread's scratch Tensor ``name`` of ``shape`` for matmul_qf (made once)."""
    return self._kept(("matmul_qf", name, shape),
                      lambda: Tensor(np.empty(shape, np.float32), f"matmul_qf {name}"))


_MM_TOL = (1e-5, 1e-5)


@kernel(FAMILY, "x w:qweight y:out", check=check_mm, dims="m n k", variant="w.qtype",
        c=_per_qtype("qr_matmul_qf_{t}_f32(x, w, y, m, n, k)"), tol=_MM_TOL,
        examples=[dict(x=(3, _k(t, 64)), w=(t, 5, _k(t, 64)), y=(3, 5)) for t in _QT])
def matmul_qf(self, x: Tensor, w: QWeight, y: Tensor) -> None:
    """y [M, N] = x [M, K] @ dequantize(W)^T in float32: panels of 128 weight rows are
    dequantized into a scratch buffer (made once per shape) and multiplied by ``gemm``."""
    M, N, K = x.rows, w.n, w.k
    Y = y.w.reshape(M, N)
    if M * N == 0:
        return
    for n0 in range(0, N, PANEL_ROWS):
        n = min(PANEL_ROWS, N - n0)
        panel, yp = _qf_scratch(self, "panel", (n, K)), _qf_scratch(self, "y", (M, n))
        self.dequantize(QWeight(w.a[n0 * w.row_bytes:(n0 + n) * w.row_bytes], w.qtype, n, K),
                        panel)
        self.gemm(x, panel, yp, trans_b=True)        # yp (M, n) = x panel^T
        Y[:, n0:n0 + n] = yp.a


@kernel(FAMILY, "x w:qweight y:out", check=check_mm, dims="m n k", variant="w.qtype",
        c=_per_qtype("qr_matmul_{t}_f32(x, w, y, m, n, k)"), replay=True, tol=_MM_TOL,
        examples=[dict(x=(2, _k(t, 64)), w=(t, 5, _k(t, 64)), y=(2, 5)) for t in _QT]
        + [dict(x=(1, _k(t, 64)), w=(t, 7, _k(t, 64)), y=(1, 7)) for t in _QT],
        bad=[("matmul_q: x .* expected x", dict(x=(2, 96)))])
def matmul_q(self, x: Tensor, w: QWeight, y: Tensor) -> None:
    """y [M, N] = x [M, K] @ W^T for a quantized weight W [N, K] (a QWeight).
    x is quantized to 8-bit blocks of 32 per row and each block pair's integer dot product
    (the weight's sub-block scales folded in) is scaled by D_w * d_x, less the block's offsets
    times x's block (the formats with offsets), and summed in float32, as ggml does; F16 and
    BF16 weights multiply x in float32. Rank > 2 tensors are seen as (rows, cols)."""
    M, N, K = x.rows, w.n, w.k
    Y = y.w.reshape(M, N)
    if M * N == 0:
        return
    if K == 0:
        Y[...] = 0
        return
    X = x.a.reshape(M, K)
    if w.qtype in FLOAT_FORMATS:
        W = np.empty((N, K), np.float32)
        dequantize_format(w.qtype, w.a, N, K, W)
        np.matmul(X, W.T, out=Y)
        return
    qx, dx, _ = quantize_q8_rows(X)
    nb = K // 32
    qxt = np.ascontiguousarray(qx.transpose(1, 0, 2))             # [nb, M, 32]
    xs = (qx * dx[..., None]).reshape(M, K)                       # the q8 values (offset terms)
    step = max(1, (1 << 22) // max(1, nb * M * 8))                # bounded temporaries
    for n0 in range(0, N, step):
        n1 = min(N, n0 + step)
        qw, dw, mins = _unpack(w.qtype, w.a[n0 * w.row_bytes:n1 * w.row_bytes], n1 - n0, K)
        sumi = np.matmul(qxt, qw.transpose(1, 2, 0))              # [nb, M, n] exact ints
        scale = dx.T[:, :, None] * dw.T[:, None, :]               # D_w * d_x
        acc = (scale * sumi).sum(axis=0, dtype=np.float32)
        if mins is not None:
            acc -= xs @ mins.reshape(n1 - n0, K).T
        Y[:, n0:n1] = acc


#: the block formats (matmul_qp's): every format but the float ones
_BLOCK = tuple(t for t in _QT if t not in FLOAT_FORMATS)


def check_mm_blocks(kernel: str, x: Tensor, w: QWeight, y: Tensor) -> tuple[int, int, int]:
    """check_mm for a weight in a block format (8-bit activations: not F16 / BF16)."""
    q_weight(w, kernel)
    if w.qtype not in _BLOCK:
        raise KernelError(f"{kernel}: a {w.qtype} weight has no 8-bit activation product "
                          f"(block formats: {', '.join(_BLOCK)}); matmul_qf multiplies it")
    return check_mm(kernel, x, w, y)


@kernel(FAMILY, "x w:qweight y:out", check=check_mm_blocks, dims="m n k", variant="w.qtype",
        c=_per_qtype("qr_matmul_qp_{t}_f32(x, w, y, m, n, k)", _BLOCK), tol=EXACT,
        examples=[dict(x=(3, _k(t, 64)), w=(t, 5, _k(t, 64)), y=(3, 5)) for t in _BLOCK]
        + [dict(x=(21, k), w=(t, 19, k), y=(21, 19))       # 16-row panels and a tail
           for t, k in (("q8_0", 96), ("q4_0", 96), ("q4_1", 96), ("q6_k", 512))],
        bad=[("matmul_qp: a f16 weight has no 8-bit", dict(w=("f16", 5, 64))),
             ("matmul_qp: x .* expected x", dict(x=(3, 96)))])
def matmul_qp(self, x: Tensor, w: QWeight, y: Tensor) -> None:
    """y [M, N] = x [M, K] @ W^T with 8-bit activations for several rows (a prompt): each row
    of x quantized to 8-bit blocks of 32 as ``matmul_q`` does, and every output exactly what
    the portable one-row kernel gives for its row (``matmul_q`` on the portable tier, M = 1):
    per block an exact integer dot product (sub-block scales folded in), then, block after
    block, ``acc = acc + (D_w * d_x) * sum`` in float32 (Q4_1: its ``m_w * s_x`` terms summed
    apart and added last; the formats with offsets: less ``d_x`` times the offsets times x's
    half-block sums), so the result is the same bits on every SIMD tier, for every thread
    count and on both kernel sets. The C set runs Q8_0, Q4_0, Q4_1 and Q6_K as an integer GEMM
    (AVX-512 VNNI, AVX2); the other block formats row by row. Block formats only (F16 / BF16
    weights: matmul_qf)."""
    M, N, K = check_mm_blocks("matmul_qp", x, w, y)
    Y = y.w.reshape(M, N)
    if M * N == 0:
        return
    if K == 0:
        Y[...] = 0
        return
    qx, dx, sx = quantize_q8_rows(x.a.reshape(M, K))
    nb = K // 32
    qxt = np.ascontiguousarray(qx.transpose(1, 0, 2))             # [nb, M, 32]
    halves = qx.reshape(M, nb, 2, 16).sum(axis=3, dtype=np.float32)   # exact int sums [M, nb, 2]
    step = max(1, (1 << 22) // max(1, nb * M * 8))                # bounded temporaries
    for n0 in range(0, N, step):
        n1 = min(N, n0 + step)
        qw, dw, mins = _unpack(w.qtype, w.a[n0 * w.row_bytes:n1 * w.row_bytes], n1 - n0, K)
        sumi = np.matmul(qxt, qw.transpose(1, 2, 0))              # [nb, M, n] exact ints
        acc = np.zeros((M, n1 - n0), np.float32)
        accm = np.zeros_like(acc)
        for b in range(nb):                                       # the one-row kernel's order
            part = (dw[None, :, b] * dx[:, b, None]) * sumi[b]
            if mins is None:
                acc = acc + part
            elif w.qtype == "q4_1":                               # value d q + m: m * s_x
                accm = accm + (-mins[None, :, b, 0]) * sx[:, b, None]
                acc = acc + part
            else:                                                 # value D qs - mn[half]
                off = (mins[None, :, b, 0] * halves[:, b, 0, None]
                       + mins[None, :, b, 16] * halves[:, b, 1, None])
                acc = acc + (part - dx[:, b, None] * off)
        Y[:, n0:n1] = acc + accm if w.qtype == "q4_1" else acc


def check_linears_qp(kernel: str, x: Tensor, ws: Sequence, ys: Sequence[Tensor]) -> None:
    """One output per weight, each a block-format QWeight product of x's rows."""
    check_weight_list(kernel, x, ws, ys, check_mm_blocks)


_NO_WEIGHT = (0, None, None, 0)   # an unused slot of qr_matmul_q3_f32 / qr_linears_qp_f32


@kernel(FAMILY, "x ws:qweight* ys:out*", check=check_linears_qp, tol=EXACT,
        c="qr_linears_qp_f32(x, m:i64, k:i64, t0:int, w0:ptr, y0:ptr, n0:i64, t1:int, w1:ptr, "
          "y1:ptr, n1:i64, t2:int, w2:ptr, y2:ptr, n2:i64)",
        examples=[dict(x=(3, 64), ws=[("q4_1", 5, 64), ("q4_1", 3, 64), ("q4_1", 4, 64)],
                       ys=[(3, 5), (3, 3), (3, 4)]),
                  dict(x=(19, 256), ws=[("q8_0", 7, 256), ("q6_k", 11, 256), ("q5_0", 2, 256),
                                        ("q4_0", 9, 256)],
                       ys=[(19, 7), (19, 11), (19, 2), (19, 9)])],
        bad=[("linears_qp: 2 weights but 1 outputs",
              dict(ws=[("q8_0", 5, 64), ("q8_0", 3, 64)], ys=[(3, 5)])),
             ("linears_qp: a bf16 weight has no 8-bit",
              dict(ws=[("q8_0", 5, 64), ("bf16", 3, 64), ("q4_1", 4, 64)]))])
def linears_qp(self, x: Tensor, ws: Sequence, ys: Sequence[Tensor]) -> None:
    """``matmul_qp(x, ws[i], ys[i])`` for each block-format weight: the projections of one
    input in a prompt (q/k/v, gate/up). The C set quantizes x once and runs up to three
    weights a call (of any block formats) in one parallel region over their tiles; the
    results are the same bits."""
    check_linears_qp("linears_qp", x, ws, ys)
    for y in ys:          # every output writeable before the first is written
        y.w  # noqa: B018
    for w, y in zip(ws, ys):
        self.matmul_qp(x, w, y)


@linears_qp.c_method
def linears_qp(self, x: Tensor, ws: Sequence, ys: Sequence[Tensor]) -> None:  # noqa: F811
    """The C method: x quantized once for each three weights."""
    check_linears_qp("linears_qp", x, ws, ys)
    if x.dtype != "f32":
        raise KernelError(f"linears_qp: x {x.shape} must be float32")
    outs = [y.wp for y in ys]        # every output writeable before the first is written
    for i in range(0, len(ws), 3):
        args = []
        for w, y in zip(ws[i:i + 3], outs[i:i + 3]):
            args += (w.code, w.p, y, w.n)
        rc = self._qr_linears_qp_f32(x.p, x.rows, x.cols, *args,
                                     *_NO_WEIGHT * (3 - len(ws[i:i + 3])))
        if rc:
            raise KernelError(f"linears_qp: C kernel returned {rc}")


@kernel(FAMILY, "x ws:weight* ys:out*", check=check_linears, replay=True, tol=_MM_TOL,
        c="qr_matmul_q3_f32(x, k:i64, t0:int, w0:ptr, y0:ptr, n0:i64, t1:int, w1:ptr, y1:ptr, "
          "n1:i64, t2:int, w2:ptr, y2:ptr, n2:i64)",
        examples=[dict(x=(1, 64), ws=[("q8_0", 5, 64), ("q4_0", 3, 64), ("f16", 4, 64)],
                       ys=[(1, 5), (1, 3), (1, 4)]),
                  dict(x=(3, 64), ws=[("q4_1", 5, 64), (4, 64)], ys=[(3, 5), (3, 4)])],
        bad=[("linears: 2 weights but 1 outputs", dict(ws=[("q8_0", 5, 64), ("q4_0", 3, 64)],
                                                        ys=[(1, 5)]))])
def linears(self, x: Tensor, ws: Sequence, ys: Sequence[Tensor]) -> None:
    """``linear(x, ws[i], ys[i])`` for each weight (a Tensor [N, K] or a QWeight):
    projections of one input (q/k/v, gate/up). The C set runs a decode row (one row, up to
    three QWeights) as one call: x quantized once, one parallel region over all the rows;
    and a prompt's rows whose weights are all of the INT8_PROMPT formats as ``linears_qp``;
    the results are the same."""
    for y in ys:          # every output writeable before the first is written
        y.w  # noqa: B018
    for w, y in zip(ws, ys):
        self.linear(x, w, y)


@linears.c_method
def linears(self, x: Tensor, ws: Sequence, ys: Sequence[Tensor]) -> None:  # noqa: F811
    """The C method: a one-row float32 input and up to three QWeights in one call (x quantized once),
    anything else weight by weight."""
    check_linears("linears", x, ws, ys)
    if (x.rows > 1 and ws and x.dtype == "f32"
            and all(isinstance(w, QWeight) and w.qtype in self._int8_prompt for w in ws)):
        return self.linears_qp(x, ws, ys)            # a prompt: x quantized once
    if x.rows != 1 or not 0 < len(ws) <= 3 or x.dtype != "f32":
        return linears.numpy(self, x, ws, ys)        # each on this set: gemm / matmul_q(f)
    args = []
    for w, y in zip(ws, ys):
        if not isinstance(w, QWeight):               # a float32 weight: linear each
            return linears.numpy(self, x, ws, ys)
        args += (w.code, w.p, y.wp, w.n)
    rc = self._qr_matmul_q3_f32(x.p, x.cols, *args, *_NO_WEIGHT * (3 - len(ws)))
    if rc:
        raise KernelError(f"linears: C kernel returned {rc}")
