"""Quantized weights: Q8_0 / Q4_0 / Q4_1 / F16 formats bit-exact with the gguf package's
reference quantizers (gguf-dependent tests skip without it), C vs NumPy parity of quantize,
dequantize and the products, and argument checks.

Tolerances of matmul_q (y = x @ W^T, W quantized):
  - against x8 @ Wd^T in float64, where Wd is W dequantized and x8 the activations after the
    8-bit block quantization the kernel applies (F16: x itself): 1e-5 * (|x8| @ |Wd|^T) + 1e-5
    (the only error left is float32 summation, of K terms);
  - C against NumPy: the same bound (both are the exact integer block sums, scaled and summed
    in float32 in different orders);
  - against the float32 product x @ Wd^T (what the activation quantization costs): each x_i
    moves by at most amax(its block) / 254, so |y - x @ Wd^T| <= (amax / 254) @ |Wd|^T plus
    the float32 bound; F16: the float32 bound alone.
These hold on every SIMD tier the CPU has (portable, AVX2, AVX-512 with VNNI), each tier giving
the same bits for any thread count (tests/test_simd_tiers.py has the tier-against-tier tests).
"""

from __future__ import annotations

import numpy as np
import pytest

from qorus_core.errors import KernelError
from qorus_core.kernels import simd
from qorus_core.kernels.numpy_quant import QWeight, quantize_q8_rows, row_bytes
from qorus_core.tensor import Tensor

# fp16 scales of the 3e4 edge rows overflow to inf, as in ggml (gguf's NumPy casts warn)
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")

QTYPES = ["q8_0", "q4_0", "q4_1", "f16"]
BLOCKS = ["q8_0", "q4_0", "q4_1"]


