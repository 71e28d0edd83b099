"""The weight formats beyond Q8_0 / Q4_0 / Q4_1 / F16 (Q5_0, Q5_1, IQ4_NL, Q2_K .. Q6_K, BF16):
bit-exact with the ``gguf`` package's dequantizers and quantizers on both kernel sets, and their
products on every SIMD tier this CPU has within the bound of the float64 product of the same
8-bit activations."""

from __future__ import annotations

import numpy as np
import pytest

from qorus_core.errors import KernelError
from qorus_core.kernels.numpy_qformats import FORMATS, random_blocks
from qorus_core.kernels.numpy_quant import QWeight, quantize_q8_rows, row_bytes
from qorus_core.tensor import Tensor

gguf_quants = pytest.importorskip("gguf.quants", reason="the gguf package is the oracle")
from gguf import GGMLQuantizationType  # noqa: E402

NEW = ["q5_0", "q5_1", "iq4_nl", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "bf16"]
QUANTIZABLE = ["q5_0", "q5_1", "bf16"]


@pytest.fixture
def kset(kernels):
    """Each kernel set in turn."""
    from qorus_core.kernels import get_kernels

    return get_kernels(kernels)


def T(a) -> Tensor:
    return Tensor(np.ascontiguousarray(a, dtype=np.float32))


def weight(qtype: str, n: int, k: int, seed: int = 0) -> QWeight:
    """A weight of every kind of block: quantized from normals (the quantizable formats) or
    random bits with small finite scales (the others); BF16 from normals of mixed scale."""
    rng = np.random.default_rng(seed)
    if FORMATS[qtype].quantizable:
        a = rng.standard_normal((n, k)).astype(np.float32) * np.float32(10.0) ** rng.integers(
            -3, 3, (n, 1)).astype(np.float32)
        w = QWeight.empty(qtype, n, k)
        from qorus_core.kernels.numpy import NumpyKernels

        NumpyKernels().quantize(T(a), w, qtype)
        return w
    return QWeight(random_blocks(qtype, n, k, rng), qtype, n, k)


def gguf_dequantize(w: QWeight) -> np.ndarray:
    return gguf_quants.dequantize(w.a.reshape(w.n, w.row_bytes),
                                  GGMLQuantizationType[w.qtype.upper()]).astype(np.float32)


def test_the_formats_sizes_are_ggmls():
    for name, f in FORMATS.items():
        t = GGMLQuantizationType[name.upper()]
        assert f.number == int(t), name
        bv, bb = gguf_quants.GGML_QUANT_SIZES[t]
        assert (f.block_values, f.block_bytes) == (bv, bb), name
    assert row_bytes("q4_k", 512) == 288 and row_bytes(12, 256) == 144
    with pytest.raises(KernelError, match="256-value blocks"):
        row_bytes("q6_k", 576)            # SmolLM2's width: llama.cpp falls back for it


@pytest.mark.parametrize("qtype", NEW)
def test_dequantize_bit_exact_with_gguf(kset, qtype):
    """dequantize, embedding_q and matmul_qf's panels give the gguf package's values, bit for
    bit, on both kernel sets (random blocks cover every bit pattern of the quants)."""
    n, k = 7, 768
    w = weight(qtype, n, k, seed=3)
    ref = gguf_dequantize(w)
    y = T(np.full((n, k), 7.0))
    kset.dequantize(w, y)
    np.testing.assert_array_equal(y.a.view(np.uint32), ref.view(np.uint32))
    ids = Tensor(np.array([6, 0, 3, 3], np.int32))
    e = T(np.zeros((4, k)))
    kset.embedding_q(ids, w, e)
    np.testing.assert_array_equal(e.a, ref[[6, 0, 3, 3]])


@pytest.mark.parametrize("qtype", QUANTIZABLE)
def test_quantize_bit_exact_with_gguf(kset, qtype):
    rng = np.random.default_rng(5)
    a = (rng.standard_normal((9, 320)) * np.float32(10.0) ** rng.integers(-5, 4, (9, 1)))
    a = a.astype(np.float32)
    a[2, :32] = 0.0                                   # an all-zero block: d = 0
    a[4, 3] = -a[4, 3]                                # ties of the largest magnitude
    w = QWeight.empty(qtype, 9, 320)
    kset.quantize(T(a), w, qtype)
    ref = gguf_quants.quantize(a, GGMLQuantizationType[qtype.upper()]).reshape(-1)
    np.testing.assert_array_equal(w.a, ref)


def test_formats_without_a_quantizer_refuse_to_quantize(kset):
    w = QWeight.empty("q4_k", 2, 256)
    with pytest.raises(KernelError, match="no quantizer for q4_k"):
        kset.quantize(T(np.zeros((2, 256))), w, "q4_k")


