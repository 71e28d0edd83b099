"""Every SIMD tier the CPU has, forced one at a time (``set_simd_path`` in-process, QORUS_SIMD in
subprocesses), against the portable tier and NumPy; and the refusal of a tier the CPU lacks.

Promises held here: the "vec" family (elementwise activations and their backward, add / mul /
scale / axpy, softmax, GLU, LayerNorm (with or without its affine), RMSNorm, cross-entropy,
SGD / Adam) is bit-identical on every tier, edge values (NaN, +-inf, +-0, subnormals, huge) and
every length (1, 15, 16, 17, 33, ..., threaded) included (NaN for NaN: a NaN's sign bit is not
promised), except the exact GELU and its backward, whose SIMD tiers (FMA erf) are within
decl/act.py's GELU_TOL of portable and bit-identical to each other; the "fused" family is
within float tolerance of portable (its SIMD builds contract to FMA); GEMM is within
1e-5 * sqrt(K) * (|alpha| + |beta| + 1) of a float64 product on every tier, gives the same bits
for any thread count, and propagates NaN / inf as float64 does; the "quant" products (matmul_q:
exact integer block dots, scaled and summed in float32) are within 1e-5 * (|x8| @ |Wd|^T) + 1e-5
of the float64 product on every tier (AVX-512 only with VNNI: else it runs AVX2), the same bits
for any thread count, NaN rows for NaN / inf activations. A tier this CPU lacks is skipped
with the missing features named; its refusal is tested everywhere by hiding features with
QORUS_CPU_MASK.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from qorus_core.errors import KernelError
from qorus_core.kernels import simd
from qorus_core.kernels.numpy_quant import QWeight, quantize_q8_rows
from qorus_core.tensor import Tensor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# QR_CPU_AVX512* bits (simd.CPU_BITS order): hides AVX-512 from the library's detection
MASK_AVX512 = sum(1 << simd.CPU_BITS.index(f) for f in simd.CPU_BITS if f.startswith("avx512"))
MASK_AVX2 = (1 << simd.CPU_BITS.index("avx2")) | (1 << simd.CPU_BITS.index("fma"))
EDGE = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e-45, 1e-38, -1e-38,
                 1e-30, 1e-7, -1e-7, 0.3, -0.3, 0.625, -0.625, 0.921875, -0.921875, 1.0, -1.0,
                 3.92, -3.92, 5.0, -5.0, 9.0, -9.0, 20.0, -20.0, 44.0, -44.0, 88.0, -88.0,
                 88.8, -88.8, 89.0, -103.0, -104.0, -110.0, 100.0, 1e6, -1e6, 1e30, -1e30,
                 3.4e38, -3.4e38], np.float32)
LENGTHS = [1, 15, 16, 17, 33, 255, 1000, 140_001]   # the last splits over threads


def tiers_here(ck) -> list[str]:
    compiled = ck._simd_compiled()
    return [t for i, t in enumerate(simd.TIERS)
            if i <= compiled and not simd.missing_features(ck._lib, t)]


def need(ck, tier: str) -> None:
    """Skip (naming why) unless this CPU and build run ``tier``."""
    if tier in tiers_here(ck):
        return
    missing = simd.missing_features(ck._lib, tier)
    pytest.skip(f"SIMD tier {tier} unavailable here: "
                + (f"the CPU lacks {', '.join(missing)}" if missing else "not compiled in"))


def test_every_tier_this_cpu_has_is_compiled_in(ck):
    """A tier file that does not compile only warns at build time (setup.py builds the library
    without that tier, and its tests above skip as "not compiled in"), so a compile break of an
    AVX-512 file would pass unnoticed. CI sets ``QORUS_REQUIRE_TIERS=1``, which makes a tier
    this CPU has but the library lacks a failure here rather than a skip."""
    lacking = [t for i, t in enumerate(simd.TIERS)
               if i > ck._simd_compiled() and not simd.missing_features(ck._lib, t)]
    if lacking and os.environ.get("QORUS_REQUIRE_TIERS") != "1":
        pytest.skip(f"the CPU has {', '.join(lacking)} but the library was built without it "
                    "(see the build's warning)")
    assert not lacking, f"the CPU has {', '.join(lacking)} but the library was built without it"


def inputs(n: int, seed: int, scale: float = 4.0) -> np.ndarray:
    x = (np.random.default_rng(seed).standard_normal(n) * scale).astype(np.float32)
    k = min(n, EDGE.size)
    x[:k] = EDGE[np.random.default_rng(seed + 1).permutation(EDGE.size)[:k]]
    return x


def assert_same(got: np.ndarray, ref: np.ndarray, what: str) -> None:
    """The same float32 bits, NaN for NaN (a NaN's sign and payload depend on which operand
    the instruction took it from, which the compiler may swap: not part of the promise)."""
    g, r = np.ascontiguousarray(got, np.float32), np.ascontiguousarray(ref, np.float32)
    np.testing.assert_array_equal(np.isnan(g), np.isnan(r), err_msg=f"{what}: NaN positions")
    keep = ~np.isnan(r)
    np.testing.assert_array_equal(g.view(np.uint32)[keep], r.view(np.uint32)[keep],
                                  err_msg=what)


def T(a):
    return Tensor(np.array(a, np.float32, copy=True))


# ----------------------------------------------------------------------------- vec family
def ew_results(ck, n: int) -> dict[str, np.ndarray]:
    """Every vec-family elementwise kernel on n elements with edge values: {name: output}."""
    x, dy, y01 = inputs(n, 1), inputs(n, 2, 1.0), np.abs(inputs(n, 3, 0.4))
    out = {}

    def run(name, fn, *arrays):
        ts = [T(a) for a in arrays]
        res = T(np.full(n, 7.0, np.float32))
        with np.errstate(all="ignore"):
            fn(*ts, res)
        out[name] = res.a.copy()

    for approx in (False, True):
        run(f"gelu{int(approx)}", lambda a, o, ap=approx: ck.gelu(a, o, ap), x)
        run(f"gelu_bwd{int(approx)}", lambda a, d, o, ap=approx: ck.gelu_bwd(a, d, o, ap), x, dy)
    for name in ("relu", "sigmoid", "silu", "tanh"):
        run(name, getattr(ck, name), x)
    for name in ("relu_bwd", "silu_bwd"):
        run(name, getattr(ck, name), x, dy)
    for name in ("sigmoid_bwd", "tanh_bwd"):
        run(name, getattr(ck, name), y01, dy)
    for name, args in (("leaky_relu", (0.2,)), ("elu", (0.7,)), ("softplus", (1.0, 20.0)),
                       ("softplus", (2.0, 5.0)), ("mish", ()), ("hardswish", ())):
        fwd, bwd, tag = getattr(ck, name), getattr(ck, name + "_bwd"), f"{name}{args}"
        run(tag, lambda a, o, f=fwd, s=args: f(a, o, *s), x)
        run(tag + "_bwd", lambda a, d, o, f=bwd, s=args: f(a, d, o, *s), x, dy)
    ab = np.concatenate([x.reshape(1, n), dy.reshape(1, n)], axis=1)   # one row [a | b]
    run("glu", lambda a, o: ck.glu(a, o), ab)                           # b: edge values too
    run("glu_ba", lambda a, o: ck.glu(a, o), ab[:, ::-1].copy())
    wide = T(np.full((1, 2 * n), 7.0, np.float32))
    with np.errstate(all="ignore"):
        ck.glu_bwd(T(ab), T(dy.reshape(1, n)), wide)
    out["glu_bwd"] = wide.a.copy()
    run("add", ck.add, x, dy)
    run("mul", ck.mul, x, dy)
    for name, fn in (("scale", lambda o: ck.scale(o, 0.37)), ("axpy", lambda o: ck.axpy(-1.3, T(x), o))):
        t = T(dy)
        with np.errstate(all="ignore"):
            fn(t)
        out[name] = t.a.copy()
    return out


#: the exact GELU and its backward: the SIMD tiers run the FMA erf of csrc/qr_math.h, within
#: decl/act.py's bound of the portable formula (not its bits; tests/test_gelu_accuracy.py
#: holds every tier to GELU_BOUND against float64), and bit-identical to each other
NOT_BIT_IDENTICAL = ("gelu0", "gelu_bwd0")


def assert_gelu_close(got: np.ndarray, ref: np.ndarray, name: str, n: int) -> None:
    """``got`` within GELU_TOL (backward: GELU_BWD_TOL per unit of |dy|) of the portable
    ``ref``; the same NaN positions, the same infinities."""
    from qorus_core.kernels.decl.act import GELU_BWD_TOL, GELU_TOL

    rtol, atol = GELU_TOL if name == "gelu0" else GELU_BWD_TOL
    scale = 1.0 if name == "gelu0" else np.abs(inputs(n, 2, 1.0)).astype(np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref), err_msg=f"{name}: NaN positions")
    keep = ~np.isnan(ref)
    inf = np.isinf(ref)
    np.testing.assert_array_equal(got[inf], ref[inf], err_msg=f"{name}: infinities")
    g, r = got.astype(np.float64), ref.astype(np.float64)
    with np.errstate(invalid="ignore"):     # inf - inf: checked above
        err = np.abs(g - r)
    bound = rtol * np.abs(r) + atol * scale
    bad = keep & ~inf & ~(err <= bound)
    assert not bad.any(), (name, n, got[bad][:4], ref[bad][:4])


@pytest.mark.parametrize("tier", ["avx2", "avx512"])
@pytest.mark.parametrize("n", LENGTHS)
def test_elementwise_bit_identical_to_portable(threads, tier, n):
    need(threads, tier)
    ck = threads
    ck.set_simd_path("portable")
    ref = ew_results(ck, n)
    assert ck.set_simd_path(tier) == tier
    got = ew_results(ck, n)
    for name in ref:
        if name in NOT_BIT_IDENTICAL:
            assert_gelu_close(got[name], ref[name], name, n)
        else:
            assert_same(got[name], ref[name], f"{name} n={n}")
    if tier == "avx512" and "avx2" in tiers_here(ck):   # the two FMA GELUs: the same bits
        ck.set_simd_path("avx2")
        narrow = ew_results(ck, n)
        for name in NOT_BIT_IDENTICAL:
            assert_same(got[name], narrow[name], f"{name} n={n}: avx512 vs avx2")


def row_results(ck, rows: int, n: int) -> dict[str, np.ndarray]:
    """Softmax, LayerNorm (with and without its affine), RMSNorm (forward and backward),
    cross-entropy, GLU over rows: {name: output}."""
    rng = np.random.default_rng(rows * 1000 + n)
    x = (rng.standard_normal((rows, n)) * 3).astype(np.float32)
    if rows > 3:                             # edge values in row 0, then a row of -inf, a
        x[0, :min(n, 40)] = inputs(min(n, 40), 5)   # row with +inf and a huge row
        x[1] = np.float32(-np.inf)
        x[2, n // 2] = np.inf
        x[3] = x[3] * np.float32(1e30)
    dy = rng.standard_normal((rows, n)).astype(np.float32)
    g, b = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    out = {}
    with np.errstate(all="ignore"):
        y = T(np.zeros((rows, n)))
        ck.softmax(T(x), y)
        out["softmax"] = y.a.copy()
        dx = T(np.zeros((rows, n)))
        ck.softmax_bwd(y, T(dy), dx)
        out["softmax_bwd"] = dx.a.copy()
        xs = np.nan_to_num(x, nan=0.5, posinf=3.0, neginf=-3.0)   # norms: finite rows too
        for xin, tag in ((x, ""), (xs, "_finite")):
            y, m, r = T(np.zeros((rows, n))), T(np.zeros(rows)), T(np.zeros(rows))
            ck.layernorm(T(xin), T(g), T(b), y, m, r, 1e-5)
            dx, dg, db = T(np.zeros((rows, n))), T(np.ones(n)), T(np.ones(n))
            ck.layernorm_bwd(T(xin), T(g), m, r, T(dy), dx, dg, db)
            out.update({f"ln_y{tag}": y.a.copy(), f"ln_mean{tag}": m.a.copy(),
                        f"ln_rstd{tag}": r.a.copy(), f"ln_dx{tag}": dx.a.copy(),
                        f"ln_dg{tag}": dg.a.copy(), f"ln_db{tag}": db.a.copy()})
            y, m, r, dx = T(np.zeros((rows, n))), T(np.zeros(rows)), T(np.zeros(rows)), \
                T(np.zeros((rows, n)))
            ck.layernorm(T(xin), None, None, y, m, r, 1e-5)         # no affine
            ck.layernorm_bwd(T(xin), None, m, r, T(dy), dx, None, None)
            out.update({f"ln0_y{tag}": y.a.copy(), f"ln0_dx{tag}": dx.a.copy()})
            y, r = T(np.zeros((rows, n))), T(np.zeros(rows))
            ck.rmsnorm(T(xin), T(g), y, r, 1e-6)
            dx, dw = T(np.zeros((rows, n))), T(np.ones(n))
            ck.rmsnorm_bwd(T(xin), T(g), r, T(dy), dx, dw)
            out.update({f"rms_y{tag}": y.a.copy(), f"rms_rstd{tag}": r.a.copy(),
                        f"rms_dx{tag}": dx.a.copy(), f"rms_dw{tag}": dw.a.copy()})
        t = Tensor(np.arange(rows, dtype=np.int32) % n)
        d = T(np.zeros((rows, n)))
        out["ce_loss"] = np.float32([ck.cross_entropy(T(xs), t, d, 0.1)])
        out["ce_d"] = d.a.copy()
        out["ce_loss_nod"] = np.float32([ck.cross_entropy(T(xs), t, None, 0.0)])
        if n % 2 == 0:                       # GLU: rows of [a | b]
            y, dx = T(np.zeros((rows, n // 2))), T(np.zeros((rows, n)))
            ck.glu(T(x), y)
            ck.glu_bwd(T(x), T(dy[:, :n // 2]), dx)
            out.update({"glu_rows": y.a.copy(), "glu_bwd_rows": dx.a.copy()})
    return out


@pytest.mark.parametrize("tier", ["avx2", "avx512"])
@pytest.mark.parametrize("rows,n", [(1, 1), (5, 15), (6, 16), (7, 17), (9, 33), (64, 256),
                                    (3, 1000), (300, 513)])
def test_rows_bit_identical_to_portable(threads, tier, rows, n):
    need(threads, tier)
    ck = threads
    ck.set_simd_path("portable")
    ref = row_results(ck, rows, n)
    ck.set_simd_path(tier)
    got = row_results(ck, rows, n)
    for name in ref:
        assert_same(got[name], ref[name], name)


@pytest.mark.parametrize("tier", ["avx2", "avx512"])
def test_optimizers_bit_identical_to_portable(threads, tier):
    need(threads, tier)
    ck = threads
    n = 70_001
    rng = np.random.default_rng(9)
    p0, g0 = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    res = {}
    for path in ("portable", tier):
        ck.set_simd_path(path)
        p, g, buf = T(p0), T(g0), T(np.zeros(n))
        for step in (1, 2):
            ck.sgd_step(p, g, buf, 0.1, 0.9, 0.1, 1e-4, True, step == 1)
        q, m, v = T(p0), T(np.zeros(n)), T(np.zeros(n))
        for step in (1, 2, 3):
            ck.adam_step(q, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.01, step, True)
        res[path] = [a.a.copy() for a in (p, buf, q, m, v)]
    for a, b in zip(res["portable"], res[tier]):
        assert_same(b, a, "optimizer state")


# ----------------------------------------------------------------------------- fused family
def fused_results(ck) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(21)

    def r(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    g, u, dy = r(37, 65), r(37, 65), r(37, 65)
    g.reshape(-1)[:EDGE.size] = EDGE
    out = {}
    with np.errstate(all="ignore"):
        y, dg, du = T(np.zeros_like(g)), T(np.zeros_like(g)), T(np.zeros_like(g))
        ck.swiglu(T(g), T(u), y)
        ck.swiglu_bwd(T(g), T(u), T(dy), dg, du)
        out.update(swiglu=y.a.copy(), swiglu_dg=dg.a.copy(), swiglu_du=du.a.copy())
        x, w = r(33, 47), r(47)
        for name in ("add_bcast", "mul_bcast"):
            y = T(np.zeros_like(x))
            getattr(ck, name)(T(x), T(w), y)
            out[name] = y.a.copy()
        xr, yr = r(2, 17, 3, 34), T(np.zeros((2, 17, 3, 34)))
        ck.rope(T(xr), yr, 5, 10000.0, True)
        out["rope"] = yr.a.copy()
        xs, ys = r(3, 17, 33), T(np.zeros((3, 17, 33)))
        ck.softmax_masked(T(xs), ys, 0.7, True)
        out["softmax_masked"] = ys.a.copy()
        q, k, v = r(2, 33, 4, 40), r(2, 33, 2, 40), r(2, 33, 2, 40)
        o, lse = T(np.zeros_like(q)), T(np.zeros((2, 4, 33)))
        ck.attention(T(q), T(k), T(v), o, lse, None, 4, 2, True)
        out.update(attention=o.a.copy(), lse=lse.a.copy())
    return out


@pytest.mark.parametrize("tier", ["avx2", "avx512"])
def test_fused_within_tolerance_of_portable(threads, tier):
    """The fused family's SIMD builds contract to FMA: float tolerance, same NaN / inf."""
    need(threads, tier)
    ck = threads
    ck.set_simd_path("portable")
    ref = fused_results(ck)
    ck.set_simd_path(tier)
    assert ck.simd_families()["fused"] == tier
    got = fused_results(ck)
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-4, atol=2e-5, err_msg=name)


