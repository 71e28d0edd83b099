"""Dense algebra: GEMM (csrc/gemm.c), bias add and its gradient, embedding lookups (act.c).

A tensor of rank > 2 is seen as a matrix (rows, cols), cols its last dimension.
"""

from __future__ import annotations

import numpy as np

from ...errors import KernelError
from ...tensor import Tensor
from .spec import EXACT, Fit, Inline, c_error, kernel, sizes_error

FAMILY = "dense"


# ----------------------------------------------------------------------------- gemm
def check_gemm(kernel: str, a: Tensor, b: Tensor, c: Tensor, trans_a, trans_b, alpha,
               beta) -> tuple[int, int, int]:
    """(M, N, K) of op(A) [M, K] @ op(B) [K, N] -> C [M, N], or KernelError."""
    if trans_a:
        k, m = a.rows, a.cols
    else:
        m, k = a.rows, a.cols
    if trans_b:
        n, kb = b.rows, b.cols
    else:
        kb, n = b.rows, b.cols
    if kb != k or c.rows != m or c.cols != n:
        raise KernelError(f"{kernel}: op(A) is {m}x{k} (A {a.shape}, trans_a={bool(trans_a)}), "
                          f"op(B) is {kb}x{n} (B {b.shape}, trans_b={bool(trans_b)}), C is "
                          f"{c.rows}x{c.cols} {c.shape}: expected C {m}x{n} and matching inner "
                          "dimensions")
    return m, n, k


# check_gemm inlined (the cheapest GEMMs are Python-bound): m, n, k of op(A), op(B) and C
_GEMM = Inline({"m": "a.cols if trans_a else a.rows", "n": "b.rows if trans_b else b.cols",
                "k": "a.rows if trans_a else a.cols"},
               "(b.cols if trans_b else b.rows) == k and c.rows == m and c.cols == n", check_gemm)

# C must not overlap A or B (NumPy's matmul buffers such a call: it runs there)
_NO_OVERLAP = ("(c.p >= a.p + 4 * a.size or a.p >= c.p + 4 * c.size) and "
               "(c.p >= b.p + 4 * b.size or b.p >= c.p + 4 * c.size)")


def gemm_numpy(self, A: np.ndarray, B: np.ndarray, C: np.ndarray, alpha: float, beta: float,
               scratch: str) -> None:
    """C = alpha * A @ B + beta * C on (batches of) matrices, BLAS's rules: K = 0 gives
    beta * C, beta == 0 never reads C. The NumPy body of gemm and bmm."""
    if A.shape[-1] == 0:         # K = 0: C = beta * C, alpha unused (as BLAS)
        if beta == 0.0:
            C.fill(0)
        elif beta != 1.0:
            np.multiply(C, np.float32(beta), out=C)
        return
    if beta == 0.0:
        np.matmul(A, B, out=C)
        if alpha != 1.0:
            np.multiply(C, np.float32(alpha), out=C)
        return
    tmp = self.scratch(scratch, C.shape)
    np.matmul(A, B, out=tmp)
    if alpha != 1.0:
        np.multiply(tmp, np.float32(alpha), out=tmp)
    if beta != 1.0:
        np.multiply(C, np.float32(beta), out=C)
    np.add(C, tmp, out=C)


@kernel(FAMILY, "a b c:inout", check=_GEMM, simd="gemm", replay=True,
        c="qr_gemm_f32(trans_a:bool, trans_b:bool, m, n, k, alpha:f32, a, b, beta:f32, c)",
        c_when=_NO_OVERLAP, tol=(1e-5, 1e-5),
        examples=[dict(a=(3, 5), b=(5, 4), c=(3, 4)),
                  dict(a=(5, 3), b=(4, 5), c=(3, 4), trans_a=True, trans_b=True, alpha=0.5,
                       beta=0.3),
                  dict(a=(2, 6, 7), b=(9, 7), c=(12, 9), trans_b=True, beta=1.0),
                  dict(a=(4, 0), b=(0, 3), c=(4, 3), beta=0.5)])
def gemm(self, a: Tensor, b: Tensor, c: Tensor, trans_a: bool = False, trans_b: bool = False,
         alpha: float = 1.0, beta: float = 0.0) -> None:
    """C[M,N] = alpha * op(A) @ op(B) + beta * C; A is [M,K] (or [K,M] if trans_a),
    B is [K,N] (or [N,K] if trans_b); tensors of rank > 2 are seen as (rows, cols)."""
    C = self._mw(c)
    A = self._m(a).T if trans_a else self._m(a)
    B = self._m(b).T if trans_b else self._m(b)
    gemm_numpy(self, A, B, C, alpha, beta, "gemm")


# ----------------------------------------------------------------------------- bias
@kernel(FAMILY, "y:inout bias",
        check=Fit({"rows": "y.rows", "n": "y.cols"}, {"bias": "{t}.size == n"},
                  "do not match: bias needs {n} values"), replay=True,
        c="qr_bias_add_f32(y, bias, rows, n)", tol=EXACT,
        examples=[dict(y=(7, 33), bias=(33,))])
