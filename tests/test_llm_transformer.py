"""llm.MultiHeadAttention, llm.TransformerEncoderLayer / DecoderLayer and llm.Transformer
against PyTorch's layers with the same weights (their state dicts loading as they are):
outputs, gradients and parameters after 3 AdamW steps, on both kernel sets; masks (key
padding, float and bool attention masks, causal), GQA and RoPE against a PyTorch reference;
finite-difference gradients; configs; errors."""

from __future__ import annotations

import numpy as np
import pytest
from torch_parity import nonzero_biases, train_parity

from qorus_core import Input, Model, get_kernels, layer_from_dict, layer_to_dict
from qorus_core.errors import QorusError, ShapeError
from qorus_core.testing import check_gradients, trace_allocations
from qorus_layers_llm import (
    MultiHeadAttention,
    Transformer,
    TransformerDecoderLayer,
    TransformerEncoderLayer,
)

torch = pytest.importorskip("torch")
KERNELS = ["c", "numpy"]
B, T, S, D_MODEL, HEADS = 3, 7, 9, 16, 4


def rnd(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def padding(batch, length, seed=1):
    """A key padding mask with a different number of padded keys per row (none fully padded)."""
    m = np.zeros((batch, length), bool)
    for b in range(batch):
        m[b, length - b:] = True
    return m


def prefixed(prefix):
    return lambda n: n[len(prefix):]


# ----------------------------------------------------------------------------- MHA
@pytest.mark.parametrize("ks", KERNELS)
@pytest.mark.parametrize("mask", ["none", "float", "bool"])
def test_self_attention_trains_like_torch(ks, mask):
    q, kpm = Input((T, D_MODEL), name="q"), Input((T,), name="kpm", dtype="bool")
    inputs = {"q": rnd(B, T, D_MODEL), "kpm": padding(B, T)}
    am = None
    if mask == "float":
        am = rnd(T, T, seed=3)
    elif mask == "bool":
        am = np.triu(np.ones((T, T), bool), 1)
    args = [q, None, kpm]
    if am is not None:
        args.append(Input(am.shape, name="am", dtype="f32" if am.dtype == np.float32 else "bool"))
        inputs["am"] = np.broadcast_to(am, (B, *am.shape)).copy()   # a model input: per example
    y = MultiHeadAttention(D_MODEL, HEADS)(*args, name="mha")
    model = Model(inputs=[a for a in args if a is not None], outputs=y, kernels=get_kernels(ks))
    ref = nonzero_biases(torch.nn.MultiheadAttention(D_MODEL, HEADS, batch_first=True))

    def run(t):
        mask_t = None if am is None else torch.from_numpy(am)
        return ref(t["q"], t["q"], t["q"], key_padding_mask=t["kpm"], attn_mask=mask_t,
                   need_weights=False)[0]

    worst = train_parity(model, ref, inputs, run, prefixed("mha."))
    assert worst["param"] < 1e-4


@pytest.mark.parametrize("ks", KERNELS)
def test_cross_attention_trains_like_torch(ks):
    q, kv = Input((T, D_MODEL), name="q"), Input((S, D_MODEL), name="kv")
    kpm = Input((S,), name="kpm", dtype="bool")
    model = Model(inputs=[q, kv, kpm], outputs=MultiHeadAttention(D_MODEL, HEADS)(
        q, kv, kpm, name="mha"), kernels=get_kernels(ks))
    ref = nonzero_biases(torch.nn.MultiheadAttention(D_MODEL, HEADS, batch_first=True))
    inputs = {"q": rnd(B, T, D_MODEL), "kv": rnd(B, S, D_MODEL, seed=2), "kpm": padding(B, S)}
    train_parity(model, ref, inputs, lambda t: ref(t["q"], t["kv"], t["kv"],
                                                   key_padding_mask=t["kpm"])[0],
                 prefixed("mha."))


def _gqa_reference(x, W, bias, H, Hkv, rope, causal):
    """PyTorch's q/k/v projections (+ RoPE, adjacent pairs) and SDPA with GQA."""
    import torch.nn.functional as F

    Bn, Tn, d = x.shape
    Dh = d // H
    proj = F.linear(x, W, bias)
    q, k, v = proj.split([H * Dh, Hkv * Dh, Hkv * Dh], dim=-1)
    q, k, v = (t.reshape(Bn, Tn, -1, Dh).transpose(1, 2) for t in (q, k, v))
    if rope:
        pos = torch.arange(Tn, dtype=torch.float64)[:, None]
        freq = 10000.0 ** (-torch.arange(0, Dh, 2, dtype=torch.float64) / Dh)
        ang = pos * freq
        cos, sin = ang.cos().float(), ang.sin().float()

        def rot(t):
            a, b = t[..., 0::2], t[..., 1::2]
            return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2)

        q, k = rot(q), rot(k)
    o = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
    return o.transpose(1, 2).reshape(Bn, Tn, H * Dh)


