"""Hugging Face decoders of the llama family (Llama, Mistral, Qwen2) as the same ``llm.GPT``
the GGUF loader builds, and GPT-2 as the GPT-2 layout of ``llm.GPT`` (learned positions,
LayerNorm, tanh-GELU MLP, biases, tied head), so they generate with ``generate`` /
``Generator`` like GGUF models. GPT-2's Conv1D weights are stored (in, out): transposed at
load, its fused c_attn split into q, k and v.

HF stores q/k rows for half-split RoPE (pairs (i, i + D/2)); the GPT rotates adjacent pairs
(GGUF's layout), so each head's q and k rows (and Qwen2's q/k biases) are interleaved at load
(row 2i <- i, 2i + 1 <- i + D/2): the same rotation, the same logits. Qwen2's attention has
q/k/v biases and none on the output; the GPT's output bias is then zero. Mistral's sliding
window is not modelled: a config whose window is shorter than the context asked for is
refused rather than attended past.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qorus_core import Model
from qorus_core.errors import CheckpointError
from qorus_core.validate import positive_int

from .gpt import GPT
from .hf_checkpoint import field, load_tensors, model_dir, read_json

DECODERS = ("llama", "mistral", "qwen2", "gpt2")


@dataclass(frozen=True)
class DecoderSpec:
    """The sizes of one llama-family checkpoint (config.json)."""

    model_type: str
    vocab: int
    d: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    eps: float
    rope_theta: float
    max_positions: int
    tied: bool
    qkv_bias: bool


def decoder_spec(cfg: dict[str, Any], path: Path) -> DecoderSpec:
    """The spec of config.json's model, or CheckpointError naming the field."""
    mt = field(cfg, "model_type", path, str)
    if mt not in DECODERS:
        raise CheckpointError(f"{path}: field 'model_type' is {mt!r}; the decoders that load are "
                              f"{', '.join(DECODERS)}")
    if mt == "gpt2":
        return _gpt2_spec(cfg, path)
    act = field(cfg, "hidden_act", path, str, "silu")
    if act != "silu":
        raise CheckpointError(f"{path}: field 'hidden_act' is {act!r}; llama-family models use silu")
    rs = cfg.get("rope_scaling") or (cfg.get("rope_parameters") or {}).get("rope_type")
    if rs not in (None, "default") and not (isinstance(rs, dict) and rs.get("rope_type") in
                                            (None, "default")):
        raise CheckpointError(f"{path}: field 'rope_scaling' {rs!r} is not supported")
    d, heads = field(cfg, "hidden_size", path), field(cfg, "num_attention_heads", path)
    kv = field(cfg, "num_key_value_heads", path, int, heads)
    if d % heads or heads % kv or (d // heads) % 2:
        raise CheckpointError(f"{path}: {heads} heads and {kv} kv heads do not fit "
                              f"hidden_size {d} (an even head size, heads a multiple of kv heads)")
    theta = cfg.get("rope_theta", (cfg.get("rope_parameters") or {}).get("rope_theta", 10000.0))
    return DecoderSpec(mt, field(cfg, "vocab_size", path), d, field(cfg, "num_hidden_layers", path),
                       heads, kv, field(cfg, "intermediate_size", path),
                       field(cfg, "rms_norm_eps", path, float, 1e-6), float(theta),
                       field(cfg, "max_position_embeddings", path),
                       bool(cfg.get("tie_word_embeddings", False)), mt == "qwen2")


def _gpt2_spec(cfg: dict[str, Any], path: Path) -> DecoderSpec:
    act = field(cfg, "activation_function", path, str, "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh"):
        raise CheckpointError(f"{path}: field 'activation_function' is {act!r}; GPT-2 loads with "
                              "gelu_new")
    d, heads = field(cfg, "n_embd", path), field(cfg, "n_head", path)
    if d % heads:
        raise CheckpointError(f"{path}: n_embd {d} does not split into {heads} heads")
    return DecoderSpec("gpt2", field(cfg, "vocab_size", path), d, field(cfg, "n_layer", path),
                       heads, heads, field(cfg, "n_inner", path, int, 4 * d),
                       field(cfg, "layer_norm_epsilon", path, float, 1e-5), 10000.0,
                       field(cfg, "n_positions", path), True, True)


def _gpt2_state(spec: DecoderSpec, t: dict[str, np.ndarray], context: int, get
                ) -> dict[str, np.ndarray]:
    """GPT-2's tensors (Conv1D weights (in, out): transposed) under the GPT's names."""
    d = spec.d
    state = {"embed.weight": get("wte.weight"), "pos.weight": get("wpe.weight")[:context],
             "norm.weight": get("ln_f.weight"), "norm.bias": get("ln_f.bias")}
    for i in range(spec.layers):
        a, o = f"h.{i}.", f"blocks.{i}."
        w, b = get(a + "attn.c_attn.weight").T, get(a + "attn.c_attn.bias")
        for j, n in enumerate("qkv"):
            state[f"{o}attn.w{n}"] = np.ascontiguousarray(w[j * d:(j + 1) * d])
            state[f"{o}attn.b{n}"] = b[j * d:(j + 1) * d]
        state[o + "attn.wo"] = np.ascontiguousarray(get(a + "attn.c_proj.weight").T)
        state[o + "attn.bo"] = get(a + "attn.c_proj.bias")
        for mine, theirs in (("norm1", "ln_1"), ("norm2", "ln_2")):
            state[f"{o}{mine}.weight"] = get(f"{a}{theirs}.weight")
            state[f"{o}{mine}.bias"] = get(f"{a}{theirs}.bias")
        for mine, theirs in (("fc", "c_fc"), ("proj", "c_proj")):
            state[f"{o}ffn.{mine}.weight"] = np.ascontiguousarray(get(f"{a}mlp.{theirs}.weight").T)
            state[f"{o}ffn.{mine}.bias"] = get(f"{a}mlp.{theirs}.bias")
    return state


def _interleave(w: np.ndarray, heads: int) -> np.ndarray:
    """Rows of ``heads`` heads from half-split to adjacent-pair RoPE order (a copy)."""
    D = w.shape[0] // heads
    rest = w.shape[1:]
    return np.ascontiguousarray(
        w.reshape(heads, 2, D // 2, *rest).swapaxes(1, 2).reshape(w.shape))


def qorus_state(spec: DecoderSpec, tensors: dict[str, np.ndarray], path: Path,
                context: int | None = None) -> dict[str, np.ndarray]:
    """The GPT's parameters from HF's tensors (GPT-2's position table cut to ``context``);
    CheckpointError names a missing tensor."""
    prefix = "transformer." if spec.model_type == "gpt2" else "model."
    t = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in tensors.items()}

    def get(name: str) -> np.ndarray:
        if name not in t:
            raise CheckpointError(f"{path}: tensor {name!r} is missing")
        return t[name]

    if spec.model_type == "gpt2":
        return _gpt2_state(spec, t, context or spec.max_positions, get)

    state = {"embed.weight": get("embed_tokens.weight"), "norm.weight": get("norm.weight")}
    if not spec.tied:
        state["head.weight"] = get("lm_head.weight")
    for i in range(spec.layers):
        a, o = f"layers.{i}.", f"blocks.{i}."
        state[o + "norm1.weight"] = get(a + "input_layernorm.weight")
        state[o + "norm2.weight"] = get(a + "post_attention_layernorm.weight")
        state[o + "attn.wq"] = _interleave(get(a + "self_attn.q_proj.weight"), spec.heads)
        state[o + "attn.wk"] = _interleave(get(a + "self_attn.k_proj.weight"), spec.kv_heads)
        state[o + "attn.wv"] = get(a + "self_attn.v_proj.weight")
        state[o + "attn.wo"] = get(a + "self_attn.o_proj.weight")
        if spec.qkv_bias:
            state[o + "attn.bq"] = _interleave(get(a + "self_attn.q_proj.bias"), spec.heads)
            state[o + "attn.bk"] = _interleave(get(a + "self_attn.k_proj.bias"), spec.kv_heads)
            state[o + "attn.bv"] = get(a + "self_attn.v_proj.bias")
            state[o + "attn.bo"] = np.zeros(spec.d, np.float32)
        for mine, theirs in (("w_gate", "gate_proj"), ("w_up", "up_proj"), ("w_down", "down_proj")):
            state[f"{o}ffn.{mine}"] = get(f"{a}mlp.{theirs}.weight")
    return state


def build_decoder(spec: DecoderSpec, context: int, kernels=None) -> Model:
    """The GPT for ``context`` positions (its KV cache) on int32 ids -> logits."""
    if spec.model_type == "gpt2":
        if context > spec.max_positions:
            raise CheckpointError(f"context {context} exceeds GPT-2's {spec.max_positions} "
                                  "positions")
        net = GPT(spec.vocab, spec.d, spec.layers, spec.heads, max_len=context, d_ff=spec.ffn,
                  positional="learned", norm="layernorm", ffn="gelu_tanh", tie_embeddings=True,
                  eps=spec.eps, bias=True)
        return Model(net, (context,), input_dtype="i32", kernels=kernels)
    net = GPT(spec.vocab, spec.d, spec.layers, spec.heads, max_len=context, d_ff=spec.ffn,
              n_kv_heads=spec.kv_heads, positional="rope", norm="rmsnorm", ffn="swiglu",
              tie_embeddings=spec.tied, rope_theta=spec.rope_theta, eps=spec.eps,
              bias=spec.qkv_bias)
    return Model(net, (context,), input_dtype="i32", kernels=kernels)


def _hf_names(spec: DecoderSpec) -> dict[str, str]:
    """The GPT's parameter -> the HF tensor it is, for the llama family used in place (NEOX
    RoPE: q/k rows as trained; ``model.`` prefix; no output bias: zeros, added by the caller)."""
    names = {"embed.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight"}
    if not spec.tied:
        names["head.weight"] = "lm_head.weight"
    for i in range(spec.layers):
        a, o = f"model.layers.{i}.", f"blocks.{i}."
        names.update({o + "norm1.weight": a + "input_layernorm.weight",
                      o + "norm2.weight": a + "post_attention_layernorm.weight",
                      o + "attn.wq": a + "self_attn.q_proj.weight",
                      o + "attn.wk": a + "self_attn.k_proj.weight",
                      o + "attn.wv": a + "self_attn.v_proj.weight",
                      o + "attn.wo": a + "self_attn.o_proj.weight",
                      o + "ffn.w_gate": a + "mlp.gate_proj.weight",
                      o + "ffn.w_up": a + "mlp.up_proj.weight",
                      o + "ffn.w_down": a + "mlp.down_proj.weight"})
        if spec.qkv_bias:
            names.update({o + "attn.bq": a + "self_attn.q_proj.bias",
                          o + "attn.bk": a + "self_attn.k_proj.bias",
                          o + "attn.bv": a + "self_attn.v_proj.bias"})
    return names


def _in_place(st, key: str, shape: tuple[int, ...], label: str):
    """Tensor ``key`` of safetensors file ``st`` as a weight of ``shape``: a float32 matrix as
    a read-only view of the map, an F16 / BF16 matrix as a ``QWeight`` over its mapped bytes,
    a vector (a norm gain, a bias) as a float32 copy."""
    from qorus_core import QWeight, Tensor

    dtype = st.dtype(key)
    raw = st.get(key, bf16_as_f32=False)
    if tuple(raw.shape) != tuple(shape):
        raise CheckpointError(f"{st.path}: tensor {key!r} has shape {tuple(raw.shape)}, the "
                              f"model expects {tuple(shape)}")
    if len(shape) == 2 and dtype in ("F16", "BF16"):
        return QWeight(raw.reshape(-1).view(np.uint8), dtype.lower(), shape[0], shape[1])
    if len(shape) == 2 and dtype == "F32":
        return Tensor(raw, label)
    if dtype == "BF16":
        raw = (raw.astype(np.uint32) << 16).view(np.float32)
    if dtype not in ("F32", "F16", "BF16"):
        raise CheckpointError(f"{st.path}: tensor {key!r} is {dtype}; weights load from F32, "
                              "F16 or BF16")
    return Tensor(np.ascontiguousarray(raw, dtype=np.float32), label)


def _in_place_decoder(spec: DecoderSpec, d: Path, context: int, kernels) -> Model:
    """The llama-family GPT over the directory's safetensors, every matrix used where it lies
    (``rope_half_split``: HF's q/k row order), the files checked before each forward."""
    from qorus_core import Spec, Tensor, param_shapes
    from qorus_core.io.safetensors import SafeTensorsFile

    from .hf_checkpoint import weight_files

    net = GPT(spec.vocab, spec.d, spec.layers, spec.heads, max_len=context, d_ff=spec.ffn,
              n_kv_heads=spec.kv_heads, positional="rope", norm="rmsnorm", ffn="swiglu",
              tie_embeddings=spec.tied, rope_theta=spec.rope_theta, eps=spec.eps,
              bias=spec.qkv_bias, rope_half_split=True)
    shapes = param_shapes(net, Spec((1, 1), "i32"))
    files = [SafeTensorsFile(p) for p in weight_files(d)]
    try:
        where = {k: f for f in files for k in f.keys()}
        weights = {}
        for ours, theirs in _hf_names(spec).items():
            if theirs not in where:
                raise CheckpointError(f"{d}: tensor {theirs!r} is missing")
            weights[ours] = _in_place(where[theirs], theirs, shapes[ours], theirs)
        if spec.qkv_bias:
            for i in range(spec.layers):
                name = f"blocks.{i}.attn.bo"
                weights[name] = Tensor(np.zeros(shapes[name], np.float32), name)
        return Model(net, (context,), input_dtype="i32", kernels=kernels,
                     external_params=weights, weight_files=tuple(files))
    except BaseException:
        for f in files:
            f.close()
        raise


def load_decoder(path: str | os.PathLike, context: int | None = None, kernels=None,
                 in_place: bool = False) -> tuple[Model, DecoderSpec]:
    """(model, spec) of a Hugging Face llama / mistral / qwen2 / gpt2 directory; ``context`` KV-cache
    positions (default the model's, at most 2048). Generate with ``generate(model, ids, ...)``;
    the tokenizer is ``load_tokenizer(path)``. ``in_place`` (inference: generation, serving):
    the llama family's matrices are used where they lie in the mapped safetensors, F16 / BF16
    ones as 16-bit weights, not copied to float32; the default copies them into a model that
    trains and saves."""
    d = model_dir(path)
    cfg = read_json(d / "config.json")
    spec = decoder_spec(cfg, d / "config.json")
    ctx = (min(spec.max_positions, 2048) if context is None
           else positive_int(context, "context", "load_decoder"))
    window = cfg.get("sliding_window")
    if spec.model_type == "mistral" and isinstance(window, int) and window < ctx:
        raise CheckpointError(f"{d / 'config.json'}: sliding_window {window} is shorter than the "
                              f"context {ctx}; load with context <= {window}")
    if in_place and spec.model_type != "gpt2":   # GPT-2's Conv1D weights need transposing
        return _in_place_decoder(spec, d, ctx, kernels), spec
    model = build_decoder(spec, ctx, kernels)
    model.load_state_dict(qorus_state(spec, load_tensors(d), d, ctx), source=str(d))
    return model, spec
