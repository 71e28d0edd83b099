"""matmul_qp, the prompt product with 8-bit activations (csrc/quant_prompt*.c): several rows x
[M, K] quantized to 8-bit blocks once, an integer GEMM over the quantized weight (AVX-512 VNNI,
AVX2 vpmaddubsw; Q8_0, Q4_0, Q4_1, Q6_K), the other block formats row by row.

The contract: every output is exactly what the portable one-row kernel gives for its row
(``matmul_q`` on the portable tier, M = 1: exact integer block sums, then block after block in
float32), so the result is the same bits on every SIMD tier this CPU has, for 1 and 2 threads,
whatever M and N (rows past the 16- and 8-row tiles, tiles of 1 .. 8 weight rows), and on the
NumPy set. The SIMD decode kernels sum the same integers in another order: prompt and decode
rows there agree within the products' bound, 1e-5 * (|x8| @ |Wd|^T) + 1e-5 of the float64
product of the same 8-bit activations, which every result here is also held to."""

from __future__ import annotations

import json
from contextlib import contextmanager

import numpy as np
import pytest

from qorus_core.errors import KernelError
from qorus_core.kernels.numpy_qformats import FORMATS, random_blocks
from qorus_core.kernels.numpy_quant import INT8_PROMPT, QWeight, quantize_q8_rows
from qorus_core.tensor import Tensor

GEMM = ["q8_0", "q4_0", "q4_1", "q6_k"]              # the formats with SIMD tiles
ROWS_PATH = ["q5_0", "q5_1", "iq4_nl", "q2_k", "q3_k", "q4_k", "q5_k"]   # the one-row kernel
# (M, N, blocks of 32): M across the 16- and 8-row panels, N across the 8-row weight tiles
SHAPES = [(1, 1, 1), (2, 5, 2), (7, 8, 3), (15, 9, 7), (16, 16, 8), (17, 19, 18), (33, 7, 5),
          (40, 70, 24)]


@contextmanager
def int8_prompts(kernels):
    """Prompt products with 8-bit activations (``matmul_qp``) for the ``INT8_PROMPT`` formats
    on the kernel set ``kernels``, as ``QORUS_INT8_PROMPTS=1`` makes the default (the class
    default restored after)."""
    kernels._int8_prompt = INT8_PROMPT
    try:
        yield
    finally:
        del kernels._int8_prompt


@contextmanager
def float_prompts(kernels):
    """Prompt products with float32 activations (``matmul_qf``) for every format on the kernel
    set ``kernels`` (its ``INT8_PROMPT`` default restored after): for the tests that hold a
    quantized model's float path to a float32 reference."""
    kernels._int8_prompt = frozenset()
    try:
        yield
    finally:
        del kernels._int8_prompt


def T(a) -> Tensor:
    return Tensor(np.ascontiguousarray(a, dtype=np.float32))


def tiers(ck) -> list[str]:
    from test_simd_tiers import tiers_here

    return tiers_here(ck)


def weight(qtype: str, n: int, k: int, seed: int = 0) -> QWeight:
    """Quantized from normals of mixed row scales (the quantizable formats) or random bits with
    small finite scales (the others)."""
    rng = np.random.default_rng(seed)
    if not FORMATS[qtype].quantizable:
        return QWeight(random_blocks(qtype, n, k, rng), qtype, n, k)
    a = rng.standard_normal((n, k)).astype(np.float32) * np.float32(10.0) ** rng.integers(
        -3, 3, (n, 1)).astype(np.float32)
    w = QWeight.empty(qtype, n, k)
    from qorus_core.kernels.numpy import NumpyKernels

    NumpyKernels().quantize(T(a), w, qtype)
    return w


