"""The kernels in NumPy: the fallback when the C library is absent, and the reference it is
tested against.

Every kernel takes planned ``Tensor`` views and writes into them (``out=`` everywhere). Where
NumPy cannot avoid a temporary, a scratch array is taken from a per-shape cache filled on the
first call, so after a warm-up step no kernel allocates. Shapes are in the docstrings; a tensor
of rank > 2 is seen as a matrix ``(rows, cols)`` with ``cols`` its last dimension.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import KernelError
from ..tensor import Tensor
from .numpy_conv import NumpyConvKernels  # conv2d, max/avg pooling, batchnorm2d (+_bwd)
from .numpy_fused import NumpyFusedKernels  # fused: rope, swiglu, *_bcast, softmax_masked, attention
from .numpy_quant import QuantNumpyMixin  # quantized weights: quantize, dequantize, matmul_q
from .numpy_rnn import NumpyRnnKernels  # recurrent cells: rnn/lstm/gru_cell(+_bwd), seq_transpose

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
# erf: threshold, clamp and the two minimax polynomials (constant term first), as in qr_math.h
_ERF_T, _ERF_TMAX = np.float32(0.921875), np.float32(3.92)
_ERF_Q = [np.float32(c) for c in (0.12837915122509003, -0.3761250674724579, 0.11281928420066833,
                                  -0.02677025832235813, 0.0049980334006249905,
                                  -0.0006013533566147089)]
_ERF_P = [np.float32(c) for c in (-0.0002099139674101025, -1.1276154518127441, -0.6372857689857483,
                                  -0.10383890569210052, 0.022181401029229164, -0.003031601198017597,
                                  0.00019473457359708846)]


def check_copy_into(src: Tensor, dst: Tensor, offset: int) -> int:
    """The element count of a copy_into, or KernelError (dtypes, window, overlap)."""
    n = src.size
    if src.dtype != dst.dtype or not 0 <= offset <= dst.size - n:
        raise KernelError(f"copy_into: src {src.shape} {src.dtype} at element {offset} does not "
                          f"fit dst {dst.shape} {dst.dtype}")
    if src.p < dst.p + dst.a.nbytes and dst.p < src.p + src.a.nbytes:
        raise KernelError(f"copy_into: src {src.shape} and dst {dst.shape} overlap")
    return n


class NumpyKernels(QuantNumpyMixin, NumpyFusedKernels, NumpyRnnKernels, NumpyConvKernels):
    """Reference implementation of every Qorus kernel."""

    name = "numpy"

    def __init__(self) -> None:
        self._cache: dict[tuple, np.ndarray] = {}

    def _scratch(self, key: str, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
        k = (key, shape, np.dtype(dtype).str)
        arr = self._cache.get(k)
        if arr is None:
            arr = self._cache[k] = np.empty(shape, dtype=dtype)
        return arr

    def _erf(self, x: np.ndarray, out: np.ndarray) -> None:
        """out = erf(x) in float32 (NumPy has none), max 1.35 ulp: |x| < 0.921875:
        x + x q(x^2); above: 1 - exp(p(t)), t = min(|x|, 3.92), sign of x; both minimax
        polynomials (qr_math.h's qr_erff, the same float32 operations). out may alias x."""
        s = self._scratch("erf_s", x.shape)
        t = self._scratch("erf_t", x.shape)
        p = self._scratch("erf_p", x.shape)
        big = self._scratch("erf_big", x.shape, np.bool_)
        np.abs(x, out=t)
        np.greater_equal(t, _ERF_T, out=big)
        np.minimum(t, _ERF_TMAX, out=t)
        p[...] = _ERF_P[-1]
        for c in _ERF_P[-2::-1]:                   # Horner, no FMA (as the C kernel)
            np.multiply(p, t, out=p)
            np.add(p, c, out=p)
        np.exp(p, out=p)
        np.subtract(np.float32(1.0), p, out=p)
        np.copysign(p, x, out=p)                   # erf(t) >= 0.8 here: the sign of x
        np.multiply(x, x, out=s)
        np.multiply(s, _ERF_Q[-1], out=t)
        for c in _ERF_Q[-2:0:-1]:
            np.add(t, c, out=t)
            np.multiply(t, s, out=t)
        np.add(t, _ERF_Q[0], out=t)
        np.multiply(t, x, out=t)
        np.add(t, x, out=t)                        # small branch (NaN propagates here)
        np.copyto(out, t)
        np.copyto(out, p, where=big)

    @staticmethod
    def _m(t: Tensor) -> np.ndarray:
        return t.a.reshape(t.rows, t.cols)

    # ----------------------------------------------------------------- dense algebra
    def gemm(self, a: Tensor, b: Tensor, c: Tensor, trans_a: bool = False, trans_b: bool = False,
             alpha: float = 1.0, beta: float = 0.0) -> None:
        """C[M,N] = alpha * op(A) @ op(B) + beta * C; A is [M,K] (or [K,M] if trans_a),
        B is [K,N] (or [N,K] if trans_b); tensors of rank > 2 are seen as (rows, cols)."""
        A = self._m(a).T if trans_a else self._m(a)
        B = self._m(b).T if trans_b else self._m(b)
        C = self._m(c)
        if beta == 0.0:
            np.matmul(A, B, out=C)
            if alpha != 1.0:
                np.multiply(C, np.float32(alpha), out=C)
            return
        tmp = self._scratch("gemm", C.shape)
        np.matmul(A, B, out=tmp)
        if alpha != 1.0:
            np.multiply(tmp, np.float32(alpha), out=tmp)
        if beta != 1.0:
            np.multiply(C, np.float32(beta), out=C)
        np.add(C, tmp, out=C)

    def bias_add(self, y: Tensor, bias: Tensor) -> None:
        """y[r, n] += bias[n]; y is (rows, N), bias is (N,)."""
        Y = self._m(y)
        np.add(Y, bias.a, out=Y)

    def col_sum(self, x: Tensor, out: Tensor, beta: float = 0.0) -> None:
        """out[n] = sum_r x[r, n] + beta * out[n]: the bias gradient."""
        if beta == 0.0:
            np.sum(self._m(x), axis=0, out=out.a)
            return
        tmp = self._scratch("col_sum", out.shape)
        np.sum(self._m(x), axis=0, out=tmp)
        if beta != 1.0:
            np.multiply(out.a, np.float32(beta), out=out.a)
        np.add(out.a, tmp, out=out.a)

    # ----------------------------------------------------------------- elementwise
    def fill(self, x: Tensor, value: float) -> None:
        """x[:] = value."""
        x.a.fill(value)

    def copy(self, src: Tensor, dst: Tensor) -> None:
        """dst[:] = src (same size)."""
        np.copyto(dst.a, src.a.reshape(dst.shape))

    def copy_into(self, src: Tensor, dst: Tensor, offset: int) -> None:
        """dst's elements [offset, offset + src.size) = src (flat; a row window of a buffer,
        e.g. the KV-cache rows of new positions). src and dst must not overlap."""
        n = check_copy_into(src, dst, offset)
        dst.a.reshape(-1)[offset:offset + n] = src.a.reshape(-1)

    def add(self, a: Tensor, b: Tensor, out: Tensor) -> None:
        """out = a + b (same size; out may alias a or b)."""
        np.add(a.a, b.a, out=out.a)

    def mul(self, a: Tensor, b: Tensor, out: Tensor) -> None:
        """out = a * b (same size; out may alias a or b)."""
        np.multiply(a.a, b.a, out=out.a)

    def scale(self, x: Tensor, alpha: float) -> None:
        """x *= alpha, in place."""
        np.multiply(x.a, np.float32(alpha), out=x.a)

    def axpy(self, alpha: float, x: Tensor, y: Tensor) -> None:
        """y += alpha * x."""
        tmp = self._scratch("axpy", y.shape)
        np.multiply(x.a, np.float32(alpha), out=tmp)
        np.add(y.a, tmp, out=y.a)

    def sumsq(self, x: Tensor) -> float:
        """sum(x**2): the global gradient norm is the square root of this."""
        flat = x.a.reshape(-1)
        return float(np.dot(flat, flat))

    # ----------------------------------------------------------------- activations
    def relu(self, x: Tensor, y: Tensor) -> None:
        """y = max(x, 0)."""
        np.maximum(x.a, np.float32(0), out=y.a)

    def relu_bwd(self, x: Tensor, dy: Tensor, dx: Tensor) -> None:
        """dx = dy * (x > 0)."""
        mask = self._scratch("relu", x.shape, np.bool_)
        np.greater(x.a, 0, out=mask)
        np.multiply(dy.a, mask, out=dx.a)

    def gelu(self, x: Tensor, y: Tensor, approximate: bool = False) -> None:
        """y = x * Phi(x) (exact, erf) or the tanh approximation."""
        t = self._scratch("gelu", x.shape)
        X = x.a
        if approximate:   # x * sigmoid(2u): 0.5 (1 + tanh u) = 1 / (1 + exp(-2u))
            np.multiply(X, X, out=t)
            np.multiply(t, np.float32(0.044715), out=t)
            np.add(t, np.float32(1.0), out=t)
            np.multiply(t, X, out=t)
            np.multiply(t, np.float32(-2.0 * _SQRT_2_OVER_PI), out=t)
            with np.errstate(over="ignore"):                     # x -> -inf: exp -> inf
                np.exp(t, out=t)
            np.add(t, np.float32(1.0), out=t)
            np.divide(np.float32(1.0), t, out=t)
            np.multiply(X, t, out=y.a)
            return
        np.multiply(X, np.float32(_INV_SQRT2), out=t)
        self._erf(t, t)
        np.add(t, np.float32(1.0), out=t)
        np.multiply(t, np.float32(0.5), out=t)
        np.multiply(X, t, out=y.a)

    def gelu_bwd(self, x: Tensor, dy: Tensor, dx: Tensor, approximate: bool = False) -> None:
        """dx = dy * d/dx gelu(x)."""
        X = x.a
        cdf = self._scratch("gelu_cdf", x.shape)
        pdf = self._scratch("gelu_pdf", x.shape)
        if approximate:   # d/dx x s(2u) = s + x s (1 - s) 2u', s = 1 / (1 + exp(-2u))
            np.multiply(X, X, out=pdf)
            np.multiply(pdf, np.float32(0.044715), out=pdf)          # pdf holds 0.044715 x^2
            np.add(pdf, np.float32(1.0), out=cdf)
            np.multiply(cdf, X, out=cdf)
            np.multiply(cdf, np.float32(-2.0 * _SQRT_2_OVER_PI), out=cdf)
            with np.errstate(over="ignore"):
                np.exp(cdf, out=cdf)
            np.add(cdf, np.float32(1.0), out=cdf)
            np.divide(np.float32(1.0), cdf, out=cdf)                 # cdf holds s
            np.multiply(pdf, np.float32(3.0), out=pdf)
            np.add(pdf, np.float32(1.0), out=pdf)
            np.multiply(pdf, np.float32(2.0 * _SQRT_2_OVER_PI), out=pdf)   # pdf holds 2u'
            u = self._scratch("gelu_u", x.shape)
            np.subtract(np.float32(1.0), cdf, out=u)
            np.multiply(u, cdf, out=u)
            np.multiply(u, pdf, out=u)
            np.multiply(u, X, out=u)
            np.add(cdf, u, out=cdf)
            np.multiply(dy.a, cdf, out=dx.a)
            return
        np.multiply(X, np.float32(_INV_SQRT2), out=cdf)
        self._erf(cdf, cdf)
        np.add(cdf, np.float32(1.0), out=cdf)
        np.multiply(cdf, np.float32(0.5), out=cdf)                 # Phi(x)
        np.multiply(X, X, out=pdf)
        np.multiply(pdf, np.float32(-0.5), out=pdf)
        np.exp(pdf, out=pdf)
        np.multiply(pdf, np.float32(1.0 / math.sqrt(2.0 * math.pi)), out=pdf)  # phi(x)
        np.multiply(pdf, X, out=pdf)
        np.add(cdf, pdf, out=cdf)
        np.multiply(dy.a, cdf, out=dx.a)

    def sigmoid(self, x: Tensor, y: Tensor) -> None:
        """y = 1 / (1 + exp(-x)), stable for large |x|."""
        Y = y.a
        np.negative(x.a, out=Y)
        np.exp(Y, out=Y)
        np.add(Y, np.float32(1.0), out=Y)
        np.reciprocal(Y, out=Y)

    def sigmoid_bwd(self, y: Tensor, dy: Tensor, dx: Tensor) -> None:
        """dx = dy * y * (1 - y)."""
        t = self._scratch("sigmoid", y.shape)
        np.subtract(np.float32(1.0), y.a, out=t)
        np.multiply(t, y.a, out=t)
        np.multiply(dy.a, t, out=dx.a)

    def silu(self, x: Tensor, y: Tensor) -> None:
        """y = x * sigmoid(x)."""
        s = self._scratch("silu", x.shape)
        np.negative(x.a, out=s)
        np.exp(s, out=s)
        np.add(s, np.float32(1.0), out=s)
        np.divide(x.a, s, out=y.a)

    def silu_bwd(self, x: Tensor, dy: Tensor, dx: Tensor) -> None:
        """dx = dy * s * (1 + x * (1 - s)), s = sigmoid(x)."""
        s = self._scratch("silu", x.shape)
        t = self._scratch("silu_t", x.shape)
        np.negative(x.a, out=s)
        np.exp(s, out=s)
        np.add(s, np.float32(1.0), out=s)
        np.reciprocal(s, out=s)
        np.subtract(np.float32(1.0), s, out=t)
        np.multiply(t, x.a, out=t)
        np.add(t, np.float32(1.0), out=t)
        np.multiply(t, s, out=t)
        np.multiply(dy.a, t, out=dx.a)

    def tanh(self, x: Tensor, y: Tensor) -> None:
        """y = tanh(x)."""
        np.tanh(x.a, out=y.a)

    def tanh_bwd(self, y: Tensor, dy: Tensor, dx: Tensor) -> None:
        """dx = dy * (1 - y^2)."""
        t = self._scratch("tanh", y.shape)
        np.multiply(y.a, y.a, out=t)
        np.subtract(np.float32(1.0), t, out=t)
        np.multiply(dy.a, t, out=dx.a)

    # ----------------------------------------------------------------- row-wise
    def softmax(self, x: Tensor, y: Tensor) -> None:
        """y[r, :] = softmax(x[r, :]) over the last dimension."""
        X, Y = self._m(x), self._m(y)
        mx = self._scratch("softmax_r", (x.rows, 1))
        np.max(X, axis=1, keepdims=True, out=mx)
        np.subtract(X, mx, out=Y)
        np.exp(Y, out=Y)
        np.sum(Y, axis=1, keepdims=True, out=mx)
        np.divide(Y, mx, out=Y)

    def softmax_bwd(self, y: Tensor, dy: Tensor, dx: Tensor) -> None:
        """dx = y * (dy - sum(dy * y)) row-wise."""
        Y, DY, DX = self._m(y), self._m(dy), self._m(dx)
        t = self._scratch("softmax_t", Y.shape)
        s = self._scratch("softmax_r", (y.rows, 1))
        np.multiply(DY, Y, out=t)
        np.sum(t, axis=1, keepdims=True, out=s)
        np.subtract(DY, s, out=t)
        np.multiply(t, Y, out=DX)

    def layernorm(self, x: Tensor, gamma: Tensor, beta: Tensor, y: Tensor, mean: Tensor,
                  rstd: Tensor, eps: float) -> None:
        """y = (x - mean) * rstd * gamma + beta per row; saves mean and rstd (rows,)."""
        X, Y = self._m(x), self._m(y)
        mu = mean.a.reshape(-1, 1)
        rs = rstd.a.reshape(-1, 1)
        np.mean(X, axis=1, keepdims=True, out=mu)
        np.subtract(X, mu, out=Y)
        t = self._scratch("ln_t", Y.shape)
        np.multiply(Y, Y, out=t)
        np.mean(t, axis=1, keepdims=True, out=rs)
        np.add(rs, np.float32(eps), out=rs)
        np.sqrt(rs, out=rs)
        np.reciprocal(rs, out=rs)
        np.multiply(Y, rs, out=Y)
        np.multiply(Y, gamma.a, out=Y)
        np.add(Y, beta.a, out=Y)

    def layernorm_bwd(self, x: Tensor, gamma: Tensor, mean: Tensor, rstd: Tensor, dy: Tensor,
                      dx: Tensor | None, dgamma: Tensor, dbeta: Tensor) -> None:
        """LayerNorm backward: dx written (if given); dgamma, dbeta accumulated (+=)."""
        X, DY = self._m(x), self._m(dy)
        mu = mean.a.reshape(-1, 1)
        rs = rstd.a.reshape(-1, 1)
        xhat = self._scratch("ln_xhat", X.shape)
        g = self._scratch("ln_g", X.shape)
        col = self._scratch("ln_col", (x.cols,))
        r = self._scratch("ln_r", (x.rows, 1))
        np.subtract(X, mu, out=xhat)
        np.multiply(xhat, rs, out=xhat)
        np.multiply(DY, xhat, out=g)
        np.sum(g, axis=0, out=col)
        np.add(dgamma.a, col, out=dgamma.a)
        np.sum(DY, axis=0, out=col)
        np.add(dbeta.a, col, out=dbeta.a)
        if dx is None:
            return
        DX = self._m(dx)
        np.multiply(DY, gamma.a, out=g)                     # g = dxhat
        # dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
        np.mean(g, axis=1, keepdims=True, out=r)
        np.subtract(g, r, out=DX)
        np.multiply(g, xhat, out=g)
        np.mean(g, axis=1, keepdims=True, out=r)
        np.multiply(xhat, r, out=xhat)
        np.subtract(DX, xhat, out=DX)
        np.multiply(DX, rs, out=DX)

    def rmsnorm(self, x: Tensor, weight: Tensor, y: Tensor, rstd: Tensor, eps: float) -> None:
        """y = x * rstd * weight per row, rstd = 1/sqrt(mean(x^2) + eps) saved (rows,)."""
        X, Y = self._m(x), self._m(y)
        rs = rstd.a.reshape(-1, 1)
        t = self._scratch("rms_t", X.shape)
        np.multiply(X, X, out=t)
        np.mean(t, axis=1, keepdims=True, out=rs)
        np.add(rs, np.float32(eps), out=rs)
        np.sqrt(rs, out=rs)
        np.reciprocal(rs, out=rs)
        np.multiply(X, rs, out=Y)
        np.multiply(Y, weight.a, out=Y)

    def rmsnorm_bwd(self, x: Tensor, weight: Tensor, rstd: Tensor, dy: Tensor, dx: Tensor | None,
                    dweight: Tensor) -> None:
        """RMSNorm backward: dx written (if given); dweight accumulated (+=)."""
        X, DY = self._m(x), self._m(dy)
        rs = rstd.a.reshape(-1, 1)
        xhat = self._scratch("rms_xhat", X.shape)
        g = self._scratch("rms_g", X.shape)
        col = self._scratch("rms_col", (x.cols,))
        r = self._scratch("rms_r", (x.rows, 1))
        np.multiply(X, rs, out=xhat)
        np.multiply(DY, xhat, out=g)
        np.sum(g, axis=0, out=col)
        np.add(dweight.a, col, out=dweight.a)
        if dx is None:
            return
        DX = self._m(dx)
        np.multiply(DY, weight.a, out=g)                    # g = d xhat
        np.multiply(g, xhat, out=DX)
        np.mean(DX, axis=1, keepdims=True, out=r)
        np.multiply(xhat, r, out=xhat)
        np.subtract(g, xhat, out=DX)
        np.multiply(DX, rs, out=DX)

    def _check_ids(self, ids: Tensor, vocab: int, kernel: str) -> None:
        lo, hi = int(ids.a.min()), int(ids.a.max())
        if lo < 0 or hi >= vocab:
            raise KernelError(f"{kernel}: token id {lo if lo < 0 else hi} outside [0, {vocab})")

    def embedding(self, ids: Tensor, weight: Tensor, y: Tensor) -> None:
        """y[i, :] = weight[ids[i], :]; ids int32 (n,), weight (V, D), y (n, D)."""
        self._check_ids(ids, weight.shape[0], "embedding")
        np.take(weight.a, ids.a.reshape(-1), axis=0, out=self._m(y))

    def embedding_bwd(self, ids: Tensor, dy: Tensor, dweight: Tensor) -> None:
        """dweight[ids[i], :] += dy[i, :] (scatter-add; repeated ids accumulate)."""
        self._check_ids(ids, dweight.shape[0], "embedding_bwd")
        np.add.at(dweight.a, ids.a.reshape(-1), self._m(dy))

    # ----------------------------------------------------------------- randomness
    def dropout_mask(self, mask: Tensor, p: float, seed: int) -> None:
        """mask[i] = 1/(1-p) if u(seed, i) >= p else 0, u a counter-based uniform in [0, 1).

        u comes from the lowbias32 hash of (i * 0x9E3779B1 + seed), top 24 bits: the same
        stream as the C kernel, so a run is identical on both kernel sets.
        """
        n = mask.size
        idx = self._scratch("drop_idx", (n,), np.uint32)
        h = self._scratch("drop_h", (n,), np.uint32)
        t = self._scratch("drop_t", (n,), np.uint32)
        if self._cache.get(("drop_idx_ok", n)) is None:
            idx[:] = np.arange(n, dtype=np.uint32)
            self._cache[("drop_idx_ok", n)] = idx
        with np.errstate(over="ignore"):
            np.multiply(idx, np.uint32(0x9E3779B1), out=h)
            np.add(h, np.uint32(seed & 0xFFFFFFFF), out=h)
            np.right_shift(h, np.uint32(16), out=t)
            np.bitwise_xor(h, t, out=h)
            np.multiply(h, np.uint32(0x7FEB352D), out=h)
            np.right_shift(h, np.uint32(15), out=t)
            np.bitwise_xor(h, t, out=h)
            np.multiply(h, np.uint32(0x846CA68B), out=h)
            np.right_shift(h, np.uint32(16), out=t)
            np.bitwise_xor(h, t, out=h)
        np.right_shift(h, np.uint32(8), out=h)
        threshold = np.uint32(min(int(math.ceil(p * (1 << 24))), 1 << 24))
        m = mask.a.reshape(-1)
        np.greater_equal(h, threshold, out=m, casting="unsafe")
        np.multiply(m, np.float32(1.0 / (1.0 - p)) if p < 1.0 else np.float32(0.0), out=m)

    # ----------------------------------------------------------------- losses
    def _row_index(self, targets: Tensor, n: int, c: int) -> np.ndarray:
        """Flat indices r * c + targets[r] into an (n, c) matrix, in a cached array."""
        fidx = self._scratch("ce_fidx", (n,), np.intp)
        base = self._cache.get(("ce_base", n, c))
        if base is None:
            base = self._cache[("ce_base", n, c)] = np.arange(n, dtype=np.intp) * c
        np.add(base, targets.a.reshape(-1), out=fidx)
        return fidx

    def cross_entropy(self, logits: Tensor, targets: Tensor, dlogits: Tensor | None,
                      label_smoothing: float = 0.0) -> float:
        """Mean cross-entropy of logits (N, C) against class indices (N,) int32, with PyTorch's
        label smoothing; writes dlogits = (softmax - smoothed one-hot) / N when given."""
        X = self._m(logits)
        n, c = X.shape
        tg = targets.a.reshape(-1)
        if tg.size != n:
            raise KernelError(f"cross_entropy: {tg.size} targets for {n} rows of logits")
        if int(tg.min()) < 0 or int(tg.max()) >= c:
            raise KernelError(f"cross_entropy: target class out of range [0, {c})")
        mx = self._scratch("ce_mx", (n, 1))
        lse = self._scratch("ce_lse", (n, 1))
        sh = self._scratch("ce_sh", X.shape)
        e = self._m(dlogits) if dlogits is not None else self._scratch("ce_e", X.shape)
        np.max(X, axis=1, keepdims=True, out=mx)
        np.subtract(X, mx, out=sh)                            # shifted logits
        np.exp(sh, out=e)
        np.sum(e, axis=1, keepdims=True, out=lse)
        if dlogits is not None:
            np.divide(e, lse, out=e)                          # softmax
        np.log(lse, out=lse)                                  # log-sum-exp of shifted logits
        fidx = self._row_index(targets, n, c)
        picked = self._scratch("ce_picked", (n,))
        np.take(sh.reshape(-1), fidx, out=picked)
        sum_lse = float(lse.sum())
        eps = float(label_smoothing)
        loss = (1.0 - eps) * (sum_lse - float(picked.sum()))
        if eps:
            loss += eps * (c * sum_lse - float(sh.sum())) / c
        loss /= n
        if dlogits is not None:
            if eps:
                np.subtract(e, np.float32(eps / c), out=e)
            flat = e.reshape(-1)
            np.take(flat, fidx, out=picked)
            np.subtract(picked, np.float32(1.0 - eps), out=picked)
            np.put(flat, fidx, picked)
            np.multiply(e, np.float32(1.0 / n), out=e)
        return loss

    def mse(self, pred: Tensor, target: Tensor, dpred: Tensor | None) -> float:
        """Mean squared error over all elements; writes dpred = 2 (pred - target) / n."""
        d = self._scratch("mse", pred.shape) if dpred is None else dpred.a
        np.subtract(pred.a, target.a.reshape(pred.shape), out=d)
        flat = d.reshape(-1)
        loss = float(np.dot(flat, flat)) / pred.size
        if dpred is not None:
            np.multiply(d, np.float32(2.0 / pred.size), out=d)
        return loss

    def count_correct(self, logits: Tensor, targets: Tensor) -> int:
        """How many rows have their argmax equal to the target (first maximum wins)."""
        am = self._scratch("argmax", (logits.rows,), np.intp)
        np.argmax(self._m(logits), axis=1, out=am)
        eq = self._scratch("argmax_eq", (logits.rows,), np.bool_)
        np.equal(am, targets.a.reshape(-1), out=eq)
        return int(np.count_nonzero(eq))

    # ----------------------------------------------------------------- optimizers
    def sgd_step(self, p: Tensor, g: Tensor, buf: Tensor, lr: float, momentum: float,
                 dampening: float, weight_decay: float, nesterov: bool, first: bool) -> None:
        """torch.optim.SGD over a flat buffer: buf is the momentum buffer (same size as p)."""
        d = self._scratch("sgd_d", p.shape)
        t = self._scratch("sgd_t", p.shape)
        np.copyto(d, g.a)
        if weight_decay:
            np.multiply(p.a, np.float32(weight_decay), out=t)
            np.add(d, t, out=d)
        if momentum:
            B = buf.a
            if first:
                np.copyto(B, d)
            else:
                np.multiply(B, np.float32(momentum), out=B)
                np.multiply(d, np.float32(1.0 - dampening), out=t)
                np.add(B, t, out=B)
            if nesterov:
                np.multiply(B, np.float32(momentum), out=t)
                np.add(d, t, out=d)
            else:
                np.copyto(d, B)
        np.multiply(d, np.float32(lr), out=d)
        np.subtract(p.a, d, out=p.a)

    def adam_step(self, p: Tensor, g: Tensor, m: Tensor, v: Tensor, lr: float, beta1: float,
                  beta2: float, eps: float, weight_decay: float, step: int, decoupled: bool) -> None:
        """torch.optim.Adam (decoupled=False, L2 in the gradient) or AdamW (decoupled=True)
        over flat buffers; step counts from 1."""
        P, G, M, V = p.a, g.a, m.a, v.a
        t = self._scratch("adam_t", P.shape)
        d = self._scratch("adam_d", P.shape)
        if decoupled:
            if weight_decay:
                np.multiply(P, np.float32(1.0 - lr * weight_decay), out=P)
            gg = G
        else:
            gg = d
            np.copyto(d, G)
            if weight_decay:
                np.multiply(P, np.float32(weight_decay), out=t)
                np.add(d, t, out=d)
        # m = b1 m + (1-b1) g ; v = b2 v + (1-b2) g^2  (torch's lerp_ / addcmul_ order)
        np.subtract(gg, M, out=t)
        np.multiply(t, np.float32(1.0 - beta1), out=t)
        np.add(M, t, out=M)
        np.multiply(V, np.float32(beta2), out=V)
        np.multiply(gg, gg, out=t)
        np.multiply(t, np.float32(1.0 - beta2), out=t)
        np.add(V, t, out=V)
        bc1 = 1.0 - beta1 ** step
        bc2 = 1.0 - beta2 ** step
        step_size = lr / bc1
        np.sqrt(V, out=t)
        np.divide(t, np.float32(math.sqrt(bc2)), out=t)
        np.add(t, np.float32(eps), out=t)
        np.divide(M, t, out=t)
        np.multiply(t, np.float32(step_size), out=t)
        np.subtract(P, t, out=P)