@pytest.mark.parametrize("ks", KERNELS)
@pytest.mark.parametrize("rope,causal", [(False, True), (True, False)])
def test_gqa_and_rope_match_sdpa(ks, rope, causal):
    H, Hkv = 4, 2
    mha = MultiHeadAttention(D_MODEL, H, n_kv_heads=Hkv, causal=causal, rope=rope)
    model = Model(mha, (T, D_MODEL), kernels=get_kernels(ks))
    p = model.parameters()
    x = rnd(B, T, D_MODEL)
    with torch.no_grad():
        att = _gqa_reference(torch.from_numpy(x), torch.from_numpy(p["in_proj_weight"]),
                             torch.from_numpy(p["in_proj_bias"]), H, Hkv, rope, causal)
        want = torch.nn.functional.linear(att, torch.from_numpy(p["out_proj.weight"]),
                                          torch.from_numpy(p["out_proj.bias"])).numpy()
    np.testing.assert_allclose(model.predict(x), want, rtol=1e-4, atol=1e-5)


def test_mha_gradients_finite_differences():
    mha = MultiHeadAttention(8, 2, n_kv_heads=1, rope=True)
    check_gradients(mha, [(4, 8), (5, 8), (5,)], input_dtype=["f32", "f32", "bool"], batch=2)
    check_gradients(MultiHeadAttention(8, 2, causal=True), (4, 8), batch=2)


def test_fully_padded_rows_give_zero_like_sdpa():
    q, kpm = Input((T, D_MODEL), name="q"), Input((T,), name="kpm", dtype="bool")
    model = Model(inputs=[q, kpm], outputs=MultiHeadAttention(D_MODEL, HEADS, bias=False)(
        q, None, kpm))
    pad = padding(B, T)
    pad[0] = True
    y = model.predict({"q": rnd(B, T, D_MODEL), "kpm": pad})
    assert np.isfinite(y).all() and (y[0] == 0).all()


def test_mask_errors_name_the_layer():
    q = Input((T, D_MODEL), name="q")
    with pytest.raises(ShapeError, match="key_padding_mask must be bool"):
        MultiHeadAttention(D_MODEL, HEADS)(q, None, Input((T,), name="m"), name="att")
    with pytest.raises(ShapeError, match="att: attn_mask must be"):
        MultiHeadAttention(D_MODEL, HEADS)(q, None, None, Input((T, T + 1), name="m"),
                                           name="att")
    with pytest.raises(ShapeError, match="causal attention needs Tk >= Tq"):
        MultiHeadAttention(D_MODEL, HEADS, causal=True)(q, Input((T - 2, D_MODEL), name="kv"))
    with pytest.raises(QorusError, match="n_heads=3 must be a multiple of n_kv_heads=2"):
        MultiHeadAttention(12, 3, n_kv_heads=2)
    with pytest.raises(QorusError, match="d_model=16 must split into n_heads=3"):
        MultiHeadAttention(D_MODEL, 3)


def test_a_mask_that_needs_a_gradient_is_refused():
    from qorus_core import ops

    q, m = Input((T, D_MODEL), name="q"), Input((T, T), name="m", grad=True)
    model = Model(inputs=[q, m], outputs=MultiHeadAttention(D_MODEL, HEADS)(
        q, None, None, ops.Scale(1.0)(m)))
    plan = model.plan(2, train=True, input_grad=True)
    plan.forward()
    with pytest.raises(ShapeError, match="attn_mask gets no gradient"):
        plan.backward()


# ----------------------------------------------------------------------------- layers
@pytest.mark.parametrize("ks", KERNELS)
@pytest.mark.parametrize("norm_first,activation", [(False, "relu"), (True, "gelu")])
def test_encoder_layer_trains_like_torch(ks, norm_first, activation):
    src, kpm = Input((T, D_MODEL), name="src"), Input((T,), name="kpm", dtype="bool")
    layer = TransformerEncoderLayer(D_MODEL, HEADS, 32, dropout=0.0, activation=activation,
                                    norm_first=norm_first)
    model = Model(inputs=[src, kpm], outputs=layer(src, kpm, name="enc"), kernels=get_kernels(ks))
    ref = nonzero_biases(torch.nn.TransformerEncoderLayer(
        D_MODEL, HEADS, 32, dropout=0.0, activation=activation, batch_first=True,
        norm_first=norm_first))
    inputs = {"src": rnd(B, T, D_MODEL), "kpm": padding(B, T)}
    train_parity(model, ref, inputs, lambda t: ref(t["src"], src_key_padding_mask=t["kpm"]),
                 prefixed("enc."))


