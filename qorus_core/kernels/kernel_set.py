"""``KernelSet``: the methods both kernel sets have, typed (generated: do not edit).

Rendered from the kernel table by ``python -m qorus_core.kernels.decl.typed`` (decl/typed.py);
tests/test_kernel_table.py checks it is current. The sets make these methods at import
(decl/gen.py), so this is what editors and type checkers see of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from ..tensor import Tensor
from .numpy_quant import QWeight

__all__ = ["KernelSet"]

Pair = tuple[int, int]


class KernelSet(Protocol):
    """What ``get_kernels`` returns (``NumpyKernels`` or ``CKernels``): every kernel of the
    table, the weight dispatchers and the NumPy code's scratch arrays."""

    name: str

    def relu(self, x: Tensor, y: Tensor) -> None:
        """y = max(x, 0)."""

    def relu_bwd(self, x: Tensor, dy: Tensor, dx: Tensor) -> None:
        """dx = dy * (x > 0)."""

    def gelu(self, x: Tensor, y: Tensor, approximate: bool = False) -> None:
        """y = x * Phi(x) (exact, erf) or the tanh approximation."""

    def gelu_bwd(self, x: Tensor, dy: Tensor, dx: Tensor, approximate: bool = False) -> None:
        """dx = dy * d/dx gelu(x)."""

    def sigmoid(self, x: Tensor, y: Tensor) -> None:
        """y = 1 / (1 + exp(-x)), stable for large |x|."""

    def sigmoid_bwd(self, y: Tensor, dy: Tensor, dx: Tensor) -> None:
        """dx = dy * y * (1 - y)."""

    def silu(self, x: Tensor, y: Tensor) -> None:
        """y = x * sigmoid(x)."""

    def silu_bwd(self, x: Tensor, dy: Tensor, dx: Tensor) -> None:
        """dx = dy * s * (1 + x * (1 - s)), s = sigmoid(x)."""

    def tanh(self, x: Tensor, y: Tensor) -> None:
        """y = tanh(x)."""

    def tanh_bwd(self, y: Tensor, dy: Tensor, dx: Tensor) -> None:
        """dx = dy * (1 - y^2)."""

    def leaky_relu(self, x: Tensor, y: Tensor, negative_slope: float = 0.01) -> None:
        """y = x > 0 ? x : x * negative_slope."""

    def leaky_relu_bwd(
        self, x: Tensor, dy: Tensor, dx: Tensor, negative_slope: float = 0.01,
    ) -> None:
        """dx = x > 0 ? dy : dy * negative_slope."""

    def elu(self, x: Tensor, y: Tensor, alpha: float = 1.0) -> None:
        """y = x < 0 ? alpha * expm1(x) : x."""

    def elu_bwd(self, x: Tensor, dy: Tensor, dx: Tensor, alpha: float = 1.0) -> None:
        """dx = x <= 0 ? dy * alpha * exp(x) : dy."""

    def hardswish(self, x: Tensor, y: Tensor) -> None:
        """y = x * min(max(x + 3, 0), 6) / 6."""

    def hardswish_bwd(self, x: Tensor, dy: Tensor, dx: Tensor) -> None:
        """dx = x <= -3 ? 0 : x < 3 ? dy * (x / 3 + 0.5) : dy."""

    def softplus(self, x: Tensor, y: Tensor, beta: float = 1.0, threshold: float = 20.0) -> None:
        """y = beta x > threshold ? x : log(1 + exp(beta x)) / beta."""

    def softplus_bwd(
        self, x: Tensor, dy: Tensor, dx: Tensor, beta: float = 1.0, threshold: float = 20.0,
    ) -> None:
        """dx = beta x > threshold ? dy : dy * e / (e + 1), e = exp(beta x)."""

    def mish(self, x: Tensor, y: Tensor) -> None:
        """y = x * tanh(softplus(x)) = x * n / (n + 2), n = e (e + 2), e = exp(min(x, 20))."""

    def mish_bwd(self, x: Tensor, dy: Tensor, dx: Tensor) -> None:
        """dx = dy * (t + xc * 4 e (e + 1) / d^2), t = n / d, d = n + 2, xc = min(x, 20)
        (= dy * (t + x sigmoid(x) (1 - t^2)), t = tanh(softplus(x))).
        """

    def fill(self, x: Tensor, value: float) -> None:
        """x[:] = value."""

    def copy(self, src: Tensor, dst: Tensor) -> None:
        """dst[:] = src (same size)."""

    def copy_into(self, src: Tensor, dst: Tensor, offset: int) -> None:
        """dst's elements [offset, offset + src.size) = src (flat; a row window of a buffer,
        e.g. the KV-cache rows of new positions). src and dst must not overlap.
        """

    def add(self, a: Tensor, b: Tensor, out: Tensor) -> None:
        """out = a + b (same size; out may alias a or b)."""

    def mul(self, a: Tensor, b: Tensor, out: Tensor) -> None:
        """out = a * b (same size; out may alias a or b)."""

    def scale(self, x: Tensor, alpha: float) -> None:
        """x *= alpha, in place."""

    def axpy(self, alpha: float, x: Tensor, y: Tensor) -> None:
        """y += alpha * x."""

    def sumsq(self, x: Tensor) -> float:
        """sum(x**2): the global gradient norm is the square root of this."""

    def dropout_mask(self, mask: Tensor, p: float, seed: int) -> None:
        """mask[i] = 1/(1-p) if u(seed, i) >= p else 0, u a counter-based uniform in [0, 1).

        u comes from the lowbias32 hash of (i * 0x9E3779B1 + seed), top 24 bits: the same
        stream as the C kernel, so a run is identical on both kernel sets.
        """

    def sub(self, a: Tensor, b: Tensor, out: Tensor) -> None:
        """out = a - b (same size; out may alias a or b)."""

    def sub_bwd(self, dy: Tensor, da: Tensor | None, db: Tensor | None) -> None:
        """da = dy, db = -dy (either None: not wanted)."""

    def div(self, a: Tensor, b: Tensor, out: Tensor) -> None:
        """out = a / b (IEEE: x / 0 is +-inf, 0 / 0 NaN; out may alias a or b)."""

    def div_bwd(
        self, a: Tensor, b: Tensor, dy: Tensor, da: Tensor | None, db: Tensor | None,
    ) -> None:
        """da = dy / b, db = -(dy / b * a) / b (either None: not wanted)."""

    def maximum(self, a: Tensor, b: Tensor, out: Tensor) -> None:
        """out = max(a, b) as NumPy's (NaN wins; out may alias a or b)."""

    def maximum_bwd(
        self, a: Tensor, b: Tensor, dy: Tensor, da: Tensor | None, db: Tensor | None,
    ) -> None:
        """da = dy where a > b, db = dy where b > a; a tie gives dy / 2 to each (PyTorch's)."""

    def minimum(self, a: Tensor, b: Tensor, out: Tensor) -> None:
        """out = min(a, b) as NumPy's (NaN wins; out may alias a or b)."""

    def minimum_bwd(
        self, a: Tensor, b: Tensor, dy: Tensor, da: Tensor | None, db: Tensor | None,
    ) -> None:
        """da = dy where a < b, db = dy where b < a; a tie gives dy / 2 to each (PyTorch's)."""

    def where(self, cond: Tensor, a: Tensor, b: Tensor, out: Tensor) -> None:
        """out = a where cond != 0 (NaN counts as nonzero), else b; cond a float32 mask; out may
        alias a or b.
        """

    def where_bwd(self, cond: Tensor, dy: Tensor, da: Tensor | None, db: Tensor | None) -> None:
        """da = dy where cond != 0, else 0; db = dy where cond == 0, else 0 (dy * mask: a NaN dy
        stays NaN in both).
        """

    def exp(self, x: Tensor, y: Tensor) -> None:
        """y = exp(x) (~1 ulp; overflows to inf above ~88.7)."""

    def exp_bwd(self, y: Tensor, dy: Tensor, dx: Tensor) -> None:
        """dx = dy * y, y = exp(x) (the forward's output)."""

    def log(self, x: Tensor, y: Tensor) -> None:
        """y = log(x) (~1 ulp; log 0 = -inf, log of a negative = NaN)."""

    def log_bwd(self, x: Tensor, dy: Tensor, dx: Tensor) -> None:
        """dx = dy / x."""

    def sqrt(self, x: Tensor, y: Tensor) -> None:
        """y = sqrt(x), correctly rounded (NaN for x < 0)."""

    def sqrt_bwd(self, y: Tensor, dy: Tensor, dx: Tensor) -> None:
        """dx = dy / (2 y), y = sqrt(x) (the forward's output)."""

    def abs(self, x: Tensor, y: Tensor) -> None:
        """y = |x|."""

    def abs_bwd(self, x: Tensor, dy: Tensor, dx: Tensor) -> None:
        """dx = dy * sign(x), sign(0) = 0 (PyTorch's subgradient)."""

    def neg(self, x: Tensor, y: Tensor) -> None:
        """y = -x."""

    def neg_bwd(self, dy: Tensor, dx: Tensor) -> None:
        """dx = -dy."""

    def rope(
        self, x: Tensor, y: Tensor, pos_offset: int = 0, theta: float = 10000.0,
        half_split: bool = False,
    ) -> None:
        """Rotary embedding of x [B, T, H, D] into y (may alias x); see the module docs."""

    def rope_bwd(
        self, dy: Tensor, dx: Tensor, pos_offset: int = 0, theta: float = 10000.0,
        half_split: bool = False,
    ) -> None:
        """dx = the inverse rotation of dy (dx may alias dy)."""

    def swiglu(self, gate: Tensor, up: Tensor, y: Tensor) -> None:
        """y = silu(gate) * up, silu(g) = g / (exp(-g) + 1)."""

    def swiglu_bwd(self, gate: Tensor, up: Tensor, dy: Tensor, dgate: Tensor, dup: Tensor) -> None:
        """dgate = dy * up * sg * (1 + g (1 - sg)) with sg = sigmoid(g); dup = dy * silu(g)."""

    def add_bcast(self, x: Tensor, b: Tensor, y: Tensor) -> None:
        """y[..., N] = x + b[N] (y may alias x)."""

    def add_bcast_bwd(self, dy: Tensor, dx: Tensor | None, db: Tensor) -> None:
        """dx = dy (None: not written); db[N] += sum over rows of dy."""

    def mul_bcast(self, x: Tensor, w: Tensor, y: Tensor) -> None:
        """y[..., N] = x * w[N] (y may alias x)."""

    def mul_bcast_bwd(
        self, x: Tensor, w: Tensor, dy: Tensor, dx: Tensor | None, dw: Tensor,
    ) -> None:
        """dx = dy * w (None: not written; may alias dy); dw[N] += sum over rows of dy * x."""

    def softmax_masked(
        self, x: Tensor, y: Tensor, scale: float = 1.0, causal: bool = False,
    ) -> None:
        """y = softmax(scale * x) over the last dim of [..., Tq, Tk], causal: key j > i + Tk - Tq
        masked (probability 0).
        """

    def softmax_masked_bwd(
        self, y: Tensor, dy: Tensor, dx: Tensor, scale: float = 1.0, causal: bool = False,
    ) -> None:
        """dx = scale * y * (dy - sum(dy * y)) per row; 0 where masked."""

    def attention(
        self, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
        scale: float | None = None, n_heads: int = 1, n_kv_heads: int = 1, causal: bool = True,
    ) -> None:
        """out = softmax(scale q k^T, causal mask) v per head (GQA); lse [B, H, Tq] saved.
        scale None: 1 / sqrt(D).
        """

    def attention_bwd(
        self, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, dout: Tensor,
        dq: Tensor, dk: Tensor, dv: Tensor, scale: float | None = None, n_heads: int = 1,
        n_kv_heads: int = 1, causal: bool = True,
    ) -> None:
        """dq, dk, dv (written) of attention, from the saved lse; dk/dv summed over the query
        heads of each kv head.
        """

    def attention_decode(
        self, q: Tensor, k_cache: Tensor, v_cache: Tensor, out: Tensor, n_ctx: int,
        scale: float | None = None, n_heads: int = 1, n_kv_heads: int = 1,
    ) -> None:
        """One new token: q, out [B, H, D] attend to cache positions [0, n_ctx) of k_cache,
        v_cache [B, max_ctx, Hkv, D] (the token's own k/v already at n_ctx - 1).
        """

    def attention_masked(
        self, q: Tensor, k: Tensor, v: Tensor, kpm: Tensor | None, bias: Tensor | None,
        out: Tensor, lse: Tensor, scale: float | None = None, n_heads: int = 1,
        n_kv_heads: int = 1, causal: bool = False, dropout_p: float = 0.0, seed: int = 0,
    ) -> None:
        """out = dropout(softmax(scale q k^T + bias, keys masked by causal and kpm)) v per head
        (GQA); lse [B, H, Tq] saved. scale None: 1 / sqrt(D).
        """

    def attention_masked_bwd(
        self, q: Tensor, k: Tensor, v: Tensor, kpm: Tensor | None, bias: Tensor | None,
        out: Tensor, lse: Tensor, dout: Tensor, dq: Tensor, dk: Tensor, dv: Tensor,
        scale: float | None = None, n_heads: int = 1, n_kv_heads: int = 1, causal: bool = False,
        dropout_p: float = 0.0, seed: int = 0,
    ) -> None:
        """dq, dk, dv (written) of attention_masked, from the saved lse; dk/dv summed over the
        query heads of each kv head. The bias gets no gradient.
        """

    def conv2d(
        self, x: Tensor, w: Tensor, bias: Tensor | None, y: Tensor, stride: Pair = (1, 1),
        padding: Pair = (0, 0), dilation: Pair = (1, 1), groups: int = 1,
    ) -> None:
        """y[B,K,Ho,Wo] = conv(x[B,C,H,W], w[K,C/G,R,S]) + bias[K] (None: no bias), PyTorch's
        Conv2d: zero padding, Ho = (H + 2 ph - dh (R - 1) - 1) // sh + 1.
        """

    def conv2d_bwd(
        self, x: Tensor, w: Tensor, dy: Tensor, dx: Tensor | None, dw: Tensor, db: Tensor | None,
        stride: Pair = (1, 1), padding: Pair = (0, 0), dilation: Pair = (1, 1), groups: int = 1,
    ) -> None:
        """Conv2d backward: dx[B,C,H,W] written (None: not wanted); dw[K,C/G,R,S] and db[K]
        (None: no bias) accumulated (+=) from dy[B,K,Ho,Wo].
        """

    def maxpool2d(
        self, x: Tensor, y: Tensor, argmax: Tensor, kernel: Pair, stride: Pair,
        padding: Pair = (0, 0), dilation: Pair = (1, 1), ceil_mode: bool = False,
    ) -> None:
        """y[B,C,Ho,Wo] = max of each R x S window (dilated by ``dilation``) of x[B,C,H,W]
        (padding never wins); argmax[B,C,Ho,Wo] int32 = h * W + w of the first maximum in the
        plane, as PyTorch (a NaN wins; the last NaN of the window). Padding at most half the
        kernel; ``ceil_mode``: PyTorch's ceiling rule for Ho, Wo (``pool_out``).
        """

    def maxpool2d_bwd(self, dy: Tensor, argmax: Tensor, dx: Tensor) -> None:
        """dx[B,C,H,W] = 0, then dx[b, c, argmax] += dy[b, c] (argmax from ``maxpool2d``)."""

    def avgpool2d(
        self, x: Tensor, y: Tensor, kernel: Pair, stride: Pair, padding: Pair = (0, 0),
        ceil_mode: bool = False, count_include_pad: bool = True,
    ) -> None:
        """y[B,C,Ho,Wo] = mean of each R x S window of x[B,C,H,W]; the divisor PyTorch's: the
        window clipped to the padded input (``count_include_pad``) or its input positions only;
        ``ceil_mode`` as ``maxpool2d``. y may be [B,C] when Ho = Wo = 1.
        """

    def avgpool2d_bwd(
        self, dy: Tensor, dx: Tensor, kernel: Pair, stride: Pair, padding: Pair = (0, 0),
        ceil_mode: bool = False, count_include_pad: bool = True,
    ) -> None:
        """dx[B,C,H,W] = sum over the windows holding each input of dy / the window's divisor
        (``avgpool2d``'s arguments).
        """

    def batchnorm2d(
        self, x: Tensor, weight: Tensor | None, bias: Tensor | None, y: Tensor, mean: Tensor,
        rstd: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
        eps: float = 1e-05, momentum: float = 0.1, train: bool = True,
    ) -> None:
        """BatchNorm over x[B,C,*] per channel: y = (x - mean) * rstd * weight[C] + bias[C]
        (weight, bias None: 1 and 0, PyTorch's affine=False; x [B,C] has one value a channel).
        train: mean[C], rstd[C] = 1/sqrt(var + eps) of the batch (biased var over B and the
        spatial dims) are saved and running_mean/var[C] (None: not kept) updated as PyTorch
        (r = (1 - momentum) r + momentum * stat, the variance unbiased). Eval: the running
        statistics are used (and written to mean/rstd).
        """

    def batchnorm2d_bwd(
        self, x: Tensor, weight: Tensor | None, mean: Tensor, rstd: Tensor, dy: Tensor,
        dx: Tensor | None, dweight: Tensor | None, dbias: Tensor | None,
    ) -> None:
        """Backward of the batch-statistics BatchNorm: dx (None: not wanted) = w rstd (dy
        - mean(dy) - xhat mean(dy xhat)) per channel, xhat = (x - mean) rstd; dweight[C] +=
        sum dy xhat, dbias[C] += sum dy (sums over B and the spatial dims); weight None: 1, and
        dweight, dbias None: not kept (affine=False).
        """

    def conv_transpose2d(
        self, x: Tensor, w: Tensor, bias: Tensor | None, y: Tensor, stride: Pair = (1, 1),
        padding: Pair = (0, 0), dilation: Pair = (1, 1), groups: int = 1,
    ) -> None:
        """y[B,Cout,Ho,Wo] = conv_transpose(x[B,Cin,H,W], w[Cin,Cout/G,R,S]) + bias[Cout] (None:
        no bias), PyTorch's ConvTranspose2d: Ho = (H - 1) sh - 2 ph + dh (R - 1) + 1 +
        output_padding, the output padding (in [0, sh)) read from y's shape.
        """

    def conv_transpose2d_bwd(
        self, x: Tensor, w: Tensor, dy: Tensor, dx: Tensor | None, dw: Tensor, db: Tensor | None,
        stride: Pair = (1, 1), padding: Pair = (0, 0), dilation: Pair = (1, 1), groups: int = 1,
    ) -> None:
        """ConvTranspose2d backward from dy[B,Cout,Ho,Wo]: dx[B,Cin,H,W] = conv2d(dy, w) written
        (None: not wanted); dw[Cin,Cout/G,R,S] += the sum over images of x @ im2col(dy)^T and
        db[Cout] (None: no bias) += the sums of dy over batch and plane.
        """

    def gemm(
        self, a: Tensor, b: Tensor, c: Tensor, trans_a: bool = False, trans_b: bool = False,
        alpha: float = 1.0, beta: float = 0.0,
    ) -> None:
        """C[M,N] = alpha * op(A) @ op(B) + beta * C; A is [M,K] (or [K,M] if trans_a),
        B is [K,N] (or [N,K] if trans_b); tensors of rank > 2 are seen as (rows, cols).
        """

    def bias_add(self, y: Tensor, bias: Tensor) -> None:
        """y[r, n] += bias[n]; y is (rows, N), bias is (N,)."""

    def col_sum(self, x: Tensor, out: Tensor, beta: float = 0.0) -> None:
        """out[n] = sum_r x[r, n] + beta * out[n]: the bias gradient."""

    def embedding(self, ids: Tensor, weight: Tensor, y: Tensor) -> None:
        """y[i, :] = weight[ids[i], :]; ids int32 (n,), weight (V, D), y (n, D)."""

    def embedding_bwd(self, ids: Tensor, dy: Tensor, dweight: Tensor) -> None:
        """dweight[ids[i], :] += dy[i, :] (scatter-add; repeated ids accumulate)."""

    def quantize(self, x: Tensor, out, qtype) -> None:
        """out (uint8 bytes, or a QWeight) = x [rows, k] quantized row by row to qtype
        (q8_0, q4_0, q4_1, q5_0, q5_1, f16, bf16: the formats the ``gguf`` package writes),
        bit-exact with ggml's reference quantizers.
        """

    def dequantize(self, w: QWeight, y: Tensor) -> None:
        """y [n, k] (any shape of n * k float32) = the values of the quantized weight w,
        bit-exact with the ``gguf`` package's dequantizers.
        """

    def embedding_q(self, ids: Tensor, w: QWeight, y: Tensor) -> None:
        """y[i, :] = dequantize(w[ids[i], :]) for a quantized table w [vocab, k]."""

    def matmul_qf(self, x: Tensor, w: QWeight, y: Tensor) -> None:
        """y [M, N] = x [M, K] @ dequantize(W)^T in float32: panels of 128 weight rows are
        dequantized into a scratch buffer (made once per shape) and multiplied by ``gemm``.
        """

    def matmul_q(self, x: Tensor, w: QWeight, y: Tensor) -> None:
        """y [M, N] = x [M, K] @ W^T for a quantized weight W [N, K] (a QWeight).
        x is quantized to 8-bit blocks of 32 per row and each block pair's integer dot product
        (the weight's sub-block scales folded in) is scaled by D_w * d_x, less the block's offsets
        times x's block (the formats with offsets), and summed in float32, as ggml does; F16 and
        BF16 weights multiply x in float32. Rank > 2 tensors are seen as (rows, cols).
        """

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
        weights: matmul_qf).
        """

    def linears_qp(self, x: Tensor, ws: Sequence, ys: Sequence[Tensor]) -> None:
        """``matmul_qp(x, ws[i], ys[i])`` for each block-format weight: the projections of one
        input in a prompt (q/k/v, gate/up). The C set quantizes x once and runs up to three
        weights a call (of any block formats) in one parallel region over their tiles; the
        results are the same bits.
        """

    def linears(self, x: Tensor, ws: Sequence, ys: Sequence[Tensor]) -> None:
        """``linear(x, ws[i], ys[i])`` for each weight (a Tensor [N, K] or a QWeight):
        projections of one input (q/k/v, gate/up). The C set runs a decode row (one row, up to
        three QWeights) as one call: x quantized once, one parallel region over all the rows;
        and a prompt's rows whose weights are all of the INT8_PROMPT formats as ``linears_qp``;
        the results are the same.
        """

    def rope_rows(
        self, x: Tensor, y: Tensor, pos: Tensor, theta: float = 10000.0,
        half_split: bool = False,
    ) -> None:
        """``rope`` of each row b of x [B, T, H, D] at positions pos[b] + t (pos int32 [B]):
        row b gets exactly what ``rope(x[b], pos_offset=pos[b])`` gives it. y may alias x.
        """

    def kv_store_rows(self, src: Tensor, cache: Tensor, slot: Tensor, pos: Tensor) -> None:
        """cache[slot[b], pos[b] + t] = src[b, t] for src [B, T, W...] and cache [S, L, W...]:
        each row's new keys (or values) at its own position of its own cache slot.
        """

    def attention_decode_rows(
        self, q: Tensor, k_cache: Tensor, v_cache: Tensor, out: Tensor, slot: Tensor,
        pos: Tensor, scale: float | None = None, n_heads: int = 1, n_kv_heads: int = 1,
    ) -> None:
        """One new token a row: q, out [B, H, D]; row b attends to positions [0, pos[b]] of cache
        slot slot[b] of k_cache, v_cache [S, L, Hkv, D] (its own k/v already stored at pos[b]),
        exactly as ``attention_decode`` of that slot with n_ctx = pos[b] + 1 computes it.
        """

    def matmul_rows(self, x: Tensor, w, y: Tensor) -> None:
        """y [M, N] = x [M, K] @ W^T for a quantized W [N, K], each row exactly as ``matmul_q``
        computes it for that row alone (8-bit activations: a decode step's arithmetic), the
        weight read once for all M rows: the products of a batched decode step.
        """

    def linears_rows(self, x: Tensor, ws: Sequence, ys: Sequence[Tensor]) -> None:
        """``matmul_rows(x, ws[i], ys[i])`` for each quantized weight: the projections of one
        input in a batched decode step (q/k/v, gate/up), each row exactly as ``matmul_q`` gives it
        alone. The C set quantizes x once and runs the weights of one format (up to three in a
        row) in one call, one parallel region over all their rows; the results are the same.
        """

    def glu(self, x: Tensor, y: Tensor) -> None:
        """y[r, :] = a * sigmoid(b), [a | b] = x[r, :] split in halves."""

    def glu_bwd(self, x: Tensor, dy: Tensor, dx: Tensor) -> None:
        """dx[r, :] = [s * dy | (1 - s) * s * a * dy], s = sigmoid(b) (PyTorch's order)."""

    def groupnorm(
        self, x: Tensor, weight: Tensor | None, bias: Tensor | None, y: Tensor, mean: Tensor,
        rstd: Tensor, num_groups: int, eps: float = 1e-05,
    ) -> None:
        """GroupNorm of x[B,C,*]: per image b and group g (channels g C/G .. (g+1) C/G), mean[b,g]
        and rstd[b,g] = 1/sqrt(var + eps) of its C/G * HW values (biased variance) are saved, and
        y = (x - mean) * rstd * weight[c] + bias[c] (weight, bias None: 1 and 0, affine=False).
        """

    def groupnorm_bwd(
        self, x: Tensor, weight: Tensor | None, mean: Tensor, rstd: Tensor, dy: Tensor,
        dx: Tensor | None, dweight: Tensor | None, dbias: Tensor | None, num_groups: int,
    ) -> None:
        """GroupNorm backward from ``groupnorm``'s mean, rstd [B,G]: dx (None: not wanted)
        = rstd (g dy - mean(g dy) - xhat mean(g dy xhat)) over each (image, group) block, g =
        weight[c] (None: 1), xhat = (x - mean) rstd; dweight[C] += sum dy xhat, dbias[C] += sum
        dy over the batch and the spatial dims (None: not kept).
        """

    def cross_entropy(
        self, logits: Tensor, targets: Tensor, dlogits: Tensor | None,
        label_smoothing: float = 0.0, ignore_index: int = -100,
    ) -> float:
        """Mean cross-entropy of logits (N, C) against class indices (N,) int32, with PyTorch's
        label smoothing; rows whose target is ``ignore_index`` count in neither the loss nor the
        mean (PyTorch's rule; other targets must be in [0, C)). Writes dlogits = (softmax -
        smoothed one-hot) / kept rows when given, 0 on ignored rows (dlogits may alias logits).
        Every row ignored: 0.0 and dlogits all 0 (PyTorch returns NaN).
        """

    def mse(self, pred: Tensor, target: Tensor, dpred: Tensor | None) -> float:
        """Mean squared error over all elements; writes dpred = 2 (pred - target) / n."""

    def l1(self, y: Tensor, target: Tensor, dy: Tensor | None) -> float:
        """Mean absolute error over all elements (torch's ``l1_loss``); writes dy = sign(y -
        target) / n, sign(0) = 0.
        """

    def huber(self, y: Tensor, target: Tensor, dy: Tensor | None, delta: float = 1.0) -> float:
        """torch.nn.HuberLoss (mean): 0.5 e^2 where |e| < delta, else delta (|e| - delta / 2),
        e = y - target; writes dy = clip(e, -delta, delta) / n.
        """

    def bce_with_logits(
        self, logits: Tensor, targets: Tensor, dlogits: Tensor | None,
        pos_weight: Tensor | None = None,
    ) -> float:
        """torch.nn.BCEWithLogitsLoss (mean over all elements) of logits against float targets
        of the same size, stable for large |logits|: (1 - t) x + w (log1p(exp(-|x|)) + max(-x,
        0)), w = 1 + (pos_weight - 1) t, pos_weight (last dim, broadcast over rows) optional;
        writes dlogits = ((1 - t) - w sigmoid(-x)) / n.
        """

    def kl_div(
        self, input: Tensor, target: Tensor, dy: Tensor | None, log_target: bool = False,
    ) -> float:
        """torch.nn.KLDivLoss(reduction='batchmean'): the sum over all elements of target (log
        target - input) (0 log 0 = 0), or exp(target) (target - input) with ``log_target``,
        divided by the first dimension of input (log-probabilities); target of input's shape.
        Writes dy = -target / batch (-exp(target) / batch).
        """

    def count_correct(self, logits: Tensor, targets: Tensor, ignore_index: int = -100) -> int:
        """How many rows have their argmax equal to the target (first maximum wins); rows whose
        target is ``ignore_index`` do not count.
        """

    def softmax(self, x: Tensor, y: Tensor) -> None:
        """y[r, :] = softmax(x[r, :]) over the last dimension."""

    def softmax_bwd(self, y: Tensor, dy: Tensor, dx: Tensor) -> None:
        """dx = y * (dy - sum(dy * y)) row-wise."""

    def layernorm(
        self, x: Tensor, gamma: Tensor | None, beta: Tensor | None, y: Tensor, mean: Tensor,
        rstd: Tensor, eps: float,
    ) -> None:
        """y = (x - mean) * rstd * gamma + beta per row; saves mean and rstd (rows,). gamma /
        beta None: 1 / 0 (no affine; PyTorch's elementwise_affine=False, bias=False).
        """

    def layernorm_bwd(
        self, x: Tensor, gamma: Tensor | None, mean: Tensor, rstd: Tensor, dy: Tensor,
        dx: Tensor | None, dgamma: Tensor | None, dbeta: Tensor | None,
    ) -> None:
        """LayerNorm backward: dx written (if given); dgamma, dbeta accumulated (+=) where given.
        gamma None: 1 (no affine).
        """

    def rmsnorm(self, x: Tensor, weight: Tensor, y: Tensor, rstd: Tensor, eps: float) -> None:
        """y = x * rstd * weight per row, rstd = 1/sqrt(mean(x^2) + eps) saved (rows,)."""

    def rmsnorm_bwd(
        self, x: Tensor, weight: Tensor, rstd: Tensor, dy: Tensor, dx: Tensor | None,
        dweight: Tensor,
    ) -> None:
        """RMSNorm backward: dx written (if given); dweight accumulated (+=)."""

    def sgd_step(
        self, p: Tensor, g: Tensor, buf: Tensor, lr: float, momentum: float, dampening: float,
        weight_decay: float, nesterov: bool, first: bool,
    ) -> None:
        """torch.optim.SGD over a flat buffer: buf is the momentum buffer (same size as p; not
        used, and not written, when momentum is 0).
        """

    def adam_step(
        self, p: Tensor, g: Tensor, m: Tensor, v: Tensor, lr: float, beta1: float, beta2: float,
        eps: float, weight_decay: float, step: int, decoupled: bool,
    ) -> None:
        """torch.optim.Adam (decoupled=False, L2 in the gradient) or AdamW (decoupled=True)
        over flat buffers; step counts from 1.
        """

    def adaptive_avgpool2d(self, x: Tensor, y: Tensor) -> None:
        """y[B,C,Ho,Wo] = the mean of x[B,C,H,W] over each adaptive window (rows
        [floor(o H / Ho), ceil((o + 1) H / Ho)), likewise the columns), PyTorch's
        AdaptiveAvgPool2d; Ho, Wo from y's shape.
        """

    def adaptive_avgpool2d_bwd(self, dy: Tensor, dx: Tensor) -> None:
        """dx[B,C,H,W] (written) = the sum over the adaptive windows holding each input of
        dy[B,C,Ho,Wo] / the window's size.
        """

    def adaptive_maxpool2d(self, x: Tensor, y: Tensor, argmax: Tensor) -> None:
        """y[B,C,Ho,Wo] = the max of x[B,C,H,W] over each adaptive window (``adaptive_avgpool2d``'s
        windows); argmax[B,C,Ho,Wo] int32 = h * W + w of the first maximum in the plane, as
        PyTorch (a NaN wins: the last NaN of the window); its backward is ``maxpool2d_bwd``.
        """

    def seq_transpose(self, x: Tensor, y: Tensor) -> None:
        """y[b, a, :] = x[a, b, :]; x [A, B, C], y [B, A, C] (must not overlap)."""

    def rnn_cell(self, xg: Tensor, hg: Tensor, b_hh: Tensor | None, h: Tensor) -> None:
        """h [B, H] = tanh(xg + hg + b_hh); xg, hg [B, H], b_hh [H] or None."""

    def rnn_cell_bwd(self, h: Tensor, dh: Tensor, dy: Tensor | None, dg: Tensor) -> None:
        """dg [B, H] = (dh + dy) * (1 - h^2): the gradient of the pre-activation; dy may be
        None. dg may alias dh.
        """

    def lstm_cell(
        self, xg: Tensor, hg: Tensor, b_hh: Tensor | None, c_prev: Tensor, gates: Tensor,
        c: Tensor, h: Tensor,
    ) -> None:
        """One LSTM step. xg, hg [B, 4H] (gate order i, f, g, o), b_hh [4H] or None, c_prev
        [B, H]. Writes gates [B, 4H] = (sigmoid i, sigmoid f, tanh g, sigmoid o) (may alias
        xg), c = f * c_prev + i * g and h = o * tanh(c) [B, H].
        """

    def lstm_cell_bwd(
        self, gates: Tensor, c_prev: Tensor, c: Tensor, dh: Tensor, dy: Tensor | None,
        dc: Tensor, dgates: Tensor,
    ) -> None:
        """Backward of ``lstm_cell``: gates [B, 4H] (the activations it saved), c_prev, c, dh
        (gradient of h_t through the recurrence), dy (of the output at t, or None) [B, H].
        dc holds dL/dc_t on entry (its recurrent part) and dL/dc_{t-1} on return; dgates
        [B, 4H] receives the pre-activation gradients (i, f, g, o).
        """

    def gru_cell(
        self, xg: Tensor, hg: Tensor, b_hh: Tensor | None, h_prev: Tensor, gates: Tensor,
        hn: Tensor, h: Tensor,
    ) -> None:
        """One GRU step (PyTorch's). xg [B, 3H] = x W_ih^T + b_ih, hg [B, 3H] = h_prev W_hh^T
        (gate order r, z, n), b_hh [3H] or None, h_prev [B, H]. Writes gates [B, 3H] =
        (r, z, n) (may alias xg), hn = hg_n + b_hn [B, H] and h = (1 - z) n + z h_prev with
        r, z = sigmoid(x_rz + h_rz), n = tanh(x_n + r * hn).
        """

    def gru_cell_bwd(
        self, gates: Tensor, hn: Tensor, h_prev: Tensor, dh: Tensor, dy: Tensor | None,
        dxg: Tensor, dhg: Tensor,
    ) -> None:
        """Backward of ``gru_cell``: gates [B, 3H] (r, z, n), hn, h_prev, dh, dy (or None)
        [B, H]. Writes dxg [B, 3H] (gradient of xg), dhg [B, 3H] (of hg + b_hh: its n part is
        r times dxg's) and, in place, dh = z * (dh + dy): the direct part of dL/dh_{t-1}
        (the caller adds dhg W_hh).
        """

    def masked_mean(self, x: Tensor, pad: Tensor | None, y: Tensor) -> None:
        """y [B, d] = the mean of x [B, T, d] over the positions pad leaves in (0 for a row of
        padding only: sentence-transformers' mean pooling).
        """

    def masked_mean_bwd(self, dy: Tensor, pad: Tensor | None, dx: Tensor) -> None:
        """dx [B, T, d] (written) = dy[b] / n_b at the positions kept, 0 at padding."""

    def bcast_binary(self, a: Tensor, b: Tensor, out: Tensor, op: int) -> None:
        """out = a OP b with NumPy's broadcasting, op in BINARY_OPS (0 add, 1 sub, 2 mul, 3 div,
        4 maximum, 5 minimum; maximum / minimum as NumPy's: NaN wins, a tie gives b). a and b
        broadcast together to out's shape exactly; out may be a or b (the same buffer) only
        where that input has out's shape.
        """

    def bcast_binary_bwd(
        self, a: Tensor | None, b: Tensor | None, dy: Tensor, da: Tensor | None,
        db: Tensor | None, op: int,
    ) -> None:
        """Gradients of out = a OP b (bcast_binary) from dy (out's shape): da, db (either None:
        not wanted) overwritten with their gradient summed to their own shape. add: dy, dy;
        sub: dy, -dy; mul: dy b, dy a; div: dy / b, -(dy / b * a) / b; maximum: dy where a > b,
        dy / 2 where a == b, else 0 (db the mirror; PyTorch's rule); minimum likewise. a and b
        are read by mul, div, maximum and minimum only (None allowed for add and sub). An
        output may be dy (or a, b) only where it has dy's shape.
        """

    def sum_to(self, x: Tensor, out: Tensor, alpha: float = 1.0, beta: float = 0.0) -> None:
        """out = beta * out + alpha * (x summed over the dimensions out is broadcast on): out's
        shape broadcasts to x's (NumPy's rules, right-aligned; e.g. x (4, 5, 6) to out (5, 1),
        (1, 5, 1), (6,) or (1,)). Sums over axes with keepdims shapes, and the backward of a
        broadcast. beta == 0 never reads out.
        """

    def bcast_where(self, cond: Tensor, a: Tensor, b: Tensor, out: Tensor) -> None:
        """out = a where cond != 0 (a NaN counts as nonzero) else b, with NumPy's broadcasting:
        cond (f32 or i32), a and b broadcast together to out's shape exactly; out may be an
        input (the same buffer) of out's shape.
        """

    def bcast_where_bwd(
        self, cond: Tensor, dy: Tensor, da: Tensor | None, db: Tensor | None,
    ) -> None:
        """Gradients of bcast_where from dy (out's shape): da = dy where cond != 0 else 0, db =
        dy where cond == 0 else 0 (dy * mask: a NaN dy stays NaN in both), each summed to its
        own shape (da's and db's shapes: a's and b's); either None: not wanted.
        """

    def strided_copy(
        self, src: Tensor, dst: Tensor, shape: tuple[int, ...], src_offset: int,
        src_strides: tuple[int, ...], dst_offset: int, dst_strides: tuple[int, ...],
        accumulate: bool = False,
    ) -> None:
        """For every index i of ``shape``: dst.flat[dst_offset + sum(i * dst_strides)] =
        src.flat[src_offset + sum(i * src_strides)] (+= when accumulate). Strides in elements,
        >= 0 (0 on src: a broadcast); dst strides must reach each element once. src and dst of
        one dtype, f32 or i32 (f32 to accumulate), within bounds, not overlapping. Transpose,
        permute, concat, split, slice, expand, and their backward (accumulate).
        """

    def max_axis(self, x: Tensor, out: Tensor, idx: Tensor) -> None:
        """out[o, i] = max_j x[o, j, i], idx[o, i] = the first j reaching it (int32); x is
        (outer, n, inner), n >= 1; out and idx have outer * inner elements (any shape). NaN wins:
        the max is NaN and idx the first NaN's (torch.max(dim)).
        """

    def max_axis_bwd(self, dy: Tensor, idx: Tensor, dx: Tensor) -> None:
        """dx (outer, n, inner) overwritten: 0, except dx[o, idx[o, i], i] = dy[o, i] (dy and
        idx: outer * inner elements; max_axis's idx). An index outside [0, n): KernelError.
        """

    def gather_axis(self, x: Tensor, idx: Tensor, out: Tensor) -> None:
        """out[o, j, i] = x[o, idx[o, j, i], i] (torch.gather along the middle axis): x (outer,
        n, inner), idx int32 and out (outer, m, inner). An index outside [0, n): KernelError.
        """

    def gather_axis_bwd(self, dy: Tensor, idx: Tensor, dx: Tensor) -> None:
        """dx (outer, n, inner) overwritten: 0, then dx[o, idx[o, j, i], i] += dy[o, j, i] in
        order (repeated indices accumulate); dy and idx (outer, m, inner).
        """

    def bmm(
        self, a: Tensor, b: Tensor, c: Tensor, trans_a: bool = False, trans_b: bool = False,
        alpha: float = 1.0, beta: float = 0.0,
    ) -> None:
        """C[i] = alpha * op(A[i]) @ op(B[i]) + beta * C[i] for each of the batch: A (B, M, K)
        (or (B, K, M) if trans_a), B (B, K, N) (or (B, N, K) if trans_b), C (B, M, N); one batch
        size for all (no broadcast). beta == 0 never reads C.
        """

    def upsample2d(
        self, x: Tensor, y: Tensor, mode: str = 'nearest', align_corners: bool = False,
        scale_h: float = 0.0, scale_w: float = 0.0,
    ) -> None:
        """y[B,C,Ho,Wo] = x[B,C,H,W] upsampled (or resized) by ``mode`` "nearest" or
        "bilinear", PyTorch's F.interpolate: scale_h, scale_w the scale factors given (0: none,
        the ratio H / Ho then); align_corners for bilinear only.
        """

    def upsample2d_bwd(
        self, dy: Tensor, dx: Tensor, mode: str = 'nearest', align_corners: bool = False,
        scale_h: float = 0.0, scale_w: float = 0.0,
    ) -> None:
        """dx[B,C,H,W] (written) = the sum, over the outputs each input position feeds, of
        dy[B,C,Ho,Wo] times its interpolation weight (``upsample2d``'s arguments).
        """

    def linear(self, x: Tensor, w, y: Tensor) -> None:
        """y [M, N] = x [M, K] @ w^T for w [N, K] (PyTorch's Linear layout and GGUF's row
        layout agree): ``gemm`` for a Tensor. For a QWeight, one row (a decode step, memory
        bound) takes ``matmul_q``'s 8-bit activations, ggml's arithmetic; several rows (a
        prompt, compute bound) take ``prompt_linear``: 8-bit activations through
        ``matmul_qp``'s integer GEMM for the ``INT8_PROMPT`` formats (Q8_0, Q4_0, Q4_1, Q6_K),
        float32 activations (``matmul_qf``) for the others.
        """

    def prompt_linear(self, x: Tensor, w, y: Tensor) -> None:
        """y [M, N] = x [M, K] @ w^T as the rows of a prompt take it, whatever M (a prompt's
        last position alone, too): ``matmul_qp`` (8-bit activations, each row the portable
        one-row kernel's bits) for a QWeight in an ``INT8_PROMPT`` format, ``matmul_qf``
        (float32 activations) for the other QWeights, ``gemm`` for a Tensor.
        """

    def embedding_rows(self, ids: Tensor, w, y: Tensor) -> None:
        """y[i, :] = w[ids[i], :] for a float32 table (``embedding``) or a QWeight
        (``embedding_q``, rows dequantized).
        """

    def scratch(self, key: str, shape: tuple[int, ...], dtype = np.float32) -> np.ndarray:
        """This thread's scratch array ``key`` of ``shape`` and ``dtype`` (made on first use;
        its contents are the caller's until its next call): the temporaries of NumPy code,
        so a warmed-up step allocates nothing (a plugin kernel's NumPy implementation takes
        its own, keys prefixed with its namespace). ``dtype`` is a NumPy type such as
        ``np.float32``, keyed as given: no ``np.dtype`` built per call.
        """
