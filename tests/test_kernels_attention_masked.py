"""attention_masked and its backward: C against NumPy across tile edges, both against PyTorch's
scaled_dot_product_attention with the same masks, the backward against finite differences,
and the fully masked rows (out 0, lse -inf, no gradient, as PyTorch's SDPA)."""

from __future__ import annotations

import numpy as np
import pytest

from qorus_core.tensor import Tensor

TOL = dict(rtol=1e-4, atol=2e-5)


def rnd(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def case(B=2, Tq=70, Tk=130, H=4, Hkv=2, D=16, seed=0, bias_shape="2d", pad=True):
    """q, k, v, dout, kpm (i32 [B, Tk] or None), bias (or None): Tq, Tk cross the 64-row tiles
    and the 4-row blocks; batch 1 has every key padded (its rows are fully masked)."""
    q, k, v = rnd((B, Tq, H, D), seed), rnd((B, Tk, Hkv, D), seed + 1), rnd((B, Tk, Hkv, D), seed + 2)
    dout = rnd((B, Tq, H, D), seed + 3)
    rng = np.random.default_rng(seed + 4)
    kpm = None
    if pad:
        kpm = (rng.random((B, Tk)) < 0.3).astype(np.int32)
        kpm[-1] = 1
    bias = {"2d": lambda: rng.standard_normal((Tq, Tk)),
            "4d": lambda: rng.standard_normal((B, H, Tq, Tk)),
            "heads": lambda: rng.standard_normal((1, H, Tq, Tk)),
            "3d": lambda: rng.standard_normal((B * H, Tq, Tk)),
            None: lambda: None}[bias_shape]()
    if bias is not None:
        bias = bias.astype(np.float32)
        bias.reshape(-1)[::7] = -np.inf            # -inf entries mask like padding
    return q, k, v, dout, kpm, bias


def fwd(ks, q, k, v, kpm, bias, H, Hkv, causal=False, scale=None, drop=0.0, seed=0):
    B, Tq = q.shape[:2]
    out, lse = Tensor(np.zeros_like(q)), Tensor(np.zeros((B, H, Tq), np.float32))
    ks.attention_masked(Tensor(q), Tensor(k), Tensor(v), None if kpm is None else Tensor(kpm),
                        None if bias is None else Tensor(bias), out, lse, scale=scale,
                        n_heads=H, n_kv_heads=Hkv, causal=causal, dropout_p=drop, seed=seed)
    return out.a, lse.a


def bwd(ks, q, k, v, kpm, bias, out, lse, dout, H, Hkv, causal=False, scale=None, drop=0.0,
        seed=0):
    dq, dk, dv = (Tensor(np.full_like(a, 7.0)) for a in (q, k, v))   # written, not added to
    ks.attention_masked_bwd(Tensor(q), Tensor(k), Tensor(v), None if kpm is None else Tensor(kpm),
                            None if bias is None else Tensor(bias), Tensor(out), Tensor(lse),
                            Tensor(dout), dq, dk, dv, scale=scale, n_heads=H, n_kv_heads=Hkv,
                            causal=causal, dropout_p=drop, seed=seed)
    return dq.a, dk.a, dv.a


@pytest.mark.parametrize("bias_shape", ["2d", "4d", "heads", "3d", None])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("Tk", [43, 130], ids=["direct", "tiled"])   # <= 64 keys: direct
def test_c_matches_numpy(ck, nk, bias_shape, causal, Tk):
    Tk += 7 * causal
    q, k, v, dout, kpm, bias = case(Tq=min(70, Tk - 3), Tk=Tk, bias_shape=bias_shape)
    got, ref = fwd(ck, q, k, v, kpm, bias, 4, 2, causal), fwd(nk, q, k, v, kpm, bias, 4, 2, causal)
    for g, r, name in zip(got, ref, ("out", "lse")):
        np.testing.assert_allclose(g, r, err_msg=name, **TOL)
    gb = bwd(ck, q, k, v, kpm, bias, *got, dout, 4, 2, causal)
    rb = bwd(nk, q, k, v, kpm, bias, *ref, dout, 4, 2, causal)
    for g, r, name in zip(gb, rb, ("dq", "dk", "dv")):
        np.testing.assert_allclose(g, r, err_msg=name, **TOL)


def _torch_mask(torch, kpm, bias, B, H, Tq, Tk, causal):
    m = torch.zeros(B, H, Tq, Tk)
    if bias is not None:
        full = bias.reshape(B, H, Tq, Tk) if bias.ndim == 3 else bias
        m = m + torch.tensor(np.broadcast_to(full, (B, H, Tq, Tk)).copy())
    if kpm is not None:
        m = m.masked_fill(torch.tensor(kpm != 0)[:, None, None, :], float("-inf"))
    if causal:
        keep = torch.ones(Tq, Tk, dtype=torch.bool).tril(Tk - Tq)
        m = m.masked_fill(~keep, float("-inf"))
    return m


@pytest.mark.parametrize("bias_shape,causal", [("2d", False), ("4d", True), ("3d", False)])
def test_matches_torch_sdpa(ck, nk, bias_shape, causal):
    torch = pytest.importorskip("torch")
    B, Tq, Tk, H, Hkv, D = 2, 70, 130, 4, 2, 16
    q, k, v, dout, kpm, bias = case(B, Tq, Tk, H, Hkv, D, bias_shape=bias_shape)
    qt, kt, vt = (torch.tensor(a).transpose(1, 2).requires_grad_() for a in (q, k, v))
    mask = _torch_mask(torch, kpm, bias, B, H, Tq, Tk, causal)
    ot = torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask,
                                                         enable_gqa=True)
    ot.backward(torch.tensor(dout).transpose(1, 2))
    want = ot.detach().transpose(1, 2).numpy()
    grads = [t.grad.transpose(1, 2).numpy() for t in (qt, kt, vt)]
    for ks in (ck, nk):
        out, lse = fwd(ks, q, k, v, kpm, bias, H, Hkv, causal)
        np.testing.assert_allclose(out, want, **TOL)
        assert (out[-1] == 0).all() and (lse[-1] == -np.inf).all()   # every key padded
        for g, w, name in zip(bwd(ks, q, k, v, kpm, bias, out, lse, dout, H, Hkv, causal),
                              grads, ("dq", "dk", "dv")):
            np.testing.assert_allclose(g, w, err_msg=f"{ks.name} {name}", **TOL)