def k_of(qtype: str, blocks: int) -> int:
    """A row width of about ``blocks`` 32-value blocks, whole super-blocks for the K-quants."""
    return -(-blocks * 32 // 256) * 256 if FORMATS[qtype].block_values == 256 else blocks * 32


def activations(m: int, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, k)).astype(np.float32)
    x *= np.float32(10.0) ** rng.integers(-4, 4, (m, 1)).astype(np.float32)
    return x


def one_row_portable(ck, x: np.ndarray, w: QWeight) -> np.ndarray:
    """matmul_q row by row on the portable tier: the one-row kernel the contract names."""
    ck.set_simd_path("portable")
    out = np.empty((x.shape[0], w.n), np.float32)
    for r in range(x.shape[0]):
        y = T(np.zeros((1, w.n)))
        ck.matmul_q(T(x[r:r + 1]), w, y)
        out[r] = y.a
    ck.set_simd_path("auto")
    return out


def float64_bound(nk, x: np.ndarray, w: QWeight):
    """(the float64 product of x's 8-bit blocks and the dequantized weight, its bound)."""
    q, d, _ = quantize_q8_rows(x)
    x8 = (q.astype(np.float64) * d[..., None]).reshape(x.shape)
    wd = T(np.zeros((w.n, w.k)))
    nk.dequantize(w, wd)
    W = wd.a.astype(np.float64)
    return x8 @ W.T, 1e-5 * (np.abs(x8) @ np.abs(W).T) + 1e-5


def assert_bits(got: np.ndarray, ref: np.ndarray, what: str) -> None:
    """The same float32 bits, NaN for NaN."""
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref), err_msg=f"{what}: NaN")
    keep = ~np.isnan(ref)
    np.testing.assert_array_equal(got.view(np.uint32)[keep], ref.view(np.uint32)[keep],
                                  err_msg=what)


def check_every_tier(ck, nk, x: np.ndarray, w: QWeight, bound: bool = True) -> np.ndarray:
    """matmul_qp on every tier and 1 / 2 threads: the bits of the one-row portable kernel and
    of the NumPy set; within the float64 bound (``bound``). Returns the result."""
    m, n = x.shape[0], w.n
    ref = one_row_portable(ck, x, w)
    yn = T(np.full((m, n), 7.0))
    nk.matmul_qp(T(x), w, yn)
    assert_bits(yn.a, ref, f"{w.qtype} numpy vs the one-row kernel")
    for tier in tiers(ck):
        ck.set_simd_path(tier)
        for nt in (1, 2):
            ck.set_threads(nt)
            y = T(np.full((m, n), 7.0))
            ck.matmul_qp(T(x), w, y)
            assert_bits(y.a, ref, f"{w.qtype} {tier} {nt} thread(s), M={m} N={n} K={w.k}")
    if bound:
        y64, tol = float64_bound(nk, x, w)
        ok = ~np.isnan(ref)
        assert np.all(np.abs(ref[ok] - y64[ok]) <= tol[ok]), float(np.abs(ref - y64).max())
    return ref