@pytest.mark.parametrize("ks", KERNELS)
def test_decoder_layer_trains_like_torch(ks):
    tgt, mem = Input((T, D_MODEL), name="tgt"), Input((S, D_MODEL), name="mem")
    mkpm = Input((S,), name="mkpm", dtype="bool")
    layer = TransformerDecoderLayer(D_MODEL, HEADS, 32, dropout=0.0, causal=True)
    model = Model(inputs=[tgt, mem, mkpm], outputs=layer(tgt, mem, None, mkpm, name="dec"),
                  kernels=get_kernels(ks))
    ref = nonzero_biases(torch.nn.TransformerDecoderLayer(D_MODEL, HEADS, 32, dropout=0.0,
                                                       batch_first=True))
    causal = torch.nn.Transformer.generate_square_subsequent_mask(T)
    inputs = {"tgt": rnd(B, T, D_MODEL), "mem": rnd(B, S, D_MODEL, seed=4),
              "mkpm": padding(B, S)}
    train_parity(model, ref, inputs,
                 lambda t: ref(t["tgt"], t["mem"], tgt_mask=causal, tgt_is_causal=True,
                               memory_key_padding_mask=t["mkpm"]),
                 prefixed("dec."))


@pytest.mark.parametrize("ks", KERNELS)
def test_whole_transformer_trains_like_torch(ks):
    src, tgt = Input((S, D_MODEL), name="src"), Input((T, D_MODEL), name="tgt")
    skpm = Input((S,), name="skpm", dtype="bool")
    net = Transformer(D_MODEL, HEADS, 2, 2, dim_feedforward=32, dropout=0.0)
    model = Model(inputs=[src, tgt, skpm],
                  outputs=net(src, tgt, src_key_padding_mask=skpm,
                              memory_key_padding_mask=skpm, name="tr"),
                  kernels=get_kernels(ks))
    ref = nonzero_biases(torch.nn.Transformer(D_MODEL, HEADS, 2, 2, 32, dropout=0.0,
                                           batch_first=True))
    assert sorted("tr." + n for n in ref.state_dict()) == sorted(model.parameters())
    causal = torch.nn.Transformer.generate_square_subsequent_mask(T)
    inputs = {"src": rnd(B, S, D_MODEL), "tgt": rnd(B, T, D_MODEL, seed=5),
              "skpm": padding(B, S)}
    worst = train_parity(model, ref, inputs,
                         lambda t: ref(t["src"], t["tgt"], tgt_mask=causal, tgt_is_causal=True,
                                       src_key_padding_mask=t["skpm"],
                                       memory_key_padding_mask=t["skpm"]),
                         prefixed("tr."))
    assert worst["param"] < 1e-4


def test_configs_round_trip_and_models_save(tmp_path):
    for layer in (MultiHeadAttention(8, 2, n_kv_heads=1, causal=True, rope=True),
                  TransformerEncoderLayer(8, 2, 16, norm_first=True, activation="gelu"),
                  TransformerDecoderLayer(8, 2, 16, causal=True),
                  Transformer(8, 2, 1, 1, 16)):
        again = layer_from_dict(layer_to_dict(layer))
        assert type(again) is type(layer) and again.get_config() == layer.get_config()
    src, tgt = Input((5, 8), name="src"), Input((4, 8), name="tgt")
    model = Model(inputs=[src, tgt], outputs=Transformer(8, 2, 1, 1, 16, dropout=0.0)(src, tgt))
    xs = {"src": rnd(2, 5, 8), "tgt": rnd(2, 4, 8, seed=1)}
    model.save(tmp_path / "t.qorus")
    np.testing.assert_allclose(Model.load(tmp_path / "t.qorus").predict(xs), model.predict(xs),
                               rtol=1e-6)


def test_encoder_inference_allocates_nothing():
    src, kpm = Input((T, D_MODEL), name="src"), Input((T,), name="kpm", dtype="bool")
    model = Model(inputs=[src, kpm], outputs=TransformerEncoderLayer(D_MODEL, HEADS, 32)(src, kpm))
    plan = model.plan(B)
    plan.inputs["src"].a[...] = rnd(B, T, D_MODEL)
    plan.forward()
    assert trace_allocations(plan.forward, repeat=3).array_bytes == 0


def test_attention_dropout_trains_consistently():
    """With dropout the step is a fixed function of the seed: finite differences hold, the
    C and NumPy sets agree, inference is unaffected, and two steps draw different masks."""
    mha = MultiHeadAttention(8, 2, dropout=0.3)
    check_gradients(mha, (5, 8), batch=2)
    x = rnd(2, 5, 8)
    outs = []
    for ks in KERNELS:
        model = Model(MultiHeadAttention(8, 2, dropout=0.3), (5, 8), kernels=get_kernels(ks))
        plan = model.plan(2, train=True)
        plan.x.a[...] = x
        first = plan.forward().a.copy()
        model.run.step += 1                      # the Trainer's count of training steps
        outs.append([first, plan.forward().a.copy()])
        np.testing.assert_allclose(model.predict(x), Model(
            MultiHeadAttention(8, 2), (5, 8), kernels=get_kernels(ks)).predict(x), rtol=1e-6)
    np.testing.assert_allclose(outs[0][0], outs[1][0], rtol=1e-4, atol=1e-6)
    assert not np.allclose(outs[0][0], outs[0][1])