@pytest.mark.parametrize("drop", [0.0, 0.3])
def test_backward_matches_finite_differences(nk, ck, drop):
    """d sum(out * r) / d (q, k, v) by central differences in float64 (NumPy forward); with
    dropout the mask is a function of the seed, the same in every call."""
    B, Tq, Tk, H, Hkv, D = 2, 3, 5, 2, 1, 4
    q, k, v, r, kpm, bias = case(B, Tq, Tk, H, Hkv, D, seed=5)
    kpm[-1] = 0
    kpm[-1, 1] = 1
    bias[np.isinf(bias)] = -1.5          # finite differences need finite scores
    for ks in (nk, ck):
        out, lse = fwd(ks, q, k, v, kpm, bias, H, Hkv, drop=drop, seed=3)
        analytic = bwd(ks, q, k, v, kpm, bias, out, lse, r, H, Hkv, drop=drop, seed=3)
        args = [q, k, v]
        for i, name in enumerate(("q", "k", "v")):
            for idx in np.ndindex(*args[i].shape):
                vals = []
                for sgn in (1, -1):
                    a = [x.copy() for x in args]
                    a[i][idx] += sgn * 1e-2
                    o = fwd(nk, *a, kpm, bias, H, Hkv, drop=drop, seed=3)[0]
                    vals.append(float((o.astype(np.float64) * r).sum()))
                num = (vals[0] - vals[1]) / 2e-2
                assert abs(num - analytic[i][idx]) <= 2e-3 + 2e-2 * abs(num), \
                    f"{ks.name} d/d{name}{idx}: analytic {analytic[i][idx]} vs numeric {num}"


def test_no_mask_equals_attention(ck, nk):
    """Without masks the kernel is attention's (same tiles, same values)."""
    q, k, v, dout, _, _ = case(Tq=40, Tk=40, pad=False, bias_shape=None)
    for ks in (ck, nk):
        for causal in (False, True):
            out, lse = fwd(ks, q, k, v, None, None, 4, 2, causal)
            o2, l2 = Tensor(np.zeros_like(q)), Tensor(np.zeros_like(lse))
            ks.attention(Tensor(q), Tensor(k), Tensor(v), o2, l2, None, 4, 2, causal)
            np.testing.assert_array_equal(out, o2.a)
            np.testing.assert_array_equal(lse, l2.a)


def test_nan_propagates_not_masked_away(ck, nk):
    q, k, v, _, kpm, bias = case(Tq=8, Tk=9, bias_shape=None)
    kpm[:] = 0
    q[0, 3, 1, 2] = np.nan
    for ks in (ck, nk):
        with np.errstate(all="ignore"):
            out, _ = fwd(ks, q, k, v, kpm, None, 4, 2)
        assert np.isnan(out[0, 3, 1]).all()
        out[0, 3, 1] = 0.0
        assert np.isfinite(out).all()


@pytest.mark.parametrize("Tk", [9, 90])          # the direct path and the tiled one
def test_dropout_is_unbiased_and_seeded(ck, nk, Tk):
    """Over many seeds the dropped output averages to the undropped one; one seed gives the
    same output on both kernel sets and differs from another seed's."""
    q, k, v, _, kpm, _ = case(B=1, Tq=4, Tk=Tk, bias_shape=None)
    kpm[:] = 0
    plain = fwd(ck, q, k, v, kpm, None, 4, 2)[0]
    runs = np.stack([fwd(ck, q, k, v, kpm, None, 4, 2, drop=0.25, seed=s)[0] for s in range(400)])
    assert np.abs(runs.mean(0) - plain).max() < 0.1 * np.abs(plain).max()
    np.testing.assert_allclose(runs[5], fwd(nk, q, k, v, kpm, None, 4, 2, drop=0.25, seed=5)[0],
                               **TOL)
    assert not np.allclose(runs[5], runs[6])