# ----------------------------------------------------------------------------- gemm
GEMM_SHAPES = [(1, 1, 1), (1, 17, 33), (4, 15, 16), (5, 33, 17), (12, 32, 15), (13, 31, 16),
               (15, 17, 33), (17, 64, 1), (25, 65, 513), (100, 33, 300), (130, 257, 1025),
               (384, 256, 128)]


@pytest.mark.parametrize("tier", simd.TIERS)
@pytest.mark.parametrize("mnk", GEMM_SHAPES)
def test_gemm_every_tier(threads, tier, mnk):
    need(threads, tier)
    ck, (m, n, k) = threads, mnk
    ck.set_simd_path(tier)
    rng = np.random.default_rng(m * 7 + n * 3 + k)
    for ta in (False, True):
        for tb in (False, True):
            a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
            b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
            c0 = rng.standard_normal((m, n)).astype(np.float32)
            for alpha, beta in ((1.0, 0.0), (-0.7, 0.3)):
                ref = alpha * ((a.T if ta else a).astype(np.float64) @ (b.T if tb else b))
                ref += beta * c0
                got = []
                for nt in (1, 2, 3):
                    ck.set_threads(nt)
                    c = T(c0)
                    ck.gemm(T(a), T(b), c, ta, tb, alpha, beta)
                    got.append(c.a.copy())
                tol = 1e-5 * np.sqrt(k) * (abs(alpha) + abs(beta) + 1)
                np.testing.assert_allclose(got[0], ref, rtol=1e-5, atol=tol,
                                           err_msg=f"{tier} ta={ta} tb={tb}")
                for other in got[1:]:
                    np.testing.assert_array_equal(other, got[0])


