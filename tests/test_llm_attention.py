"""llm.RotaryEmbedding, llm.CausalSelfAttention and llm.SwiGLUFeedForward: finite differences,
C vs NumPy, and PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

from qorus_core import Model, layer_from_dict, layer_to_dict
from qorus_core.errors import ConfigError, ShapeError
from qorus_core.testing import check_gradients, check_kernel_parity, forward_backward
from qorus_layers_llm import CausalSelfAttention, RotaryEmbedding, SwiGLUFeedForward

CASES = [
    pytest.param(lambda: RotaryEmbedding(2), (5, 8), id="rope"),
    pytest.param(lambda: RotaryEmbedding(2, 4, theta=500.0, half_split=True), (5, 2, 4),
                 id="rope-4d-half"),
    pytest.param(lambda: CausalSelfAttention(8, 2, 1), (5, 8), id="attn-gqa"),
    pytest.param(lambda: CausalSelfAttention(8, 2, 2), (5, 8), id="attn-mha"),
    pytest.param(lambda: CausalSelfAttention(8, 2, rope_half_split=True, bias=True), (5, 8),
                 id="attn-half-bias"),
    pytest.param(lambda: SwiGLUFeedForward(8, 12), (5, 8), id="swiglu"),
]


@pytest.mark.parametrize("make, shape", CASES)
def test_gradients(make, shape, kernels):
    assert check_gradients(make(), shape, batch=2, kernels=kernels).checked > 0


@pytest.mark.parametrize("make, shape", CASES)
def test_c_numpy_parity(make, shape):
    check_kernel_parity(make(), shape, batch=2)


@pytest.mark.parametrize("make, shape", CASES)
def test_config_round_trip(make, shape):
    layer = make()
    d = layer_to_dict(layer)
    assert d["type"].startswith("llm.")
    assert layer_to_dict(layer_from_dict(d)) == d


def test_bad_configs_and_shapes():
    with pytest.raises(ConfigError):
        CausalSelfAttention(8, 3)
    with pytest.raises(ConfigError):
        CausalSelfAttention(8, 2, 3)
    with pytest.raises(ShapeError):
        Model(CausalSelfAttention(8, 2), (5, 6))
    with pytest.raises(ShapeError):
        Model(RotaryEmbedding(3), (5, 8))
    with pytest.raises(ShapeError):
        Model(SwiGLUFeedForward(8, 4), (5, 6))


def _torch_rope(torch, x, theta, half_split):
    B, T, H, D = x.shape
    freq = float(np.float32(theta)) ** (-(np.arange(0, D, 2, dtype=np.float64) / D))
    ang = np.arange(T, dtype=np.float64)[:, None] * freq[None, :]
    c = torch.from_numpy(np.cos(ang).astype(np.float32))[None, :, None, :]
    s = torch.from_numpy(np.sin(ang).astype(np.float32))[None, :, None, :]
    x0, x1 = (x[..., :D // 2], x[..., D // 2:]) if half_split else (x[..., 0::2], x[..., 1::2])
    y0, y1 = x0 * c - x1 * s, x0 * s + x1 * c
    if half_split:
        return torch.cat([y0, y1], dim=-1)
    return torch.stack([y0, y1], dim=-1).flatten(-2)


@pytest.mark.parametrize("n_kv, half_split, bias", [(1, False, False), (2, False, False),
                                                    (2, True, True), (2, False, True)])
def test_attention_against_torch(kernels, n_kv, half_split, bias):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    B, T, d, H = 2, 5, 8, 2
    D = d // H
    layer = CausalSelfAttention(d, H, n_kv, rope_theta=1000.0, rope_half_split=half_split,
                                bias=bias)
    m = Model(layer, (T, d), seed=3, kernels=kernels)
    p = m.parameters()
    if bias:   # non-zero biases, so their effect shows
        rng = np.random.default_rng(9)
        for name in ("bq", "bk", "bv", "bo"):
            p[name][...] = rng.standard_normal(p[name].shape).astype(np.float32) * 0.3
    w = {n: torch.from_numpy(a.copy()).requires_grad_(True) for n, a in p.items()}
    rng = np.random.default_rng(4)
    x = rng.standard_normal((B, T, d)).astype(np.float32)
    dy = rng.standard_normal((B, T, d)).astype(np.float32)

    xt = torch.from_numpy(x).requires_grad_(True)
    q, k, v = xt @ w["wq"].T, xt @ w["wk"].T, xt @ w["wv"].T
    if bias:
        q, k, v = q + w["bq"], k + w["bk"], v + w["bv"]
    q = _torch_rope(torch, q.view(B, T, H, D), 1000.0, half_split).transpose(1, 2)
    k = _torch_rope(torch, k.view(B, T, n_kv, D), 1000.0, half_split).transpose(1, 2)
    v = v.view(B, T, n_kv, D).transpose(1, 2)
    k = k.repeat_interleave(H // n_kv, dim=1)
    v = v.repeat_interleave(H // n_kv, dim=1)
    att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    y_ref = att.transpose(1, 2).reshape(B, T, H * D) @ w["wo"].T
    if bias:
        y_ref = y_ref + w["bo"]
    y_ref.backward(torch.from_numpy(dy))

    y, dx, g = forward_backward(m, x, dy)
    np.testing.assert_allclose(y, y_ref.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-4, atol=1e-5)
    assert set(g) == set(w)
    for name, t in w.items():
        np.testing.assert_allclose(g[name], t.grad.numpy(), rtol=1e-4, atol=1e-5,
                                   err_msg=f"grad {name}")


def test_swiglu_against_torch(kernels):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    m = Model(SwiGLUFeedForward(8, 12), (5, 8), seed=2, kernels=kernels)
    w = {n: torch.from_numpy(a.copy()).requires_grad_(True) for n, a in m.parameters().items()}
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 5, 8)).astype(np.float32)
    dy = rng.standard_normal((2, 5, 8)).astype(np.float32)
    xt = torch.from_numpy(x).requires_grad_(True)
    y_ref = (F.silu(xt @ w["w_gate"].T) * (xt @ w["w_up"].T)) @ w["w_down"].T
    y_ref.backward(torch.from_numpy(dy))
    y, dx, g = forward_backward(m, x, dy)
    np.testing.assert_allclose(y, y_ref.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-4, atol=1e-5)
    for name, a in g.items():
        np.testing.assert_allclose(a, w[name].grad.numpy(), rtol=1e-4, atol=1e-5, err_msg=name)


def test_attention_step_allocates_no_arrays(kernels):
    """After the first step, a training step of attention + SwiGLU creates no NumPy array."""
    from qorus_core import Model, Sequential
    from qorus_core.testing import trace_allocations
    from qorus_layers_llm import CausalSelfAttention, SwiGLUFeedForward

    m = Model(Sequential([CausalSelfAttention(16, 4, 2), SwiGLUFeedForward(16, 32)]), (6, 16),
              kernels=kernels)
    p = m.plan(2, train=True, input_grad=True)
    p.x.a[...] = 0.25

    def step():
        m.zero_grad()
        p.forward()
        p.dy.a[...] = 1.0
        p.backward()

    step()
    trace = trace_allocations(step, repeat=3)
    assert trace.array_bytes == 0, trace.where