def edge_matrix(rows, k, seed=0, big=3e4):
    """Random rows plus edge rows: zeros, a constant, large, tiny, all negative, one spike,
    ties in magnitude (+a and -a), and values that round exactly at .5 steps. `big` = 3e4
    overflows some fp16 scales to inf (as in ggml); products use weights that stay finite."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, k)) * 2.0).astype(np.float32)
    edges = [np.zeros(k), np.full(k, 3.25), rng.standard_normal(k) * big,
             rng.standard_normal(k) * 1e-3, -np.abs(rng.standard_normal(k)) - 0.5,
             np.where(np.arange(k) % 32 == 5, 7.0, 0.01),
             np.where(np.arange(k) % 2 == 0, 2.5, -2.5), (np.arange(k) % 33 - 16) * 0.5,
             np.full(k, -0.0)]
    for i, e in enumerate(edges[:rows]):
        x[i] = np.asarray(e, np.float32)
    return x


def ggml_type(name):
    gguf = pytest.importorskip("gguf")
    return getattr(gguf.GGMLQuantizationType, name.upper())


# ----------------------------------------------------------------------------- formats
def test_row_bytes_and_qweight_checks():
    assert [row_bytes(q, 64) for q in QTYPES] == [68, 36, 40, 128]
    assert row_bytes(8, 32) == 34 and row_bytes("Q4_0", 0) == 0
    for bad in ("q7_0", 0, 99, None):
        with pytest.raises(KernelError):
            row_bytes(bad, 32)
    with pytest.raises(KernelError, match="whole number"):
        row_bytes("q4_0", 48)
    with pytest.raises(KernelError, match="needs 36 bytes"):
        QWeight(np.zeros(35, np.uint8), "q4_0", 2, 32)
    with pytest.raises(KernelError, match="uint8"):
        QWeight(np.zeros(9, np.float32), "q4_0", 2, 32)
    w = QWeight(bytes(68), "q8_0", 2, 32)          # any bytes-like buffer (read-only is fine)
    assert w.shape == (2, 32) and w.nbytes == 68 and w.p


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("rows,k", [(1, 32), (9, 64), (13, 96), (31, 320)])
def test_quantize_matches_gguf(ck, nk, qtype, rows, k):
    gguf = pytest.importorskip("gguf")
    x = edge_matrix(rows, k, seed=rows)
    ref = np.ascontiguousarray(gguf.quants.quantize(x, ggml_type(qtype))).view(np.uint8)
    for ks in (nk, ck):
        w = QWeight.empty(qtype, rows, k)
        ks.quantize(Tensor(x), w, qtype)
        assert np.array_equal(w.a, ref.reshape(-1)), (ks.name, qtype)
    back = gguf.quants.dequantize(ref.reshape(rows, -1), ggml_type(qtype)).astype(np.float32)
    for ks in (nk, ck):
        y = Tensor(np.full((rows, k), np.nan, np.float32))
        ks.dequantize(QWeight(ref, qtype, rows, k), y)
        assert np.array_equal(y.a, back), (ks.name, qtype)


def test_f16_rounding_edges(ck, nk):
    """Round to nearest even, subnormals, overflow to inf, signed zero, inf and NaN."""
    v = np.array([0.0, -0.0, 1.0, -1.0, 65504.0, 65519.99, 65520.0, 1e6, -1e6, 6.1e-5,
                  5.96e-8, 2.98e-8, 2.99e-8, 1e-9, 1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11,
                  np.inf, -np.inf, np.nan, 3.14159, -2.71828, 1e-5, 2049.0, 2051.0,
                  0.1, 0.2, 0.3, 1 / 3, 7.0e-6, -3e-7, 4095.5, 65503.0], np.float32)
    ref = v.astype(np.float16).view(np.uint8)
    for path in ("auto", "portable"):
        ck.set_simd_path(path)
        for ks in (nk, ck):
            w = QWeight.empty("f16", 1, v.size)
            ks.quantize(Tensor(v.reshape(1, -1)), w, "f16")
            assert np.array_equal(w.a, ref), (ks.name, path)
            y = Tensor(np.zeros((1, v.size), np.float32))
            ks.dequantize(w, y)
            np.testing.assert_array_equal(y.a[0], ref.view(np.float16).astype(np.float32))
    ck.set_simd_path("auto")


def test_nibble_order_and_values(nk):
    """Q4_0: element j in the low nibble of byte j, element j + 16 in the high nibble."""
    block = np.zeros(18, np.uint8)
    block[0:2] = np.array([0.5], np.float16).view(np.uint8)
    block[2:] = np.arange(16, dtype=np.uint8) | (np.uint8(15) << 4)
    y = Tensor(np.zeros((1, 32), np.float32))
    nk.dequantize(QWeight(block, "q4_0", 1, 32), y)
    np.testing.assert_array_equal(y.a[0, :16], 0.5 * (np.arange(16) - 8))
    np.testing.assert_array_equal(y.a[0, 16:], np.full(16, 0.5 * 7))


# ----------------------------------------------------------------------------- products
def reference(nk, x, w):
    """(y64: x8 @ Wd^T in float64, bound: |x8| @ |Wd|^T, yf: x @ Wd^T, boundf: |x| @ |Wd|^T)"""
    wd = Tensor(np.zeros((w.n, w.k), np.float32))
    nk.dequantize(w, wd)
    W = wd.a.astype(np.float64)
    if w.qtype == "f16":
        x8 = x.astype(np.float64)
    else:
        q, d, _ = quantize_q8_rows(x)
        x8 = (q.astype(np.float64) * d[..., None]).reshape(x.shape)
    return x8 @ W.T, np.abs(x8) @ np.abs(W).T, x.astype(np.float64) @ W.T, np.abs(x) @ np.abs(W).T


def make_weight(ck, qtype, n, k, seed):
    w = QWeight.empty(qtype, n, k)
    ck.quantize(Tensor(edge_matrix(n, k, seed, big=4e3)), w, qtype)
    return w


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("m,n,k", [(1, 1, 32), (1, 37, 64), (1, 300, 576), (1, 7, 96), (1, 9, 160),
                                   (1, 6, 224), (2, 33, 96),
                                   (3, 17, 160), (5, 129, 256), (8, 64, 32), (13, 70, 224),
                                   (33, 257, 320)])
def test_matmul_q(ck, nk, qtype, m, n, k):
    w = make_weight(ck, qtype, n, k, seed=n + k)
    x = edge_matrix(m, k, seed=m, big=4e3) if m > 9 else np.random.default_rng(m).standard_normal(
        (m, k)).astype(np.float32)
    yc, yn = Tensor(np.full((m, n), np.nan, np.float32)), Tensor(np.zeros((m, n), np.float32))
    ck.matmul_q(Tensor(x), w, yc)
    nk.matmul_q(Tensor(x), w, yn)
    y64, bound, yf, boundf = reference(nk, x, w)
    tol = 1e-5 * bound + 1e-5
    assert np.all(np.abs(yc.a - y64) <= tol), np.max(np.abs(yc.a - y64) - tol)
    assert np.all(np.abs(yn.a - y64) <= tol), np.max(np.abs(yn.a - y64) - tol)
    assert np.all(np.abs(yc.a - yn.a) <= tol)
    # the activation quantization moves each x_i by at most d/2 = amax(block) / 254
    half_step = np.repeat(np.abs(x).reshape(m, -1, 32).max(axis=2), 32, axis=1) / 254.0
    wd = Tensor(np.zeros((n, k), np.float32))
    nk.dequantize(w, wd)
    qerr = 0.0 if qtype == "f16" else 1.001 * half_step @ np.abs(wd.a.astype(np.float64)).T
    assert np.all(np.abs(yc.a - yf) <= qerr + 1e-5 * boundf + 1e-5)


def each_path_and_thread_count(ck):
    """Set each SIMD tier this CPU and build run (portable, avx2, avx512) and thread count
    (1, 2, 3) in turn."""
    for path in simd.usable_tiers(ck._lib):
        ck.set_simd_path(path)
        for nt in (1, 2, 3):
            ck.set_threads(nt)
            yield path, nt


@pytest.mark.parametrize("qtype", QTYPES)
def test_matmul_q_paths_and_threads(threads, nk, qtype):
    """Every SIMD tier agrees with float64 within the bound; a tier's result is the same for
    any thread count."""
    ck = threads
    m, n, k = 6, 203, 352
    w = make_weight(ck, qtype, n, k, seed=7)
    x = np.random.default_rng(3).standard_normal((m, k)).astype(np.float32)
    y64, bound, _, _ = reference(nk, x, w)
    outs: dict[str, list] = {}
    for path, _ in each_path_and_thread_count(ck):
        for rows in (m, 1):                     # prompt and decode shapes
            y = Tensor(np.zeros((rows, n), np.float32))
            ck.matmul_q(Tensor(x[:rows]), w, y)
            outs.setdefault(path, []).append(y.a.copy())
            assert np.all(np.abs(y.a - y64[:rows]) <= 1e-5 * bound[:rows] + 1e-5), path
    for o in outs.values():
        assert all(np.array_equal(o[i], o[i % 2]) for i in range(len(o)))


def test_matmul_q_mmap_view(ck, nk, tmp_path):
    """A weight used where it lies in a file: a read-only memmap slice at an odd offset."""
    n, k = 48, 128
    w = make_weight(ck, "q4_1", n, k, seed=1)
    path = tmp_path / "w.bin"
    path.write_bytes(b"\x00" * 7 + w.a.tobytes() + b"\x01" * 5)
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    wv = QWeight(mm[7:7 + w.nbytes], "q4_1", n, k)
    x = np.random.default_rng(0).standard_normal((2, k)).astype(np.float32)
    ya, yb = Tensor(np.zeros((2, n), np.float32)), Tensor(np.zeros((2, n), np.float32))
    ck.matmul_q(Tensor(x), w, ya)
    ck.matmul_q(Tensor(x), wv, yb)
    assert np.array_equal(ya.a, yb.a)


# ----------------------------------------------------------------------------- bad calls
@pytest.mark.parametrize("which", ["c", "numpy"])
def test_bad_sizes_raise(ck, nk, which):
    ks = ck if which == "c" else nk
    w = QWeight.empty("q4_0", 8, 64)
    x = Tensor(np.zeros((2, 64), np.float32))
    with pytest.raises(KernelError, match="matmul_q"):
        ks.matmul_q(Tensor(np.zeros((2, 32), np.float32)), w, Tensor(np.zeros((2, 8), np.float32)))
    with pytest.raises(KernelError, match="matmul_q"):
        ks.matmul_q(x, w, Tensor(np.zeros((2, 9), np.float32)))
    with pytest.raises(KernelError, match="matmul_q"):
        ks.matmul_q(x, w, Tensor(np.zeros((3, 8), np.float32)))
    with pytest.raises(KernelError, match="QWeight"):
        ks.matmul_q(x, w.a, Tensor(np.zeros((2, 8), np.float32)))
    with pytest.raises(KernelError, match="immutable"):
        w.n = 9                                  # it would no longer fit its buffer
    with pytest.raises(KernelError, match="needs"):
        ks.quantize(x, np.zeros(71, np.uint8), "q4_0")
    with pytest.raises(KernelError, match="whole number"):
        ks.quantize(Tensor(np.zeros((2, 40), np.float32)), np.zeros(90, np.uint8), "q8_0")
    with pytest.raises(KernelError, match="read-only"):
        ks.quantize(x, np.frombuffer(bytes(72), np.uint8), "q4_0")
    with pytest.raises(KernelError, match="is a q4_0 weight"):
        ks.quantize(x, QWeight.empty("q4_0", 2, 64), "q8_0")
    with pytest.raises(KernelError, match="dequantize"):
        ks.dequantize(w, Tensor(np.zeros((8, 63), np.float32)))


def test_c_rejects_bad_arguments_itself(ck):
    """The C entry points check what they are given (defence behind the Python checks)."""
    f = ck._quant("qr_matmul_q4_0_f32")
    assert f is not None
    buf = np.zeros(64, np.float32)
    assert f(buf.ctypes.data, buf.ctypes.data, buf.ctypes.data, 1, 1, 48) == -1   # K % 32
    assert f(buf.ctypes.data, buf.ctypes.data, buf.ctypes.data, -1, 1, 32) == -1
    assert f(None, None, buf.ctypes.data, 1, 1, 32) == -1
    assert ck._quant("qr_quant_row_bytes")(99, 32) == -1
    assert ck._quant("qr_quant_row_bytes")(2, 64) == 36


@pytest.mark.parametrize("qtype", BLOCKS)
def test_matmul_q_nan_inf_rows(threads, nk, qtype):
    """A NaN or inf in an activation row makes that row's outputs NaN (every path); other rows
    are untouched."""
    ck = threads
    m, n, k = 4, 19, 96
    w = make_weight(ck, qtype, n, k, seed=2)
    x = np.random.default_rng(5).standard_normal((m, k)).astype(np.float32)
    x[1, 40], x[2, 3] = np.nan, -np.inf
    for ks, path in [(nk, None)] + [(ck, t) for t in simd.usable_tiers(ck._lib)]:
        if path:
            ck.set_simd_path(path)
        for rows in (m, 3):                 # prompt shapes
            y = Tensor(np.zeros((rows, n), np.float32))
            ks.matmul_q(Tensor(x[:rows]), w, y)
            assert np.isnan(y.a[1:3]).all() and np.isfinite(y.a[0]).all(), (ks.name, path)
        y1 = Tensor(np.zeros((1, n), np.float32))   # decode shape
        ks.matmul_q(Tensor(x[1:2]), w, y1)
        assert np.isnan(y1.a).all()


def test_qweight_is_immutable():
    """Its byte size is checked once, when made; nothing can change it afterwards."""
    w = QWeight(bytes(68), "q8_0", 2, 32)
    assert w.code == 8
    for field, value in (("n", 3), ("p", 0), ("a", np.zeros(68, np.uint8)), ("extra", 1)):
        with pytest.raises(KernelError, match="immutable"):
            setattr(w, field, value)
    assert w.n == 2


@pytest.mark.parametrize("mix", [("q4_1", "q4_1", "q4_1"), ("q4_0", "q8_0", "f16"),
                                 ("q8_0", "q4_1"), ("f16",)])
def test_linears_decode_row_equals_one_product_each(threads, nk, mix):
    """One call for several weights sharing the input (q/k/v, gate/up) gives what matmul_q
    gives each, on every SIMD tier and any thread count; the NumPy set agrees within the
    bound."""
    ck, k = threads, 96
    ns = (203, 35, 64)[:len(mix)]
    ws = [make_weight(ck, q, n, k, seed=i) for i, (q, n) in enumerate(zip(mix, ns))]
    x = Tensor(np.random.default_rng(5).standard_normal((1, k)).astype(np.float32))
    for _ in each_path_and_thread_count(ck):
        ys = [Tensor(np.full((1, n), np.nan, np.float32)) for n in ns]
        ck.linears(x, ws, ys)
        for w, y in zip(ws, ys):
            one = Tensor(np.zeros((1, w.n), np.float32))
            ck.matmul_q(x, w, one)
            np.testing.assert_array_equal(y.a, one.a)
            ref = Tensor(np.zeros((1, w.n), np.float32))
            nk.matmul_q(x, w, ref)
            np.testing.assert_allclose(y.a, ref.a, rtol=1e-4, atol=1e-4)


def test_linears_other_forms_and_bad_input(ck, nk):
    """Several rows or float32 weights fall back to linear each; sizes are checked before C."""
    w = make_weight(ck, "q4_1", 40, 64, seed=0)
    dense = Tensor(np.random.default_rng(1).standard_normal((24, 64)).astype(np.float32))
    x3 = Tensor(np.random.default_rng(2).standard_normal((3, 64)).astype(np.float32))
    for ks in (ck, nk):
        ys = [Tensor(np.zeros((3, 40), np.float32)), Tensor(np.zeros((3, 24), np.float32))]
        ks.linears(x3, (w, dense), ys)
        one = Tensor(np.zeros((3, 40), np.float32))
        ks.linear(x3, w, one)
        np.testing.assert_array_equal(ys[0].a, one.a)
        np.testing.assert_allclose(ys[1].a, x3.a @ dense.a.T, rtol=1e-5, atol=1e-5)
        x1 = Tensor(np.zeros((1, 64), np.float32))
        with pytest.raises(KernelError, match=r"linears: x \(1, 64\) @ W\^T with W \[40, 64\]"):
            ks.linears(x1, (w, w), (Tensor(np.zeros((1, 40), np.float32)),
                                    Tensor(np.zeros((1, 39), np.float32))))
        with pytest.raises(KernelError, match="2 weights but 1"):
            ks.linears(x1, (w, w), (Tensor(np.zeros((1, 40), np.float32)),))
    f = ck._quant("qr_matmul_q3_f32")
    buf = np.zeros(64, np.float32)
    p = buf.ctypes.data
    assert f(p, 48, 2, p, p, 1, 0, None, None, 0, 0, None, None, 0) == -1   # K % 32
    assert f(p, 32, 99, p, p, 1, 0, None, None, 0, 0, None, None, 0) == -1  # qtype
    assert f(p, 32, 2, p, None, 1, 0, None, None, 0, 0, None, None, 0) == -1  # no y
    assert f(p, 32, 2, None, None, 0, 0, None, None, 0, 0, None, None, 0) == -1  # no weight
