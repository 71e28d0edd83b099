"""Saving Qorus encoders and decoders back as Hugging Face directories (config.json +
model.safetensors, written atomically) that ``transformers`` loads with ``from_pretrained``:
the inverse of hf_encoder / hf_decoder's mappings (q/k/v unstacked, RoPE rows back to
half-split, GPT-2's Conv1D weights transposed back and c_attn fused)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from qorus_core.errors import CheckpointError
from qorus_core.io.safetensors import save_file

from .hf_decoder import DecoderSpec
from .hf_encoder import EncoderSpec, encoder_names

_ENC_ACTS = {"gelu": "gelu", "relu": "relu", "gelu_tanh": "gelu_new"}
_ARCH = {"bert": "BertModel", "roberta": "RobertaModel", "xlm-roberta": "XLMRobertaModel",
         "distilbert": "DistilBertModel", "llama": "LlamaForCausalLM",
         "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM", "gpt2": "GPT2LMHeadModel"}


def _write(out: str | os.PathLike, config: dict[str, Any], tensors: dict[str, np.ndarray]) -> Path:
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v, np.float32) for k, v in tensors.items()},
              d / "model.safetensors", metadata={"format": "pt"})
    tmp = d / "config.json.tmp"
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    tmp.replace(d / "config.json")
    return d


def encoder_config(spec: EncoderSpec) -> dict[str, Any]:
    """config.json of an encoder spec (the fields hf_encoder reads, in HF's names)."""
    act = _ENC_ACTS[spec.activation]
    base = {"model_type": spec.model_type, "architectures": [_ARCH[spec.model_type]],
            "vocab_size": spec.vocab}
    if spec.model_type == "distilbert":
        return {**base, "dim": spec.d, "n_layers": spec.layers, "n_heads": spec.heads,
                "hidden_dim": spec.ffn, "activation": act,
                "max_position_embeddings": spec.max_positions}
    cfg = {**base, "hidden_size": spec.d, "num_hidden_layers": spec.layers,
           "num_attention_heads": spec.heads, "intermediate_size": spec.ffn, "hidden_act": act,
           "max_position_embeddings": spec.max_positions + spec.position_offset,
           "type_vocab_size": max(spec.type_vocab, 1), "layer_norm_eps": spec.eps}
    if spec.position_offset:
        cfg["pad_token_id"] = spec.position_offset - 1
    return cfg


def save_encoder(params: dict[str, np.ndarray], spec: EncoderSpec, out: str | os.PathLike) -> Path:
    """Write an encoder's parameters (``model.parameters()`` of ``build_encoder``'s model)."""
    out_t: dict[str, np.ndarray] = {}
    for mine, theirs in encoder_names(spec).items():
        if mine not in params:
            raise CheckpointError(f"save_encoder: the model has no parameter {mine!r}")
        a = params[mine]
        if isinstance(theirs, tuple):                  # stacked q, k, v
            for part, name in zip(np.split(a, 3), theirs):
                out_t[name] = part
        else:
            out_t[theirs] = a
    pos = params["pos.weight"]
    if spec.position_offset:   # rows before the first position: RoBERTa's padding rows, unused
        pos = np.concatenate([np.zeros((spec.position_offset, spec.d), np.float32), pos])
    out_t["embeddings.position_embeddings.weight"] = pos
    return _write(out, encoder_config(spec), out_t)


def decoder_config(spec: DecoderSpec, context: int) -> dict[str, Any]:
    """config.json of a decoder spec (GPT-2's positions: the ``context`` the model has)."""
    base = {"model_type": spec.model_type, "architectures": [_ARCH[spec.model_type]],
            "vocab_size": spec.vocab, "tie_word_embeddings": spec.tied}
    if spec.model_type == "gpt2":
        return {**base, "n_embd": spec.d, "n_layer": spec.layers, "n_head": spec.heads,
                "n_inner": spec.ffn, "n_positions": context,
                "layer_norm_epsilon": spec.eps, "activation_function": "gelu_new"}
    cfg = {**base, "hidden_size": spec.d, "intermediate_size": spec.ffn,
           "num_hidden_layers": spec.layers, "num_attention_heads": spec.heads,
           "num_key_value_heads": spec.kv_heads, "rms_norm_eps": spec.eps,
           "rope_theta": spec.rope_theta, "max_position_embeddings": spec.max_positions,
           "hidden_act": "silu"}
    if spec.model_type == "mistral":
        cfg["sliding_window"] = None
    return cfg


def _half_split(w: np.ndarray, heads: int) -> np.ndarray:
    """Rows of ``heads`` heads from adjacent-pair back to half-split RoPE order."""
    D = w.shape[0] // heads
    return np.ascontiguousarray(w.reshape(heads, D // 2, 2, *w.shape[1:]).swapaxes(1, 2)
                                .reshape(w.shape))


def save_decoder(params: dict[str, np.ndarray], spec: DecoderSpec, out: str | os.PathLike) -> Path:
    """Write a decoder's parameters (``model.parameters()`` of ``load_decoder``'s model or a
    GPT of the same layout)."""
    p = params
    if spec.model_type == "gpt2":
        t = {"transformer.wte.weight": p["embed.weight"], "transformer.wpe.weight": p["pos.weight"],
             "transformer.ln_f.weight": p["norm.weight"], "transformer.ln_f.bias": p["norm.bias"]}
        for i in range(spec.layers):
            a, o = f"transformer.h.{i}.", f"blocks.{i}."
            t[a + "attn.c_attn.weight"] = np.concatenate([p[o + f"attn.w{n}"] for n in "qkv"]).T
            t[a + "attn.c_attn.bias"] = np.concatenate([p[o + f"attn.b{n}"] for n in "qkv"])
            t[a + "attn.c_proj.weight"] = p[o + "attn.wo"].T
            t[a + "attn.c_proj.bias"] = p[o + "attn.bo"]
            for mine, theirs in (("norm1", "ln_1"), ("norm2", "ln_2")):
                t[f"{a}{theirs}.weight"] = p[f"{o}{mine}.weight"]
                t[f"{a}{theirs}.bias"] = p[f"{o}{mine}.bias"]
            for mine, theirs in (("fc", "c_fc"), ("proj", "c_proj")):
                t[f"{a}mlp.{theirs}.weight"] = p[f"{o}ffn.{mine}.weight"].T
                t[f"{a}mlp.{theirs}.bias"] = p[f"{o}ffn.{mine}.bias"]
        return _write(out, decoder_config(spec, p["pos.weight"].shape[0]), t)
    t = {"model.embed_tokens.weight": p["embed.weight"], "model.norm.weight": p["norm.weight"]}
    if not spec.tied:
        t["lm_head.weight"] = p["head.weight"]
    for i in range(spec.layers):
        a, o = f"model.layers.{i}.", f"blocks.{i}."
        t[a + "input_layernorm.weight"] = p[o + "norm1.weight"]
        t[a + "post_attention_layernorm.weight"] = p[o + "norm2.weight"]
        t[a + "self_attn.q_proj.weight"] = _half_split(p[o + "attn.wq"], spec.heads)
        t[a + "self_attn.k_proj.weight"] = _half_split(p[o + "attn.wk"], spec.kv_heads)
        t[a + "self_attn.v_proj.weight"] = p[o + "attn.wv"]
        t[a + "self_attn.o_proj.weight"] = p[o + "attn.wo"]
        if spec.qkv_bias:
            t[a + "self_attn.q_proj.bias"] = _half_split(p[o + "attn.bq"], spec.heads)
            t[a + "self_attn.k_proj.bias"] = _half_split(p[o + "attn.bk"], spec.kv_heads)
            t[a + "self_attn.v_proj.bias"] = p[o + "attn.bv"]
            if np.any(p[o + "attn.bo"]):
                raise CheckpointError(f"save_decoder: {o}attn.bo is not zero, and "
                                      f"{spec.model_type} has no output bias")
        for mine, theirs in (("w_gate", "gate_proj"), ("w_up", "up_proj"), ("w_down", "down_proj")):
            t[f"{a}mlp.{theirs}.weight"] = p[f"{o}ffn.{mine}"]
    return _write(out, decoder_config(spec, spec.max_positions), t)
