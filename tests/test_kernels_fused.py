"""Fused kernels (kernels/decl/fused.py, csrc/fused.c): C against the NumPy reference on odd
shapes, backward against finite differences and (where installed) against PyTorch.

Tolerances (float32): the broadcast forward ops are bit-identical; rope and the broadcast
parameter gradients within rtol 1e-5 (cos/sin rounding, summation order); swiglu and the
masked softmax within rtol/atol 1e-5; attention within rtol 1e-4 / atol 2e-5 (5e-5 for the
gradients): the C kernel runs an online softmax over key tiles with GEMM tiles (the AVX2 build
contracts to FMA), the reference materializes the whole score matrix. Every C result is
bit-identical for any thread count. NaN in an attention/softmax row makes the row NaN, as in
NumPy; swiglu propagates NaN elementwise. Decode cuts long caches into key chunks by the sizes
alone (flash-decoding), so it too is bit-identical for any thread count.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from qorus_core.errors import KernelError
from qorus_core.tensor import Tensor

TOL = dict(rtol=1e-5, atol=1e-5)


def rnd(shape, seed=0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def T(a):
    return Tensor(np.array(a, dtype=np.float32, copy=True))


def run(ks, kernel, arrays, **kw):
    ts = [T(a) for a in arrays]
    getattr(ks, kernel)(*ts, **kw)
    return ts


def parity(ck, nk, kernel, arrays, outs, tol=TOL, **kw):
    tc, tn = run(ck, kernel, arrays, **kw), run(nk, kernel, arrays, **kw)
    for i in outs:
        np.testing.assert_allclose(tc[i].a, tn[i].a, err_msg=f"{kernel} output {i}", **tol)
    return tc, tn


def fd_check(f, x, dx, n=24, eps=1e-2, seed=0, rtol=3e-2, atol=3e-3):
    """Central differences of the scalar f (float64 sum of float32 outputs) at n coordinates."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(x.size, size=min(n, x.size), replace=False)
    flat = x.reshape(-1)
    for i in idx:
        old = flat[i]
        flat[i] = old + eps
        fp = f(x)
        flat[i] = old - eps
        fm = f(x)
        flat[i] = old
        num = (fp - fm) / (2 * eps)
        assert abs(num - dx.reshape(-1)[i]) <= atol + rtol * abs(num), (i, num, dx.reshape(-1)[i])


# ----------------------------------------------------------------------------- rope
ROPE_SHAPES = [(1, 1, 4, 8), (2, 7, 4, 8), (2, 33, 4, 64), (3, 33, 2, 64), (2, 7, 3, 6)]