@pytest.mark.parametrize("tier", simd.TIERS)
@pytest.mark.parametrize("mnk", [(3, 20, 40), (29, 45, 37)])   # skinny and packed
def test_gemm_nan_inf(threads, tier, mnk):
    """A NaN or inf in A / B reaches exactly the outputs float64 says (inf * 0 = NaN)."""
    need(threads, tier)
    ck, (m, n, k) = threads, mnk
    ck.set_simd_path(tier)
    rng = np.random.default_rng(4)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    a[1, 3], a[2, 5], b[7, 4], b[6, 2] = np.nan, np.inf, -np.inf, 0.0
    a[0, 6] = 0.0
    b[6, 9] = np.inf                                   # meets a[0, 6] = 0: NaN in row 0
    with np.errstate(all="ignore"):
        ref = a.astype(np.float64) @ b
    for tb in (False, True):
        c = T(np.full((m, n), 5.0))
        ck.gemm(T(a), T(b.T.copy() if tb else b), c, False, tb, 1.0, 0.0)
        np.testing.assert_array_equal(np.isnan(c.a), np.isnan(ref))
        np.testing.assert_array_equal(np.isposinf(c.a), np.isposinf(ref))
        np.testing.assert_array_equal(np.isneginf(c.a), np.isneginf(ref))