@pytest.mark.parametrize("qtype", GEMM)
@pytest.mark.parametrize("mnb", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_the_gemm_formats_every_tier(threads, nk, qtype, mnb):
    m, n, blocks = mnb
    k = k_of(qtype, blocks)
    check_every_tier(threads, nk, activations(m, k, seed=m + n), weight(qtype, n, k, seed=k))


@pytest.mark.parametrize("qtype", ROWS_PATH)
def test_the_other_block_formats_every_tier(threads, nk, qtype):
    k = k_of(qtype, 16)
    for m, n in ((3, 5), (18, 11)):
        check_every_tier(threads, nk, activations(m, k, seed=m), weight(qtype, n, k, seed=n))


@pytest.mark.parametrize("qtype", GEMM)
def test_every_block_count(threads, nk, qtype):
    """Rows of 1 .. 9 blocks (K-quants: super-blocks of 8), across the panels' row counts."""
    per = 8 if qtype == "q6_k" else 1
    for c in range(1, 10):
        k = c * per * 32
        check_every_tier(threads, nk, activations(9, k, seed=c), weight(qtype, 13, k, seed=c))


@pytest.mark.parametrize("qtype", GEMM)
def test_a_long_prompt_and_a_wide_row(threads, nk, qtype):
    """M = 300 (19 panels of 16, 38 of 8) and K = 16640 (520 blocks: every buffer sized from K)."""
    k = 16640 if qtype != "q6_k" else 16896
    check_every_tier(threads, nk, activations(5, k, seed=1), weight(qtype, 9, k, seed=2))
    check_every_tier(threads, nk, activations(300, 512, seed=3), weight(qtype, 27, 512, seed=4))


@pytest.mark.parametrize("qtype", GEMM + ["q4_k"])
def test_threads_split_the_tiles(threads, nk, qtype):
    """64 x 203 x 512: 6.6 M multiply-adds, past the 2 M a task, so 2 threads take 8 tasks of
    the 26 weight tiles (the one-row formats: 8 of the 203 rows), claimed in any order: the
    same bits as one thread and the one-row kernel."""
    check_every_tier(threads, nk, activations(64, 512, seed=21), weight(qtype, 203, 512, 22))


def extreme_weight(qtype: str, n: int, k: int, rng) -> QWeight:
    """Blocks whose integers sit at the format's ends (Q8_0: -128 and 127; Q4: 0 and 15; Q6_K:
    0 and 63) with mixed random ones, all 8-bit / 4-bit / 6-bit patterns reachable, and
    finite fp16 scales of both signs: what saturates a 16-bit partial sum if any does."""
    f = FORMATS[qtype]
    nblk = n * k // f.block_values
    raw = rng.integers(0, 256, (nblk, f.block_bytes), dtype=np.uint8)
    ends = rng.integers(0, 3, nblk)                  # 0: random, 1: all low, 2: all high
    lo, hi = {"q8_0": (0x80, 0x7F), "q4_0": (0x00, 0xFF), "q4_1": (0x00, 0xFF),
              "q6_k": (0x00, 0xFF)}[qtype]
    quants = {"q8_0": slice(2, 34), "q4_0": slice(2, 18), "q4_1": slice(4, 20),
              "q6_k": slice(0, 192)}[qtype]
    raw[ends == 1, quants] = lo
    raw[ends == 2, quants] = hi
    scales = {"q8_0": (0,), "q4_0": (0,), "q4_1": (0, 2), "q6_k": (208,)}[qtype]
    for at in scales:
        s = rng.uniform(-0.02, 0.02, nblk).astype(np.float16)
        raw[:, at:at + 2] = s.view(np.uint8).reshape(-1, 2)
    if qtype == "q6_k":                              # sub-block scales at -128 and 127 too
        raw[ends == 1, 192:208] = 0x80
        raw[ends == 2, 192:208] = 0x7F
    return QWeight(raw.reshape(-1), qtype, n, k)


@pytest.mark.parametrize("qtype", GEMM)
def test_integers_at_the_formats_ends(threads, nk, qtype):
    """Activations at +-127 (all of a block's |q| = 127, of one sign or mixed) against weights
    at their integer ends: the integer sums stay exact on every tier (no 16-bit saturation in
    the AVX2 tile, no lost +128 offset)."""
    rng = np.random.default_rng(5)
    k = 512
    w = extreme_weight(qtype, 21, k, rng)
    x = np.empty((19, k), np.float32)
    x[:6] = 3.0                                      # q = 127: bytes q + 128 = 255
    x[6:12] = -3.0                                   # q = -127: bytes 1
    x[12:] = np.where(rng.random((7, k)) < 0.5, 3.0, -3.0)
    x[18, :32] = 0.0                                 # an all-zero block: d = 0
    check_every_tier(threads, nk, x, w)


FP16_EXTREMES = np.array([65504.0, -65504.0, np.inf, -np.inf, np.nan, 6.1035156e-05,
                          5.9604645e-08, -5.9604645e-08, 0.0, -0.0, 1.0, -3.5], np.float16)


@pytest.mark.parametrize("qtype", GEMM)
def test_weight_scales_at_the_fp16_extremes(threads, nk, qtype):
    """fp16 block scales (and Q4_1's m) at the largest, inf, NaN, subnormal and zeros of both
    signs: every tier gives the one-row kernel's bits (NaN for NaN, inf for inf)."""
    rng = np.random.default_rng(12)
    k = 512
    w = extreme_weight(qtype, 13, k, rng)
    raw = w.a.copy().reshape(-1, FORMATS[qtype].block_bytes)
    for at in {"q8_0": (0,), "q4_0": (0,), "q4_1": (0, 2), "q6_k": (208,)}[qtype]:
        raw[:, at:at + 2] = rng.choice(FP16_EXTREMES, len(raw)).view(np.uint8).reshape(-1, 2)
    w = QWeight(raw.reshape(-1), qtype, 13, k)
    with np.errstate(all="ignore"):
        check_every_tier(threads, nk, activations(18, k, seed=13), w, bound=False)


@pytest.mark.parametrize("qtype", GEMM + ["q5_0"])
def test_nan_and_inf_rows(threads, nk, qtype):
    """A NaN or inf in an activation row: that row's outputs are NaN on every tier and set,
    the other rows are the one-row kernel's bits."""
    k = k_of(qtype, 16)
    x = activations(20, k, seed=7)
    x[3, 5], x[17, k - 1] = np.nan, np.inf
    y = check_every_tier(threads, nk, x, weight(qtype, 11, k, seed=8), bound=False)
    assert np.isnan(y[[3, 17]]).all()
    assert np.isfinite(np.delete(y, [3, 17], axis=0)).all()


@pytest.mark.parametrize("qtype", GEMM)
def test_no_read_past_the_weight(threads, nk, qtype):
    """The tiles stop at the weight's last byte (the next page faults)."""
    from test_quant_formats import guarded_weight

    k = k_of(qtype, 24)
    w, keep = guarded_weight(qtype, 13, k, seed=3)
    x = activations(18, k, seed=9)
    check_every_tier(threads, nk, x, w, bound=False)
    del w, keep


def test_empty_and_zero_width(threads, nk):
    for ks in (threads, nk):
        y = T(np.full((3, 0), 7.0))
        ks.matmul_qp(T(np.zeros((3, 64))), QWeight.empty("q8_0", 0, 64), y)
        y = T(np.full((0, 4), 7.0))
        ks.matmul_qp(T(np.zeros((0, 64))), QWeight.empty("q4_0", 4, 64), y)
        y = T(np.full((2, 4), 7.0))
        ks.matmul_qp(T(np.zeros((2, 0))), QWeight.empty("q4_1", 4, 0), y)
        assert (y.a == 0).all()


@pytest.mark.parametrize("qtype", ["f16", "bf16"])
def test_float_formats_are_refused(kernels, qtype):
    from qorus_core.kernels import get_kernels

    k = get_kernels(kernels)
    with pytest.raises(KernelError, match=f"matmul_qp: a {qtype} weight has no 8-bit"):
        k.matmul_qp(T(np.zeros((2, 64))), QWeight.empty(qtype, 3, 64), T(np.zeros((2, 3))))


@pytest.mark.parametrize("qtype", GEMM + ["q5_0", "q4_k", "f16"])
def test_prompts_take_the_int8_gemm_for_its_formats(kernels, qtype):
    """linear with several rows (a prompt) is matmul_qp for the INT8_PROMPT formats and
    matmul_qf for the others; prompt_linear gives one row (an LM head's last position) what
    the row gets among many: the same bits through matmul_qp (each row its own sums), within
    float tolerance through matmul_qf (a GEMM's blocking depends on M)."""
    from qorus_core.kernels import get_kernels

    k = get_kernels(kernels)
    kk = k_of(qtype, 8)
    w = weight(qtype, 10, kk, seed=1) if qtype != "f16" else QWeight.empty("f16", 10, kk)
    if qtype == "f16":
        k.quantize(T(np.random.default_rng(0).standard_normal((10, kk))), w, "f16")
    x = activations(6, kk, seed=2)
    y, ref = T(np.zeros((6, 10))), T(np.zeros((6, 10)))
    k.linear(T(x), w, y)
    (k.matmul_qp if qtype in INT8_PROMPT else k.matmul_qf)(T(x), w, ref)
    np.testing.assert_array_equal(y.a, ref.a)
    last = T(np.zeros((1, 10)))
    k.prompt_linear(T(x[5:6]), w, last)
    if qtype in INT8_PROMPT:
        np.testing.assert_array_equal(last.a[0], y.a[5])
    else:
        np.testing.assert_allclose(last.a[0], y.a[5], rtol=1e-5,
                                   atol=1e-5 * float(np.abs(y.a[5]).max()))
    assert INT8_PROMPT == {"q8_0", "q4_0", "q4_1", "q6_k"}


@pytest.mark.parametrize("qtype", GEMM)
def test_prompt_rows_against_the_simd_decode_rows(threads, nk, qtype):
    """On the SIMD tiers the decode kernels (matmul_q, one row) sum the same integer block
    products in another order: each prompt row is within the products' bound of its decode
    row (and bit-equal on the portable tier: check_every_tier)."""
    k = k_of(qtype, 18)
    x, w = activations(12, k, seed=11), weight(qtype, 23, k, seed=12)
    _, tol = float64_bound(nk, x, w)
    for tier in tiers(threads):
        threads.set_simd_path(tier)
        y = T(np.zeros((12, 23)))
        threads.matmul_qp(T(x), w, y)
        for r in range(12):
            d = T(np.zeros((1, 23)))
            threads.matmul_q(T(x[r:r + 1]), w, d)
            assert np.all(np.abs(y.a[r] - d.a[0]) <= 2 * tol[r]), (tier, r)


def test_linears_qp_is_matmul_qp_for_each_weight(threads, nk):
    """linears_qp over weights of mixed block formats (x quantized once for each three, their
    tiles in one parallel region; a one-row-kernel format among them) gives each output the
    bits matmul_qp gives it alone, on every tier and both sets; linears with a prompt's rows
    and INT8_PROMPT weights (q/k/v, gate/up) is the same."""
    k = 512
    ws = [weight("q8_0", 21, k, 1), weight("q6_k", 9, k, 2), weight("q4_1", 1, k, 3),
          weight("q5_0", 6, k, 4), weight("q4_0", 17, k, 5)]
    x = activations(35, k, seed=6)
    alone = []
    for w in ws:
        y = T(np.zeros((35, w.n)))
        nk.matmul_qp(T(x), w, y)
        alone.append(y.a.copy())
    for ks, tier in [(nk, None)] + [(threads, t) for t in tiers(threads)]:
        if tier:
            threads.set_simd_path(tier)
        for nt in ((1, 2) if tier else (None,)):
            if nt:
                threads.set_threads(nt)
            ys = [T(np.full((35, w.n), 7.0)) for w in ws]
            ks.linears_qp(T(x), ws, ys)
            for y, ref in zip(ys, alone):
                assert_bits(y.a, ref, f"linears_qp {tier} {nt}")
            qkv = [w for w in ws if w.qtype in INT8_PROMPT][:3]
            ys = [T(np.full((35, w.n), 7.0)) for w in qkv]
            ks.linears(T(x), qkv, ys)
            for y, w in zip(ys, qkv):
                assert_bits(y.a, alone[ws.index(w)], f"linears {tier} {nt}")


def test_float_prompts_switch_the_prompt_path(kernels):
    """float_prompts (the tests' float path) makes prompts matmul_qf, then restores matmul_qp."""
    from qorus_core.kernels import get_kernels

    k = get_kernels(kernels)
    w, x = weight("q8_0", 9, 96, seed=1), activations(5, 96, seed=2)
    qp, qf, y = T(np.zeros((5, 9))), T(np.zeros((5, 9))), T(np.zeros((5, 9)))
    k.matmul_qp(T(x), w, qp)
    k.matmul_qf(T(x), w, qf)
    with float_prompts(k):
        k.linear(T(x), w, y)
        np.testing.assert_array_equal(y.a, qf.a)
        k.linears(T(x), [w, w], [y, T(np.zeros((5, 9)))])
        np.testing.assert_array_equal(y.a, qf.a)
    k.linear(T(x), w, y)
    np.testing.assert_array_equal(y.a, qp.a)


QP_REPORT = """
    import hashlib, json
    import numpy as np
    from qorus_core.kernels import get_kernels
    from qorus_core.kernels.numpy_quant import QWeight
    from qorus_core.tensor import Tensor
    ck = get_kernels("c")
    out = {"quant": ck.simd_families()["quant"], "y": {}}
    for qtype, k in (("q8_0", 352), ("q4_0", 352), ("q4_1", 352), ("q6_k", 512)):
        rng = np.random.default_rng(7)
        w = QWeight.empty(qtype, 23, k) if qtype != "q6_k" else None
        if w is None:
            from qorus_core.kernels.numpy_qformats import random_blocks
            w = QWeight(random_blocks(qtype, 23, k, rng), qtype, 23, k)
        else:
            ck.quantize(Tensor(rng.standard_normal((23, k)).astype(np.float32)), w, qtype)
        y = Tensor(np.zeros((37, 23), np.float32))
        ck.matmul_qp(Tensor(rng.standard_normal((37, k)).astype(np.float32)), w, y)
        out["y"][qtype] = hashlib.sha256(y.a.tobytes()).hexdigest()
    print(json.dumps(out))
"""


def test_every_tier_by_qorus_simd_gives_the_same_bits(ck):
    """QORUS_SIMD forcing each tier this CPU has (and a CPU posing without AVX512VNNI, whose
    quant family runs AVX2), in fresh processes: the same output bits everywhere."""
    from test_simd_tiers import MASK_AVX512, run_py

    from qorus_core.kernels import simd

    envs = {t: dict(QORUS_SIMD=t) for t in tiers(ck)}
    envs["novnni"] = dict(QORUS_CPU_MASK=hex(1 << simd.CPU_BITS.index("avx512vnni")))
    envs["noavx512"] = dict(QORUS_CPU_MASK=hex(MASK_AVX512))
    reps = {}
    for name, env in envs.items():
        proc = run_py(QP_REPORT, **env)
        assert proc.returncode == 0, proc.stderr
        reps[name] = json.loads(proc.stdout)
    for t in tiers(ck):
        assert reps[t]["quant"] == t, reps[t]
    assert len({json.dumps(r["y"], sort_keys=True) for r in reps.values()}) == 1, reps


@pytest.mark.parametrize("env, expected", [(None, []), ("0", []),
                                           ("1", ["q4_0", "q4_1", "q6_k", "q8_0"])])
def test_int8_prompts_are_opt_in(env, expected):
    """Float32 prompt activations unless QORUS_INT8_PROMPTS=1 (this suite's conftest sets it
    for its own process, so the default is read in a fresh one)."""
    import os
    import subprocess
    import sys

    environ = {k: v for k, v in os.environ.items() if k != "QORUS_INT8_PROMPTS"}
    if env is not None:
        environ["QORUS_INT8_PROMPTS"] = env
    code = ("from qorus_core.kernels.numpy_quant import WeightDispatch; "
            "print(','.join(sorted(WeightDispatch._int8_prompt)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=environ, check=True).stdout.strip()
    assert (out.split(",") if out else []) == expected