@pytest.mark.parametrize("shape", ROPE_SHAPES)
@pytest.mark.parametrize("half_split", [False, True])
@pytest.mark.parametrize("pos", [0, 5])
def test_rope_parity(ck, nk, shape, half_split, pos):
    x = rnd(shape, 1, 3.0)
    for kernel in ("rope", "rope_bwd"):
        parity(ck, nk, kernel, [x, np.zeros_like(x)], [1], pos_offset=pos, theta=10000.0,
               half_split=half_split)
    # in place: y is x
    for ks in (ck, nk):
        t = T(x)
        ks.rope(t, t, pos, 500000.0, half_split)
        ref = run(nk, "rope", [x, np.zeros_like(x)], pos_offset=pos, theta=500000.0,
                  half_split=half_split)[1]
        np.testing.assert_allclose(t.a, ref.a, **TOL)
        ks.rope_bwd(t, t, pos, 500000.0, half_split)             # the inverse rotation
        np.testing.assert_allclose(t.a, x, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("half_split", [False, True])
def test_rope_bwd_is_adjoint(ck, half_split):
    x, dy = rnd((2, 7, 4, 8), 2), rnd((2, 7, 4, 8), 3)
    y = run(ck, "rope", [x, np.zeros_like(x)], pos_offset=3, half_split=half_split)[1].a
    dx = run(ck, "rope_bwd", [dy, np.zeros_like(dy)], pos_offset=3, half_split=half_split)[1].a
    lhs = float((y.astype(np.float64) * dy).sum())
    rhs = float((x.astype(np.float64) * dx).sum())
    assert abs(lhs - rhs) < 1e-4 * (1 + abs(lhs))


def test_rope_table_follows_every_argument(ck, nk):
    """The C rope keeps its last cos/sin table per thread: a call that differs from the one
    before in any argument (position, length, head size, theta, direction) must not reuse it."""
    calls = [("rope", (1, 1, 3, 8), 5, 10000.0), ("rope", (1, 1, 2, 8), 5, 10000.0),
             ("rope", (1, 1, 3, 8), 6, 10000.0), ("rope", (1, 1, 3, 8), 6, 500000.0),
             ("rope_bwd", (1, 1, 3, 8), 6, 500000.0), ("rope", (1, 4, 3, 8), 6, 500000.0),
             ("rope", (1, 1, 3, 16), 6, 500000.0), ("rope", (1, 1, 3, 8), 5, 10000.0)]
    for i, (kernel, shape, pos, theta) in enumerate(calls):
        x = rnd(shape, 10 + i)
        got = run(ck, kernel, [x, np.zeros_like(x)], pos_offset=pos, theta=theta)[1].a
        ref = run(nk, kernel, [x, np.zeros_like(x)], pos_offset=pos, theta=theta)[1].a
        np.testing.assert_allclose(got, ref, **TOL, err_msg=f"call {i}: {kernel} {shape} {pos}")


@pytest.mark.parametrize("half_split", [False, True])
def test_rope_vs_torch(ck, half_split):
    torch = pytest.importorskip("torch")
    B, S, H, D, pos, theta = 2, 33, 4, 64, 7, 10000.0
    x = rnd((B, S, H, D), 4, 2.0)
    y = run(ck, "rope", [x, np.zeros_like(x)], pos_offset=pos, theta=theta,
            half_split=half_split)[1].a
    xt = torch.from_numpy(x).double()
    inv_freq = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.float64) / D))
    ang = torch.outer(torch.arange(pos, pos + S, dtype=torch.float64), inv_freq)   # [S, D/2]
    if half_split:   # HF: q * cos + rotate_half(q) * sin
        cos = torch.cat([ang.cos(), ang.cos()], -1)[None, :, None, :]
        sin = torch.cat([ang.sin(), ang.sin()], -1)[None, :, None, :]
        rot = torch.cat([-xt[..., D // 2:], xt[..., : D // 2]], -1)
        ref = xt * cos + rot * sin
    else:            # Meta / GGUF llama: complex multiply of adjacent pairs
        xc = torch.view_as_complex(xt.reshape(B, S, H, D // 2, 2).contiguous())
        ref = torch.view_as_real(xc * torch.polar(torch.ones_like(ang), ang)[None, :, None, :])
        ref = ref.reshape(B, S, H, D)
    np.testing.assert_allclose(y, ref.numpy(), rtol=1e-5, atol=2e-5)


# ----------------------------------------------------------------------------- swiglu
EW_SHAPES = [(1, 1), (3, 5), (7, 33), (130, 257), (300, 701)]
EDGE = np.array([0.0, -0.0, 1e-7, -1e-7, 0.3, -0.3, 5.0, -5.0, 20.0, -20.0, 88.0, -88.0, 100.0,
                 -100.0], np.float32)


@pytest.mark.parametrize("shape", EW_SHAPES)
def test_swiglu_parity(ck, nk, shape):
    g, u, dy = rnd(shape, 5, 3.0), rnd(shape, 6), rnd(shape, 7)
    k = min(g.size, EDGE.size)
    g.reshape(-1)[:k] = EDGE[:k]
    parity(ck, nk, "swiglu", [g, u, np.zeros_like(g)], [2])
    parity(ck, nk, "swiglu_bwd", [g, u, dy, np.zeros_like(g), np.zeros_like(g)], [3, 4])


def test_swiglu_nan_and_fd(ck, nk):
    g = np.array([np.nan, 1.0, -2.0], np.float32)
    for ks in (ck, nk):
        y = run(ks, "swiglu", [g, np.ones(3), np.zeros(3)])[2].a
        assert np.isnan(y[0]) and np.isfinite(y[1:]).all()
    g, u, dy = rnd((4, 9), 8), rnd((4, 9), 9), rnd((4, 9), 10)
    for ks in (ck, nk):
        _, _, _, dg, du = run(ks, "swiglu_bwd", [g, u, dy, np.zeros_like(g), np.zeros_like(g)])

        def loss_g(gg, ks=ks):
            return float((run(ks, "swiglu", [gg, u, np.zeros_like(g)])[2].a.astype(np.float64)
                          * dy).sum())

        def loss_u(uu, ks=ks):
            return float((run(ks, "swiglu", [g, uu, np.zeros_like(g)])[2].a.astype(np.float64)
                          * dy).sum())

        fd_check(loss_g, g.copy(), dg.a)
        fd_check(loss_u, u.copy(), du.a)


# ----------------------------------------------------------------------------- broadcast
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (7, 33), (2, 3, 257), (300, 701)])
def test_bcast_parity(ck, nk, shape):
    x, dy = rnd(shape, 11), rnd(shape, 12)
    b = rnd(shape[-1:], 13)
    acc = rnd(shape[-1:], 14)
    parity(ck, nk, "add_bcast", [x, b, np.zeros_like(x)], [2], tol=dict(rtol=0, atol=0))
    parity(ck, nk, "mul_bcast", [x, b, np.zeros_like(x)], [2], tol=dict(rtol=0, atol=0))
    tc, tn = parity(ck, nk, "add_bcast_bwd", [dy, np.zeros_like(dy), acc], [1, 2])
    np.testing.assert_allclose(tc[2].a, acc + dy.reshape(-1, shape[-1]).sum(0), **TOL)
    tc, tn = parity(ck, nk, "mul_bcast_bwd", [x, b, dy, np.zeros_like(x), acc], [3, 4])
    np.testing.assert_allclose(tc[3].a, dy * b, rtol=0, atol=0)
    np.testing.assert_allclose(tc[4].a, acc + (dy * x).reshape(-1, shape[-1]).sum(0), **TOL)
    for ks in (ck, nk):   # dx None; dx aliasing dy
        d, w = T(dy), T(acc)
        ks.add_bcast_bwd(d, None, w)
        ks.mul_bcast_bwd(T(x), T(b), d, d, T(acc))
        np.testing.assert_array_equal(d.a, dy * b)


def test_bcast_reproducible_across_threads(threads):
    ck = threads
    dy, x = rnd((512, 300), 15), rnd((512, 300), 16)
    outs = []
    for n in (1, 2, 3):
        ck.set_threads(n)
        outs.append(run(ck, "mul_bcast_bwd", [x, x[0], dy, np.zeros_like(x), np.zeros(300)])[4].a)
    assert all(np.array_equal(outs[0], o) for o in outs[1:])


# ----------------------------------------------------------------------------- masked softmax
SM_SHAPES = [(1, 1, 1), (4, 7, 7), (8, 33, 33), (2, 5, 9), (3, 64, 130)]


@pytest.mark.parametrize("shape", SM_SHAPES)
@pytest.mark.parametrize("causal", [False, True])
def test_softmax_masked_parity(ck, nk, shape, causal):
    x, dy = rnd(shape, 17, 4.0), rnd(shape, 18)
    tc, _ = parity(ck, nk, "softmax_masked", [x, np.zeros_like(x)], [1], scale=0.37,
                   causal=causal)
    y = tc[1].a
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-5)
    if causal:
        Tq, Tk = shape[1:]
        mask = np.arange(Tk)[None, :] > np.arange(Tq)[:, None] + (Tk - Tq)
        assert (y[:, mask] == 0).all()
    parity(ck, nk, "softmax_masked_bwd", [y, dy, np.zeros_like(x)], [2], scale=0.37,
           causal=causal)


@pytest.mark.parametrize("causal", [False, True])
def test_softmax_masked_fd_and_torch(ck, nk, causal):
    shape, sc = (2, 6, 6), 0.5
    x, dy = rnd(shape, 19, 2.0), rnd(shape, 20)
    for ks in (ck, nk):
        y = run(ks, "softmax_masked", [x, np.zeros_like(x)], scale=sc, causal=causal)[1].a
        dx = run(ks, "softmax_masked_bwd", [y, dy, np.zeros_like(x)], scale=sc,
                 causal=causal)[2].a

        def loss(xx, ks=ks):
            yy = run(ks, "softmax_masked", [xx, np.zeros_like(x)], scale=sc, causal=causal)[1]
            return float((yy.a.astype(np.float64) * dy).sum())

        fd_check(loss, x.copy(), dx)
    try:
        import torch
    except ImportError:
        return
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    z = xt * sc
    if causal:
        z = z.masked_fill(torch.ones(6, 6, dtype=torch.bool).triu(1), float("-inf"))
    yt = torch.softmax(z, -1)
    (yt * torch.from_numpy(dy).double()).sum().backward()
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- attention
ATT = [(1, 1, 4, 2, 8), (2, 7, 4, 2, 8), (2, 33, 4, 4, 64), (1, 33, 4, 2, 64),
       (2, 70, 4, 2, 8), (1, 7, 4, 4, 64), (1, 130, 2, 1, 24), (1, 43, 2, 2, 20)]
# (B, T, H, Hkv, D): up to 64 keys the direct path (blocks of 4 rows, 16 lanes: 7, 33, 43
# and D 20 cross them), 70 and 130 the tiled one (several 64-key tiles)


def att_inputs(B, S, H, Hkv, D, seed=21):
    return (rnd((B, S, H, D), seed), rnd((B, S, Hkv, D), seed + 1), rnd((B, S, Hkv, D), seed + 2),
            rnd((B, S, H, D), seed + 3))


def att_fwd(ks, q, k, v, H, Hkv, causal=True, scale=None):
    B, S = q.shape[:2]
    return run(ks, "attention", [q, k, v, np.zeros_like(q), np.zeros((B, H, S))], scale=scale,
               n_heads=H, n_kv_heads=Hkv, causal=causal)


def att_bwd(ks, q, k, v, out, lse, dout, H, Hkv, causal=True, scale=None):
    t = run(ks, "attention_bwd", [q, k, v, out, lse, dout, np.zeros_like(q), np.zeros_like(k),
                                  np.zeros_like(v)], scale=scale, n_heads=H, n_kv_heads=Hkv,
            causal=causal)
    return t[6].a, t[7].a, t[8].a


ATOL = dict(rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("dims", ATT)
@pytest.mark.parametrize("causal", [True, False])
def test_attention_parity(ck, nk, dims, causal):
    B, S, H, Hkv, D = dims
    q, k, v, dout = att_inputs(*dims)
    tc, tn = att_fwd(ck, q, k, v, H, Hkv, causal), att_fwd(nk, q, k, v, H, Hkv, causal)
    np.testing.assert_allclose(tc[3].a, tn[3].a, **ATOL)
    np.testing.assert_allclose(tc[4].a, tn[4].a, **ATOL)
    out, lse = tn[3].a, tn[4].a
    for gc, gn in zip(att_bwd(ck, q, k, v, out, lse, dout, H, Hkv, causal),
                      att_bwd(nk, q, k, v, out, lse, dout, H, Hkv, causal)):
        np.testing.assert_allclose(gc, gn, rtol=1e-4, atol=5e-5)


@pytest.mark.parametrize("dims", [(1, 7, 4, 2, 8), (2, 33, 4, 4, 64), (1, 33, 4, 2, 64)])
def test_attention_vs_torch(ck, nk, dims):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    B, S, H, Hkv, D = dims
    q, k, v, dout = att_inputs(*dims, seed=31)
    qt, kt, vt = (torch.tensor(a, dtype=torch.float64).transpose(1, 2).requires_grad_(True)
                  for a in (q, k, v))
    ref = F.scaled_dot_product_attention(qt, kt.repeat_interleave(H // Hkv, 1),
                                         vt.repeat_interleave(H // Hkv, 1), is_causal=True)
    (ref * torch.tensor(dout, dtype=torch.float64).transpose(1, 2)).sum().backward()
    grads = [t.grad.transpose(1, 2).numpy() for t in (qt, kt, vt)]
    for ks in (ck, nk):
        t = att_fwd(ks, q, k, v, H, Hkv)
        np.testing.assert_allclose(t[3].a, ref.detach().transpose(1, 2).numpy(), **ATOL)
        for g, r in zip(att_bwd(ks, q, k, v, t[3].a, t[4].a, dout, H, Hkv), grads):
            np.testing.assert_allclose(g, r, rtol=1e-4, atol=5e-5)


def test_attention_fd(nk, ck):
    dims = (1, 5, 2, 1, 4)
    B, S, H, Hkv, D = dims
    q, k, v, dout = att_inputs(*dims, seed=41)
    for ks in (ck, nk):
        t = att_fwd(ks, q, k, v, H, Hkv)
        dq, dk, dv = att_bwd(ks, q, k, v, t[3].a, t[4].a, dout, H, Hkv)

        def loss(q_, k_, v_, ks=ks):
            return float((att_fwd(ks, q_, k_, v_, H, Hkv)[3].a.astype(np.float64) * dout).sum())

        fd_check(lambda a: loss(a, k, v), q.copy(), dq, n=10)
        fd_check(lambda a: loss(q, a, v), k.copy(), dk, n=10)
        fd_check(lambda a: loss(q, k, a), v.copy(), dv, n=10)


def test_attention_threads_bitwise_and_simd_paths(threads):
    """Bit-identical for any thread count; the portable build (no FMA contraction) within
    float tolerance of the AVX2 one."""
    ck = threads
    q, k, v, dout = att_inputs(2, 33, 4, 2, 64, seed=51)
    res = []
    for n, simd in ((1, "auto"), (2, "auto"), (3, "auto"), (2, "portable")):
        ck.set_threads(n)
        ck.set_simd_path(simd)
        t = att_fwd(ck, q, k, v, 4, 2)
        res.append([t[3].a, t[4].a, *att_bwd(ck, q, k, v, t[3].a, t[4].a, dout, 4, 2)])
    for r in res[1:3]:
        for a, b in zip(res[0], r):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(res[0], res[3]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)


def dec_inputs(B, H, Hkv, D, max_ctx, seed=61):
    return (rnd((B, H, D), seed), rnd((B, max_ctx, Hkv, D), seed + 1),
            rnd((B, max_ctx, Hkv, D), seed + 2))


def dec(ks, q, kc, vc, n_ctx, H, Hkv, scale=None):
    return run(ks, "attention_decode", [q, kc, vc, np.zeros_like(q)], n_ctx=n_ctx, scale=scale,
               n_heads=H, n_kv_heads=Hkv)[3].a


# n_ctx 300 is cut into key chunks (partials merged), 1..17 is not; D 3 and 80 have a D tail
@pytest.mark.parametrize("D", [1, 3, 64, 80])
@pytest.mark.parametrize("H,Hkv", [(3, 3), (6, 2), (8, 2)])
@pytest.mark.parametrize("n_ctx", [1, 2, 17, 300])
@pytest.mark.parametrize("B", [1, 2])
@pytest.mark.parametrize("simd", ["auto", "portable"])
def test_attention_decode(threads, nk, B, H, Hkv, D, n_ctx, simd):
    threads.set_simd_path(simd)
    q, kc, vc = dec_inputs(B, H, Hkv, D, n_ctx + 5)
    scale = None if D != 80 else 0.3
    oc, on = dec(threads, q, kc, vc, n_ctx, H, Hkv, scale), dec(nk, q, kc, vc, n_ctx, H, Hkv, scale)
    np.testing.assert_allclose(oc, on, **ATOL)
    # the same as the last row of causal attention over the n_ctx cached positions
    qs = np.zeros((B, n_ctx, H, D), np.float32)
    qs[:, -1] = q
    full = att_fwd(nk, qs, kc[:, :n_ctx].copy(), vc[:, :n_ctx].copy(), H, Hkv, scale=scale)[3].a
    np.testing.assert_allclose(oc, full[:, -1], **ATOL)


@pytest.mark.parametrize("B,H,Hkv,D,n_ctx", [(1, 8, 2, 64, 600), (2, 32, 16, 16, 300),
                                             (1, 9, 3, 64, 128)])
def test_attention_decode_threads(threads, nk, B, H, Hkv, D, n_ctx):
    """Key chunks depend on the sizes only: a run repeats bit for bit, and so does any other
    thread count (these sizes use several tasks); both SIMD paths agree with NumPy."""
    q, kc, vc = dec_inputs(B, H, Hkv, D, n_ctx + 3, seed=71)
    ref = dec(nk, q, kc, vc, n_ctx, H, Hkv)
    for simd in ("auto", "portable"):
        threads.set_simd_path(simd)
        threads.set_threads(2)
        first = dec(threads, q, kc, vc, n_ctx, H, Hkv)
        np.testing.assert_array_equal(dec(threads, q, kc, vc, n_ctx, H, Hkv), first)
        for n in (1, 3):
            threads.set_threads(n)
            np.testing.assert_array_equal(dec(threads, q, kc, vc, n_ctx, H, Hkv), first)
        np.testing.assert_allclose(first, ref, **ATOL)


@pytest.mark.parametrize("n_ctx", [5, 300])
def test_attention_decode_nan(ck, nk, n_ctx):
    """A NaN query or cached key makes its heads' rows NaN (chunk partials too), others stay."""
    q, kc, vc = dec_inputs(1, 6, 2, 16, n_ctx)
    q[0, 1, 3] = np.nan              # head 1 only
    kc[0, n_ctx - 1, 1, 0] = np.nan  # kv head 1: heads 3..5
    for ks in (ck, nk):
        with np.errstate(all="ignore"):
            out = dec(ks, q, kc, vc, n_ctx, 6, 2)
        assert np.isnan(out[0, [1, 3, 4, 5]]).all() and np.isfinite(out[0, [0, 2]]).all()


def test_errors_never_crash(ck, nk):
    q, k, v, _ = att_inputs(1, 7, 4, 2, 8)
    for ks in (ck, nk):
        with pytest.raises(KernelError):
            att_fwd(ks, q, k, v, 4, 3)                                  # H % Hkv
        with pytest.raises(KernelError):
            att_fwd(ks, q, k[:, :3].copy(), v[:, :3].copy(), 4, 2)      # causal Tk < Tq
        with pytest.raises(KernelError):
            run(ks, "attention", [q, k, v, np.zeros_like(q), np.zeros(3)], n_heads=4,
                n_kv_heads=2)                                           # lse size
        with pytest.raises(KernelError):
            run(ks, "rope", [rnd((1, 2, 3, 5)), np.zeros((1, 2, 3, 5))])   # odd D
        with pytest.raises(KernelError):
            run(ks, "attention_decode", [q[0, 0], k[0], v[0], np.zeros((4, 8))], n_ctx=8,
                n_heads=4, n_kv_heads=2)                                # n_ctx > max_ctx
        with pytest.raises(KernelError):
            run(ks, "add_bcast", [q, np.zeros(3), np.zeros_like(q)])
        with pytest.raises(KernelError):
            run(ks, "softmax_masked", [rnd((2, 5, 3)), np.zeros((2, 5, 3))], causal=True)


def test_default_scale(ck, nk):
    q, k, v, _ = att_inputs(1, 7, 4, 2, 8)
    a = att_fwd(ck, q, k, v, 4, 2)[3].a
    b = att_fwd(nk, q, k, v, 4, 2, scale=1 / math.sqrt(8))[3].a
    np.testing.assert_allclose(a, b, **ATOL)


def test_nan_rows(ck, nk):
    q, k, v, _ = att_inputs(1, 7, 4, 2, 8)
    q[0, 3, 1, 2] = np.nan
    for ks in (ck, nk):
        with np.errstate(all="ignore"):
            out = att_fwd(ks, q, k, v, 4, 2)[3].a
        assert np.isnan(out[0, 3, 1]).all()
        out[0, 3, 1] = 0.0
        assert np.isfinite(out).all()
        x = rnd((2, 5, 5))
        x[1, 2, 0] = np.nan
        with np.errstate(all="ignore"):
            y = run(ks, "softmax_masked", [x, np.zeros_like(x)], causal=True)[1].a
        assert np.isnan(y[1, 2, :3]).all() and (y[1, 2, 3:] == 0).all()   # masked keys: 0
        y[1, 2] = 0.0
        assert np.isfinite(y).all()