# ----------------------------------------------------------------------------- dispatch
def test_setter_and_families(threads):
    ck = threads
    here = tiers_here(ck)
    assert here[0] == "portable" and ck.set_simd_path("auto") == here[-1]
    for tier in here:
        assert ck.set_simd_path(tier) == tier == ck.simd_path
        fam = ck.simd_families()
        assert set(fam) == {"vec", "elementwise", "gemm", "fused", "quant", "rnn", "conv", "strided", "peak"}
        assert fam["conv"] == "portable"
        assert all(simd.TIERS.index(t) <= simd.TIERS.index(tier) for t in fam.values())
        if tier == "avx512":                 # families with no AVX-512 kernel keep AVX2
            assert fam["vec"] == fam["elementwise"] == fam["gemm"] == fam["peak"] == "avx512"
            assert fam["fused"] == fam["rnn"] == "avx512"
            assert fam["quant"] == ("avx512" if ck.cpu_features()["avx512vnni"] else "avx2")
        else:
            assert fam["vec"] == fam["elementwise"] == fam["gemm"] == fam["rnn"] == tier
    with pytest.raises(KernelError, match="expected one of auto, avx512, avx2, portable"):
        ck.set_simd_path("avx1024")
    assert ck._lib.qr_set_simd_path(7) == -1 and ck._lib.qr_set_simd_path(-5) == -1