def bias_add(self, y: Tensor, bias: Tensor) -> None:
    """y[r, n] += bias[n]; y is (rows, N), bias is (N,)."""
    Y = self._mw(y)
    np.add(Y, bias.a.reshape(-1), out=Y)


@kernel(FAMILY, "x out:inout",
        check=Fit({"rows": "x.rows", "n": "x.cols"}, {"out": "{t}.size == n"},
                  "do not match: out needs {n} values"),
        c="qr_col_sum_f32(x, out, rows, n, beta:f32)", tol=(1e-5, 1e-5),
        examples=[dict(x=(37, 33), out=(33,)), dict(x=(7, 5), out=(5,), beta=0.5)])
def col_sum(self, x: Tensor, out: Tensor, beta: float = 0.0) -> None:
    """out[n] = sum_r x[r, n] + beta * out[n]: the bias gradient."""
    o = out.w.reshape(-1)
    if beta == 0.0:
        np.sum(self._m(x), axis=0, out=o)
        return
    tmp = self.scratch("col_sum", o.shape)
    np.sum(self._m(x), axis=0, out=tmp)
    if beta != 1.0:
        np.multiply(o, np.float32(beta), out=o)
    np.add(o, tmp, out=o)


# ----------------------------------------------------------------------------- embedding
def bad_id(kernel: str, ids: Tensor, vocab: int) -> KernelError | None:
    """The error for a token id outside [0, vocab), or None when every id is inside."""
    if not ids.size:
        return None
    lo, hi = int(ids.a.min()), int(ids.a.max())
    if lo < 0 or hi >= vocab:
        return KernelError(f"{kernel}: token id {lo if lo < 0 else hi} outside [0, {vocab})")
    return None


def check_embedding(kernel: str, ids: Tensor, table: Tensor, rows: Tensor) -> tuple[int, ...]:
    """(n, vocab, dim) of a lookup: ids (n,), table (vocab, dim), rows (n, dim)."""
    vocab = table.shape[0]
    dim = table.size // vocab if vocab else 0
    if rows.size != ids.size * dim or rows.cols != dim:
        names = ("y", "weight") if kernel == "embedding" else ("dy", "dweight")
        raise sizes_error(kernel, f"do not fit: {names[0]} must be ({ids.size}, {dim})",
                          ids=ids, **{names[1]: table, names[0]: rows})
    return ids.size, vocab, dim


def _id_error(kernel: str, rc: int, ids: Tensor, *rest) -> KernelError:
    table = rest[0] if kernel == "embedding" else rest[1]
    return (bad_id(kernel, ids, table.shape[0]) if rc == -2 else None) or c_error(kernel, rc)


@kernel(FAMILY, "ids:i32 weight y:out",
        check=lambda kernel, ids, weight, y: check_embedding(kernel, ids, weight, y),
        dims="n vocab dim", c="qr_embedding_f32(ids, weight, y, n, vocab, dim)",
        on_error=_id_error, replay=True, tol=EXACT,
        examples=[dict(ids=((6,), 0, 10), weight=(10, 8), y=(6, 8))],
        bad=[(r"embedding: token id 1[01] outside \[0, 10\)", dict(ids=((6,), 10, 12))),
             (r"token id -\d outside", dict(ids=((6,), -3, 0)))])
def embedding(self, ids: Tensor, weight: Tensor, y: Tensor) -> None:
    """y[i, :] = weight[ids[i], :]; ids int32 (n,), weight (V, D), y (n, D)."""
    Y = self._mw(y)
    err = bad_id("embedding", ids, weight.shape[0])
    if err:
        raise err
    np.take(weight.a.reshape(weight.shape[0], -1), ids.a.reshape(-1), axis=0,
            out=Y.reshape(ids.size, -1))


@kernel(FAMILY, "ids:i32 dy dweight:inout",
        check=lambda kernel, ids, dy, dweight: check_embedding(kernel, ids, dweight, dy),
        dims="n vocab dim", c="qr_embedding_bwd_f32(ids, dy, dweight, n, vocab, dim)",
        on_error=_id_error, tol=EXACT,
        examples=[dict(ids=((9,), 0, 4), dy=(9, 8), dweight=(4, 8))],
        bad=[(r"embedding_bwd: token id -1 outside \[0, 4\)", dict(ids=((9,), -1, 0)))])
def embedding_bwd(self, ids: Tensor, dy: Tensor, dweight: Tensor) -> None:
    """dweight[ids[i], :] += dy[i, :] (scatter-add; repeated ids accumulate)."""
    dw = dweight.w
    err = bad_id("embedding_bwd", ids, dweight.shape[0])
    if err:
        raise err
    np.add.at(dw.reshape(dweight.shape[0], -1), ids.a.reshape(-1), self._m(dy))