def product_case(qtype: str, m: int, n: int, k: int, nk):
    """(x, W, y64 = x8 @ Wd^T in float64, the bound 1e-5 * |x8| @ |Wd|^T + 1e-5)."""
    rng = np.random.default_rng(m * 31 + n * 7 + k)
    w = weight(qtype, n, k, seed=m + n)
    x = rng.standard_normal((m, k)).astype(np.float32)
    x[0, ::7] *= 50.0                                  # uneven block scales
    wd = T(np.zeros((n, k)))
    nk.dequantize(w, wd)
    W = wd.a.astype(np.float64)
    if qtype == "bf16":
        x8 = x.astype(np.float64)
    else:
        q, d, _ = quantize_q8_rows(x)
        x8 = (q.astype(np.float64) * d[..., None]).reshape(m, k)
    return x, w, x8 @ W.T, 1e-5 * (np.abs(x8) @ np.abs(W).T) + 1e-5


SHAPES = [(1, 5, 256), (1, 37, 512), (1, 300, 1536), (3, 9, 256), (9, 70, 768), (17, 13, 512)]


@pytest.mark.parametrize("qtype", NEW)
@pytest.mark.parametrize("mnk", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_products_every_tier(threads, nk, qtype, mnk):
    """matmul_q (8-bit activations: decode rows and prompts) and linears on every tier this
    CPU has, within the bound of the float64 product; 1 and 2 threads give the same bits;
    matmul_qf (float activations) within 1e-5 of x @ Wd^T."""
    from test_simd_tiers import tiers_here

    ck, (m, n, k) = threads, mnk
    x, w, y64, tol = product_case(qtype, m, n, k, nk)
    for tier in tiers_here(ck):
        ck.set_simd_path(tier)
        got = []
        for nt in (1, 2):
            ck.set_threads(nt)
            y = T(np.full((m, n), 7.0))
            ck.matmul_q(T(x), w, y)
            got.append(y.a.copy())
        np.testing.assert_array_equal(got[1], got[0], err_msg=f"{tier}: 1 vs 2 threads")
        err = np.abs(got[0] - y64) - tol
        assert np.all(err <= 0), (tier, float(err.max()))
        if m == 1:
            ys = [T(np.zeros((1, n))), T(np.zeros((1, n)))]
            ck.linears(T(x), (w, w), ys)
            for yy in ys:
                np.testing.assert_array_equal(yy.a, got[0], err_msg=f"{tier} linears")
        yf = T(np.zeros((m, n)))
        ck.matmul_qf(T(x), w, yf)
        wd = T(np.zeros((n, k)))
        nk.dequantize(w, wd)
        W = wd.a.astype(np.float64)
        bound = 1e-5 * (np.abs(x) @ np.abs(W).T) + 1e-6
        assert np.all(np.abs(yf.a - x.astype(np.float64) @ W.T) <= bound), tier


@pytest.mark.parametrize("qtype", NEW)
def test_numpy_products_match_the_float64_bound(nk, qtype):
    x, w, y64, tol = product_case(qtype, 3, 11, 512, nk)
    y = T(np.zeros((3, 11)))
    nk.matmul_q(T(x), w, y)
    assert np.all(np.abs(y.a - y64) <= tol)


def test_mixed_formats_in_one_decode_call(ck):
    """linears over three weights of different formats (a Q4_K_M block mixes them) equals
    each product alone."""
    k = 512
    ws = [weight("q4_k", 9, k, 1), weight("q5_0", 5, k, 2), weight("q6_k", 7, k, 3)]
    x = T(np.random.default_rng(0).standard_normal((1, k)))
    ys = [T(np.zeros((1, w.n))) for w in ws]
    ck.linears(x, ws, ys)
    for w, y in zip(ws, ys):
        alone = T(np.zeros((1, w.n)))
        ck.matmul_q(x, w, alone)
        np.testing.assert_array_equal(y.a, alone.a)


def products_on_every_tier(ck, x, w, y64, tol):
    """matmul_q on every tier this CPU has (1 and 2 threads, the same bits) within ``tol`` of
    ``y64``; a single row also through linears (the decode kernels), the same bits."""
    from test_simd_tiers import tiers_here

    m, n = x.shape[0], w.n
    for tier in tiers_here(ck):
        ck.set_simd_path(tier)
        got = []
        for nt in (1, 2):
            ck.set_threads(nt)
            y = T(np.full((m, n), 7.0))
            ck.matmul_q(T(x), w, y)
            got.append(y.a.copy())
        np.testing.assert_array_equal(got[1], got[0], err_msg=f"{tier}: 1 vs 2 threads")
        err = np.abs(got[0] - y64) - tol
        assert np.all(err <= 0), (tier, float(err.max()))
        if m == 1:
            ys = [T(np.zeros((1, n)))]
            ck.linears(T(x), (w,), ys)
            np.testing.assert_array_equal(ys[0].a, got[0], err_msg=f"{tier} linears")


BLOCK_COUNTS = {"q5_0": [1, 2, 3, 5, 6, 7, 9], "q5_1": [1, 2, 3, 5, 7], "iq4_nl": [1, 2, 3, 5, 7]}


@pytest.mark.parametrize("qtype", [q for q in NEW if q != "bf16"])
def test_products_every_block_count(threads, nk, qtype):
    """Rows of 1 .. 9 super-blocks (K-quants) or of 1 .. 9 blocks (the 32-value formats: the
    kernels' 1-3 block tails), 1 .. 4 activation rows and a decode row, odd row counts."""
    f = FORMATS[qtype]
    counts = BLOCK_COUNTS.get(qtype, range(1, 10))
    for c in counts:
        k = c * f.block_values
        for m in (1, 2, 4):
            x, w, y64, tol = product_case(qtype, m, 11 if c % 2 else 3, k, nk)
            products_on_every_tier(threads, x, w, y64, tol)


@pytest.mark.parametrize("qtype", ["q5_0", "iq4_nl", "q2_k", "q3_k", "q6_k", "q4_k"])
def test_decode_rows_longer_than_the_stack_buffer(threads, nk, qtype):
    """K = 16640 (520 blocks): the decode kernels' per-call activation data on the heap."""
    x, w, y64, tol = product_case(qtype, 1, 9, 16640, nk)
    products_on_every_tier(threads, x, w, y64, tol)


# the fp16 scale fields of each format's block (d, and m / dmin where it has one)
SCALE_FIELDS = {"q5_0": (0,), "q5_1": (0, 2), "iq4_nl": (0,), "q2_k": (80, 82), "q3_k": (108,),
                "q4_k": (0, 2), "q5_k": (0, 2), "q6_k": (208,)}
EXTREME_SCALES = np.array([65504.0, -65504.0, 6.1035156e-05, -6.1035156e-05, 5.9604645e-08,
                           -5.9604645e-08, 1.5e-06, 0.0, -0.0, 1.0, -3.5, 2048.0], np.float16)


@pytest.mark.parametrize("qtype", [q for q in NEW if q != "bf16"])
def test_scales_at_fp16_extremes(threads, nk, qtype):
    """Random quants with scales at the fp16 extremes (largest, smallest normal, subnormal,
    zeros of both signs, negatives): dequantization bit-exact with gguf on both kernel sets,
    products within the bound on every tier."""
    f = FORMATS[qtype]
    rng = np.random.default_rng(11)
    n, k = 13, 3 * 256 if f.block_values == 256 else 7 * 32
    raw = rng.integers(0, 256, (n * k // f.block_values, f.block_bytes), dtype=np.uint8)
    for at in SCALE_FIELDS[qtype]:
        raw[:, at:at + 2] = rng.choice(EXTREME_SCALES, len(raw)).view(np.uint8).reshape(-1, 2)
    w = QWeight(raw.reshape(-1), qtype, n, k)
    ref = gguf_dequantize(w)
    for kset in (threads, nk):
        y = T(np.full((n, k), 7.0))
        kset.dequantize(w, y)
        np.testing.assert_array_equal(y.a.view(np.uint32), ref.view(np.uint32))
    for m in (1, 3):
        x = rng.standard_normal((m, k)).astype(np.float32)
        q, d, _ = quantize_q8_rows(x)
        x8 = (q.astype(np.float64) * d[..., None]).reshape(m, k)
        W = ref.astype(np.float64)
        products_on_every_tier(threads, x, w, x8 @ W.T, 1e-5 * (np.abs(x8) @ np.abs(W).T) + 1e-5)


@pytest.mark.parametrize("qtype", NEW)
def test_nan_inf_activation_rows(threads, qtype):
    """A NaN or inf in an activation row makes that row's outputs NaN on every tier (the decode
    kernels with their per-call activation layouts, and the prompt ones; BF16, whose
    activations stay float: NaN or +-inf); other rows stay finite."""
    from test_simd_tiers import tiers_here

    ck = threads
    m, n, k = 5, 19, 512
    w = weight(qtype, n, k, seed=4)
    x = np.random.default_rng(6).standard_normal((m, k)).astype(np.float32)
    x[1, 300], x[2, 3] = np.nan, -np.inf
    bad = (lambda a: ~np.isfinite(a)) if qtype == "bf16" else np.isnan
    for tier in tiers_here(ck):
        ck.set_simd_path(tier)
        y = T(np.zeros((m, n)))
        ck.matmul_q(T(x), w, y)
        assert bad(y.a[1:3]).all() and np.isfinite(y.a[[0, 3, 4]]).all(), tier
        for r in (1, 2):
            y1 = T(np.zeros((1, n)))
            ck.matmul_q(T(x[r:r + 1]), w, y1)
            assert bad(y1.a).all(), (tier, r)


@pytest.mark.parametrize("qtype", [q for q in NEW if q != "bf16"])
def test_decode_activation_layouts_on_the_heap(threads, nk, qtype):
    """K = 110848 (3464 blocks): every decode kernel's per-call activation layout (8 to 72
    bytes a block on the AVX2 tier) is past its 27 KB stack buffer and comes from the heap."""
    x, w, y64, tol = product_case(qtype, 1, 3, 110848, nk)
    products_on_every_tier(threads, x, w, y64, tol)


@pytest.mark.parametrize("qtype", NEW)
def test_nan_inf_rows_every_path(threads, nk, qtype):
    """A NaN or inf in an activation row makes that row's outputs NaN on every path (prompt
    rows, decode rows, the NumPy set; BF16's float products: not finite); the other rows stay
    finite."""
    from test_simd_tiers import tiers_here

    bad = (lambda a: ~np.isfinite(a)) if qtype == "bf16" else np.isnan

    m, n, k = 4, 19, 512
    w = weight(qtype, n, k, seed=4)
    x = np.random.default_rng(6).standard_normal((m, k)).astype(np.float32)
    x[1, 300], x[2, 3] = np.nan, -np.inf
    for ks, tier in [(nk, None)] + [(threads, t) for t in tiers_here(threads)]:
        if tier:
            threads.set_simd_path(tier)
        for rows in (m, 3):
            y = T(np.zeros((rows, n)))
            ks.matmul_q(T(x[:rows]), w, y)
            assert bad(y.a[1:3]).all() and np.isfinite(y.a[0]).all(), (tier, rows)
        for r in (1, 2):   # decode rows
            y1 = T(np.zeros((1, n)))
            ks.matmul_q(T(x[r:r + 1]), w, y1)
            assert bad(y1.a).all(), (tier, r)


def guarded_weight(qtype: str, n: int, k: int, seed: int):
    """``weight`` copied so that its last byte ends a page whose next page is PROT_NONE (a read
    past the weight faults), with the mapping kept alive by the returned object."""
    import ctypes
    import mmap
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("guard pages: Linux mprotect")
    w = weight(qtype, n, k, seed)
    page = mmap.PAGESIZE
    span = -(-w.nbytes // page) * page
    mm = mmap.mmap(-1, span + page)
    base = ctypes.addressof(ctypes.c_char.from_buffer(mm))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    if libc.mprotect(base + span, page, 0) != 0:
        pytest.skip("mprotect failed")
    a = np.frombuffer(mm, np.uint8)
    a[span - w.nbytes:span] = w.a
    return QWeight(a[span - w.nbytes:span], qtype, n, k), (mm, a)


@pytest.mark.parametrize("qtype", NEW)
def test_no_read_past_the_weight(threads, nk, qtype):
    """Every kernel on every tier stops at the weight's last byte (the next page faults):
    decode and prompt products, linears, matmul_qf, dequantize, embedding rows; last rows of 1
    super-block and of 3 blocks."""
    from test_simd_tiers import tiers_here

    f = FORMATS[qtype]
    for k in ((256, 768) if f.block_values == 256 else (96, 256)):
        n = 7
        w, keep = guarded_weight(qtype, n, k, seed=k)
        ref = T(np.zeros((n, k)))
        nk.dequantize(w, ref)
        x = np.random.default_rng(k).standard_normal((3, k)).astype(np.float32)
        for tier in tiers_here(threads):
            threads.set_simd_path(tier)
            for m in (1, 3):
                y = T(np.zeros((m, n)))
                threads.matmul_q(T(x[:m]), w, y)
                threads.matmul_qf(T(x[:m]), w, y)
            threads.linears(T(x[:1]), (w,), [T(np.zeros((1, n)))])
            y = T(np.zeros((n, k)))
            threads.dequantize(w, y)
            np.testing.assert_array_equal(y.a, ref.a)
            e = T(np.zeros((2, k)))
            threads.embedding_q(Tensor(np.array([n - 1, 0], np.int32)), w, e)
        del w, keep