# ----------------------------------------------------------------------------- quant
QUANT_QTYPES = ["q8_0", "q4_0", "q4_1", "f16"]
# (M, N, K): K of 1, 2, 3 blocks, whole quads of blocks and quads + 1, 2, 3; M = 1 (decode rows,
# summed 8 at a time: N % 8 tails) and prompts with a last partial group of 4 or 8 rows
QUANT_SHAPES = [(1, 5, 32), (1, 9, 64), (1, 17, 96), (1, 33, 128), (1, 40, 160), (1, 23, 224),
                (1, 300, 576), (1, 13, 4096), (2, 19, 96), (3, 7, 160), (5, 31, 224),
                (8, 13, 288), (9, 70, 352), (13, 41, 64), (17, 29, 576), (20, 11, 128)]


def quant_case(ck, nk, qtype, m, n, k):
    """(x with a NaN row and an inf row where m >= 4, W, y64 = x8 @ Wd^T in float64, the bound
    1e-5 * |x8| @ |Wd|^T + 1e-5)"""
    rng = np.random.default_rng(m * 131 + n * 7 + k)
    wf = (rng.standard_normal((n, k)) * 2).astype(np.float32)
    wf[0, :min(k, 40)] = np.where(np.arange(min(k, 40)) % 2, 3.0, -3.0)   # ties, a constant row
    w = QWeight.empty(qtype, n, k)
    ck.quantize(T(wf), w, qtype)
    x = rng.standard_normal((m, k)).astype(np.float32)
    x[0, ::7] *= 50.0                                                    # uneven block scales
    if m >= 4:
        x[1, k // 2], x[3, k - 1] = np.nan, -np.inf
    wd = T(np.zeros((n, k)))
    nk.dequantize(w, wd)
    W = wd.a.astype(np.float64)
    xs = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    if qtype == "f16":
        x8 = xs.astype(np.float64)
    else:
        q, d, _ = quantize_q8_rows(xs)
        x8 = (q.astype(np.float64) * d[..., None]).reshape(m, k)
    return x, w, x8 @ W.T, 1e-5 * (np.abs(x8) @ np.abs(W).T) + 1e-5


# F16 rows take any K: the 16-wide steps' tails (masked on AVX-512, scalar on AVX2)
F16_SHAPES = [(1, 9, 1), (1, 17, 15), (1, 33, 17), (1, 21, 100), (1, 11, 1031), (3, 9, 47),
              (6, 13, 79), (9, 8, 33)]


@pytest.mark.parametrize("qtype,mnk", [(q, s) for q in QUANT_QTYPES for s in QUANT_SHAPES]
                         + [("f16", s) for s in F16_SHAPES])
def test_quant_every_tier(threads, nk, qtype, mnk):
    """matmul_q on every tier this CPU has (and linears for a decode row): within the bound of
    the float64 product, NaN rows where the activations hold NaN / inf (F16: non-finite), the
    same bits for 1 and 2 threads."""
    ck, (m, n, k) = threads, mnk
    x, w, y64, tol = quant_case(ck, nk, qtype, m, n, k)
    bad_rows = ~np.isfinite(x).all(axis=1)
    for tier in tiers_here(ck):
        ck.set_simd_path(tier)
        assert ck.simd_families()["quant"] in tiers_here(ck)
        got = []
        for nt in (1, 2):
            ck.set_threads(nt)
            y = T(np.full((m, n), 7.0))
            ck.matmul_q(T(x), w, y)
            got.append(y.a.copy())
            if m == 1:                      # the fused decode entry point: the same bits
                y2 = [T(np.zeros((1, n))), T(np.zeros((1, n)))]
                ck.linears(T(x), (w, w), y2)
                for yy in y2:
                    np.testing.assert_array_equal(yy.a, y.a, err_msg=f"{tier} linears")
        np.testing.assert_array_equal(got[1], got[0], err_msg=f"{tier}: 1 vs 2 threads")
        y = got[0]
        if qtype == "f16":                  # float32 products: inf * w stays +-inf (or NaN)
            assert not np.isfinite(y[bad_rows]).any(), tier
        else:                               # a NaN / inf block scale: NaN
            assert np.isnan(y[bad_rows]).all(), tier
        err = np.abs(y[~bad_rows] - y64[~bad_rows]) - tol[~bad_rows]
        assert np.all(err <= 0), (tier, float(err.max()))


@pytest.mark.parametrize("qtype", QUANT_QTYPES)
def test_quant_dequantize_bit_identical(threads, qtype):
    """dequantize and embedding_q (matmul_qf's panels go the same way) give the portable bits on
    every tier: scales of every size, fp16-overflowed (inf) ones included (NaN for NaN)."""
    ck = threads
    rng = np.random.default_rng(8)
    a = (rng.standard_normal((37, 352)) * np.float32(10.0) ** rng.integers(-6, 5, (37, 1)))
    a = a.astype(np.float32)
    a[3] = rng.standard_normal(352) * 3e7              # inf fp16 scales: inf and NaN values
    a[5, :40] = EDGE[:40]
    w = QWeight.empty(qtype, 37, 352)
    with np.errstate(all="ignore"):
        ck.quantize(T(a), w, qtype)
    ids = Tensor(np.array([36, 0, 5, 3, 17], np.int32))
    res = {}
    for tier in tiers_here(ck):
        ck.set_simd_path(tier)
        y, e = T(np.zeros((37, 352))), T(np.zeros((5, 352)))
        with np.errstate(all="ignore"):
            ck.dequantize(w, y)
            ck.embedding_q(ids, w, e)
        res[tier] = (y.a.copy(), e.a.copy())
    for tier, (y, e) in res.items():
        assert_same(y, res["portable"][0], f"{tier} dequantize")
        assert_same(e, res["portable"][1], f"{tier} embedding_q")


QUANT_REPORT = """
    import hashlib, json
    import numpy as np
    from qorus_core.kernels import get_kernels
    from qorus_core.kernels.numpy_quant import QWeight
    from qorus_core.tensor import Tensor
    ck = get_kernels("c")
    rng = np.random.default_rng(0)
    out = {"families": ck.simd_families(), "path": ck.simd_path, "y": {}}
    for qtype in ("q8_0", "q4_0", "q4_1", "f16"):
        w = QWeight.empty(qtype, 37, 352)
        ck.quantize(Tensor(rng.standard_normal((37, 352)).astype(np.float32)), w, qtype)
        for m in (1, 9):
            y = Tensor(np.zeros((m, 37), np.float32))
            ck.matmul_q(Tensor(rng.standard_normal((m, 352)).astype(np.float32)), w, y)
            out["y"][f"{qtype}/{m}"] = hashlib.sha256(y.a.tobytes()).hexdigest()
    print(json.dumps(out))
"""


def test_quant_tier_needs_vnni(ck):
    """The quant family runs AVX-512 only with AVX512VNNI: posing as a CPU without it, it runs
    the AVX2 kernels (the very bits QORUS_SIMD=avx2 gives) while the other families keep
    AVX-512; QORUS_SIMD=avx2 forces its AVX2 kernels."""
    need(ck, "avx512")
    reps = {}
    for name, env in (("avx2", dict(QORUS_SIMD="avx2")), ("auto", {}),
                      ("novnni", dict(QORUS_CPU_MASK=hex(1 << simd.CPU_BITS.index("avx512vnni"))))):
        proc = run_py(QUANT_REPORT, **env)
        assert proc.returncode == 0, proc.stderr
        reps[name] = json.loads(proc.stdout)
    assert reps["avx2"]["families"]["quant"] == "avx2" and reps["avx2"]["path"] == "avx2"
    nv = reps["novnni"]
    assert nv["path"] == "avx512" and nv["families"]["gemm"] == "avx512"
    assert nv["families"]["quant"] == "avx2" and nv["y"] == reps["avx2"]["y"]
    if ck.cpu_features()["avx512vnni"]:   # the VNNI kernels run: other float32 rounding
        assert reps["auto"]["families"]["quant"] == "avx512"
        assert reps["auto"]["y"] != reps["avx2"]["y"]


def test_peak_probe_runs_the_widest_tier(threads):
    """flops per round: 12 chains x lanes x 2, lanes 16 on AVX-512, else 8."""
    ck = threads
    ck.set_threads(1)
    for tier in tiers_here(ck):
        ck.set_simd_path(tier)
        assert ck.fma_peak(10) == 10 * 12 * 2 * (16 if tier == "avx512" else 8)


def run_py(code: str, **env) -> subprocess.CompletedProcess:
    full = dict(os.environ, PYTHONPATH=ROOT, **{k: str(v) for k, v in env.items()})
    for var in ("QORUS_SIMD", "QORUS_KERNELS"):   # auto unless given (the CPU mask stays)
        if var not in env:
            full.pop(var, None)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=full, timeout=120, cwd=ROOT)


