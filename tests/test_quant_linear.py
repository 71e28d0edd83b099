"""Kernels taking a weight in either form (float32 Tensor or QWeight): linear, matmul_qf,
embedding_q, on both kernel sets against dequantize-then-multiply (a prompt's 8-bit
activations: against the product of their 8-bit rows)."""

from __future__ import annotations

import numpy as np
import pytest

from qorus_core.errors import KernelError
from qorus_core.kernels import get_kernels, simd
from qorus_core.kernels.numpy_quant import INT8_PROMPT, QWeight, quantize_q8_rows
from qorus_core.tensor import Tensor

QTYPES = ["q4_0", "q4_1", "q8_0", "f16"]


def _weight(k, qtype: str, n: int, kk: int, seed: int = 0) -> tuple[QWeight, np.ndarray]:
    a = np.random.default_rng(seed).standard_normal((n, kk)).astype(np.float32)
    w = QWeight.empty(qtype, n, kk)
    k.quantize(Tensor(a), w, qtype)
    deq = Tensor(np.empty((n, kk), np.float32))
    k.dequantize(w, deq)
    return w, deq.a


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("m,n", [(2, 5), (7, 300), (3, 129)])
def test_matmul_qf_is_float32_activations_on_the_dequantized_weight(kernels, qtype, m, n):
    k = get_kernels(kernels)
    w, deq = _weight(k, qtype, n, 96)
    x = np.random.default_rng(1).standard_normal((m, 96)).astype(np.float32)
    y = Tensor(np.empty((m, n), np.float32))
    k.matmul_qf(Tensor(x), w, y)
    np.testing.assert_allclose(y.a, x @ deq.T, rtol=1e-5, atol=1e-4)
    y2, ref = Tensor(np.empty((m, n), np.float32)), Tensor(np.empty((m, n), np.float32))
    k.linear(Tensor(x), w, y2)                       # several rows: the prompt path
    (k.matmul_qp if qtype in INT8_PROMPT else k.matmul_qf)(Tensor(x), w, ref)
    np.testing.assert_array_equal(y2.a, ref.a)


@pytest.mark.parametrize("qtype", QTYPES)
def test_linear_dispatch(kernels, qtype):
    k = get_kernels(kernels)
    w, deq = _weight(k, qtype, 64, 64)
    x = np.random.default_rng(2).standard_normal((1, 64)).astype(np.float32)
    y, ref = Tensor(np.empty((1, 64), np.float32)), Tensor(np.empty((1, 64), np.float32))
    k.linear(Tensor(x), w, y)                        # one row: ggml's 8-bit activations
    k.matmul_q(Tensor(x), w, ref)
    np.testing.assert_array_equal(y.a, ref.a)
    dense = Tensor(np.ascontiguousarray(deq))
    k.linear(Tensor(x), dense, y)                    # a float32 weight: the GEMM
    np.testing.assert_allclose(y.a, x @ deq.T, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("qtype", QTYPES)
def test_linear_on_every_tier(threads, nk, qtype):
    """On each SIMD tier the CPU has: one row through linear is matmul_q (the same bits, as is
    linears with two weights), several rows are the prompt path (matmul_qp's 8-bit
    activations for the INT8_PROMPT formats: the bits of NumPy's, within the bound of the
    float64 product of the same 8-bit rows; matmul_qf's float32 ones for F16)."""
    ck = threads
    w, deq = _weight(ck, qtype, 77, 224, seed=3)
    x = np.random.default_rng(4).standard_normal((5, 224)).astype(np.float32)
    ref = Tensor(np.empty((1, 77), np.float32))
    nk.matmul_q(Tensor(x[:1]), w, ref)
    for tier in simd.usable_tiers(ck._lib):
        ck.set_simd_path(tier)
        y, one = Tensor(np.empty((1, 77), np.float32)), Tensor(np.empty((1, 77), np.float32))
        ck.linear(Tensor(x[:1]), w, y)
        ck.matmul_q(Tensor(x[:1]), w, one)
        np.testing.assert_array_equal(y.a, one.a, err_msg=tier)
        ys = [Tensor(np.empty((1, 77), np.float32)) for _ in range(2)]
        ck.linears(Tensor(x[:1]), (w, w), ys)
        for yy in ys:
            np.testing.assert_array_equal(yy.a, one.a, err_msg=tier)
        np.testing.assert_allclose(y.a, ref.a, rtol=1e-4, atol=1e-4, err_msg=tier)
        y5 = Tensor(np.empty((5, 77), np.float32))
        ck.linear(Tensor(x), w, y5)
        if qtype in INT8_PROMPT:
            q, d, _ = quantize_q8_rows(x)
            x8 = (q.astype(np.float64) * d[..., None]).reshape(x.shape)
            W = deq.astype(np.float64)
            bound = 1e-5 * (np.abs(x8) @ np.abs(W).T) + 1e-5
            assert np.all(np.abs(y5.a - x8 @ W.T) <= bound), tier
            ref5 = Tensor(np.empty((5, 77), np.float32))
            nk.matmul_qp(Tensor(x), w, ref5)
            np.testing.assert_array_equal(y5.a, ref5.a, err_msg=tier)
        else:
            np.testing.assert_allclose(y5.a, x @ deq.T, rtol=1e-5, atol=1e-4, err_msg=tier)


@pytest.mark.parametrize("qtype", QTYPES)
def test_embedding_q_gathers_dequantized_rows(kernels, qtype):
    k = get_kernels(kernels)
    w, deq = _weight(k, qtype, 50, 64)
    ids = np.array([3, 0, 49, 3], np.int32)
    y = Tensor(np.empty((4, 64), np.float32))
    k.embedding_rows(Tensor(ids), w, y)
    np.testing.assert_array_equal(y.a, deq[ids])
    with pytest.raises(KernelError, match="token id 50 outside"):
        k.embedding_q(Tensor(np.array([50], np.int32)), w, Tensor(np.empty((1, 64), np.float32)))
    with pytest.raises(KernelError, match="must be int32"):
        k.embedding_q(Tensor(np.zeros(4, np.float32)), w, y)