REPORT = """
    import json
    from qorus_core.kernels import get_kernels, simd
    ck = get_kernels("c")
    out = {"path": ck.simd_path, "families": ck.simd_families(), "cpu": ck.cpu_features(),
           "refused": {}}
    for tier in ("avx512", "avx2", "portable"):
        try:
            out["refused"][tier] = None if ck.set_simd_path(tier) == tier else "other tier"
        except simd.SimdTierError as exc:
            out["refused"][tier] = str(exc)
        ck.set_simd_path("auto")
    out["raw"] = ck._lib.qr_set_simd_path(2)   # the C setter itself
    out["after"] = ck.simd_path
    print(json.dumps(out))
"""


def test_masked_cpu_refuses_avx512(ck):
    """Posing as a CPU without AVX-512: auto runs AVX2 (where the CPU has it), every family at
    most AVX2; asking for avx512 (setter or QORUS_SIMD) is an error naming the features."""
    proc = run_py(REPORT, QORUS_CPU_MASK=hex(MASK_AVX512))
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert not any(v for k, v in rep["cpu"].items() if k.startswith("avx512"))
    assert rep["path"] in ("avx2", "portable") and rep["after"] == rep["path"]
    assert set(rep["families"].values()) <= {"avx2", "portable"}
    assert "avx512f" in rep["refused"]["avx512"] and "avx512bw" in rep["refused"]["avx512"]
    assert rep["raw"] == -4 and rep["refused"]["portable"] is None
    proc = run_py("from qorus_core.kernels import get_kernels; get_kernels()",
                  QORUS_CPU_MASK=hex(MASK_AVX512), QORUS_SIMD="avx512")
    assert proc.returncode != 0
    assert "SimdTierError: QORUS_SIMD=avx512" in proc.stderr and "avx512f" in proc.stderr


def test_masked_cpu_refuses_avx2(ck):
    proc = run_py(REPORT, QORUS_CPU_MASK=hex(MASK_AVX2))
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["path"] == "portable" and set(rep["families"].values()) == {"portable"}
    assert "avx2, fma" in rep["refused"]["avx2"] and "avx2" in rep["refused"]["avx512"]
    assert rep["refused"]["portable"] is None


@pytest.mark.parametrize("value", ["portable", "avx2", "avx512", "auto"])
def test_env_forces_a_tier(ck, value):
    if value in ("avx2", "avx512"):
        need(ck, value)
    proc = run_py(REPORT, QORUS_SIMD=value)
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["path"] == (tiers_here(ck)[-1] if value == "auto" else value)


def test_env_unknown_tier_is_an_error(ck):
    proc = run_py("from qorus_core.kernels import get_kernels; get_kernels('numpy'); "
                  "get_kernels()", QORUS_SIMD="avx3")
    assert proc.returncode != 0 and "QORUS_SIMD='avx3': expected one of auto" in proc.stderr
    proc = run_py("from qorus_core.kernels.info import backend_info; import json; "
                  "print(json.dumps(backend_info()))", QORUS_SIMD="avx3")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert not info["c_available"] and "QORUS_SIMD='avx3'" in info["c_reason"]
