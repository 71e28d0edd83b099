"""Hugging Face encoders (BERT, RoBERTa / XLM-R, DistilBERT, and MiniLM-class models, which are
BERT) as Qorus models of registered layers, and sentence embeddings from them.

The network: word (+ token-type) embeddings, learned positions, LayerNorm, post-norm
``llm.TransformerEncoder`` layers with the key padding mask, then the checkpoint's pooling
(``llm.MeanPool`` over the unpadded tokens, or the first token) and, for a sentence-transformers
model with a Normalize module, L2 normalisation. HF's q/k/v weights become the layers'
``in_proj_weight`` (stacked), everything else maps one to one. RoBERTa's positions start
after its padding id: the table is loaded from that row on.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qorus_core import Input, Model, ops
from qorus_core.errors import CheckpointError, ConfigError

from .embedding import Embedding
from .hf_checkpoint import field, load_tensors, model_dir, read_json
from .pooling import MeanPool
from .positional import PositionalEmbedding
from .transformer import TransformerEncoder

#: HF's hidden_act -> the encoder layers' activation
ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "gelu_new": "gelu_tanh",
               "gelu_pytorch_tanh": "gelu_tanh"}
POOLINGS = ("mean", "cls")


@dataclass(frozen=True)
class EncoderSpec:
    """The sizes of one encoder checkpoint (config.json, normalised across model types)."""

    model_type: str
    vocab: int
    d: int
    heads: int
    layers: int
    ffn: int
    activation: str
    max_positions: int       # rows of the position table used (after RoBERTa's offset)
    type_vocab: int          # 0: no token types (DistilBERT, most RoBERTa use 1)
    eps: float
    position_offset: int     # the first position row (RoBERTa: pad_token_id + 1)


def encoder_spec(cfg: dict[str, Any], path: Path) -> EncoderSpec:
    """The spec of config.json's model, or CheckpointError naming the field."""
    mt = field(cfg, "model_type", path, str)
    if mt == "distilbert":
        act = field(cfg, "activation", path, str, "gelu")
        d, heads = field(cfg, "dim", path), field(cfg, "n_heads", path)
        layers, ffn = field(cfg, "n_layers", path), field(cfg, "hidden_dim", path)
        types, eps, offset = 0, 1e-12, 0
    elif mt in ("bert", "roberta", "xlm-roberta"):
        act = field(cfg, "hidden_act", path, str, "gelu")
        d, heads = field(cfg, "hidden_size", path), field(cfg, "num_attention_heads", path)
        layers, ffn = field(cfg, "num_hidden_layers", path), field(cfg, "intermediate_size", path)
        types = field(cfg, "type_vocab_size", path, int, 2)
        eps = field(cfg, "layer_norm_eps", path, float, 1e-12)
        offset = 0 if mt == "bert" else int(field(cfg, "pad_token_id", path, int, 1)) + 1
    else:
        raise CheckpointError(f"{path}: field 'model_type' is {mt!r}; the encoders that load are "
                              "bert, roberta, xlm-roberta, distilbert")
    if act not in ACTIVATIONS:
        raise CheckpointError(f"{path}: activation {act!r} is not supported (one of "
                              f"{', '.join(ACTIVATIONS)})")
    if d % heads:
        raise CheckpointError(f"{path}: hidden size {d} does not split into {heads} heads")
    max_pos = field(cfg, "max_position_embeddings", path) - offset
    if max_pos < 1:
        raise CheckpointError(f"{path}: max_position_embeddings leaves no position after the "
                              f"offset {offset}")
    return EncoderSpec(mt, field(cfg, "vocab_size", path), d, heads, layers, ffn,
                       ACTIVATIONS[act], max_pos, types, eps, offset)


def build_encoder(spec: EncoderSpec, length: int | None = None, pooling: str = "mean",
                  kernels=None) -> Model:
    """Inputs ``ids`` (int32), ``types`` (int32, when the model has token types) and ``pad``
    (bool, True at padding) of ``length`` (default the model's most positions; a plan may
    take any length up to it); outputs ``hidden`` [T, d] and ``pooled`` [d]."""
    from qorus_layers_mlp import LayerNorm

    if pooling not in POOLINGS:
        raise ConfigError(f"pooling {pooling!r}: expected one of {', '.join(POOLINGS)}")
    T = spec.max_positions if length is None else length
    ids, pad = Input((T,), name="ids", dtype="i32"), Input((T,), name="pad", dtype="bool")
    h = Embedding(spec.vocab, spec.d)(ids, name="tok")
    inputs = [ids]
    if spec.type_vocab:
        types = Input((T,), name="types", dtype="i32")
        h = ops.add(h, Embedding(spec.type_vocab, spec.d)(types, name="typ"))
        inputs.append(types)
    h = PositionalEmbedding(spec.max_positions, spec.d)(h, name="pos")
    h = LayerNorm(spec.d, eps=spec.eps)(h, name="norm")
    h = TransformerEncoder(spec.d, spec.heads, spec.layers, spec.ffn, dropout=0.0,
                           activation=spec.activation, layer_norm_eps=spec.eps)(h, pad, name="enc")
    pooled = (MeanPool()(h, pad) if pooling == "mean"
              else ops.reshape(ops.slice(h, 1, 0, 1), (spec.d,)))
    return Model(inputs=inputs + [pad], outputs={"hidden": h, "pooled": pooled}, kernels=kernels)


# ----------------------------------------------------------------------------- weights
_PREFIXES = ("bert.", "roberta.", "distilbert.", "model.")
_IGNORED = ("pooler.", "cls.", "lm_head.", "classifier.", "qa_outputs.", "vocab_", "pre_classifier.")


def _strip(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for k, v in tensors.items():
        for p in _PREFIXES:
            if k.startswith(p):
                k = k[len(p):]
                break
        out[k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta",
                                                                      "LayerNorm.bias")] = v
    return out


def _layer_names(spec: EncoderSpec, i: int) -> dict[str, str | tuple[str, str, str]]:
    """Qorus name (under enc.layers.i.) -> HF name, or the (q, k, v) names stacked into it."""
    if spec.model_type == "distilbert":
        a = f"transformer.layer.{i}."
        qkv, out = (f"{a}attention.{n}_lin" for n in "qkv"), f"{a}attention.out_lin"
        n1, l1, l2, n2 = (f"{a}sa_layer_norm", f"{a}ffn.lin1", f"{a}ffn.lin2",
                          f"{a}output_layer_norm")
    else:
        a = f"encoder.layer.{i}."
        qkv = (f"{a}attention.self.{n}" for n in ("query", "key", "value"))
        out, n1 = f"{a}attention.output.dense", f"{a}attention.output.LayerNorm"
        l1, l2, n2 = f"{a}intermediate.dense", f"{a}output.dense", f"{a}output.LayerNorm"
    q, k, v = qkv
    names: dict[str, str | tuple[str, str, str]] = {
        "self_attn.in_proj_weight": (f"{q}.weight", f"{k}.weight", f"{v}.weight"),
        "self_attn.in_proj_bias": (f"{q}.bias", f"{k}.bias", f"{v}.bias")}
    for mine, theirs in (("self_attn.out_proj", out), ("norm1", n1), ("linear1", l1),
                         ("linear2", l2), ("norm2", n2)):
        names[f"{mine}.weight"], names[f"{mine}.bias"] = f"{theirs}.weight", f"{theirs}.bias"
    return names


def encoder_names(spec: EncoderSpec) -> dict[str, Any]:
    """Every parameter's Qorus name -> its HF name (a (q, k, v) triple for the stacked
    in-projections; pos.weight's HF table starts ``position_offset`` rows earlier)."""
    names: dict[str, Any] = {"tok.weight": "embeddings.word_embeddings.weight",
                             "pos.weight": "embeddings.position_embeddings.weight",
                             "norm.weight": "embeddings.LayerNorm.weight",
                             "norm.bias": "embeddings.LayerNorm.bias"}
    if spec.type_vocab:
        names["typ.weight"] = "embeddings.token_type_embeddings.weight"
    for i in range(spec.layers):
        names.update({f"enc.layers.{i}.{k}": v for k, v in _layer_names(spec, i).items()})
    return names


def qorus_state(spec: EncoderSpec, tensors: dict[str, np.ndarray], path: Path
                ) -> dict[str, np.ndarray]:
    """The encoder's parameters under Qorus names from HF's tensors; CheckpointError names
    a missing tensor, one of the wrong shape checked at load, and leftovers not known."""
    t = _strip(tensors)
    names = encoder_names(spec)

    def get(name: str) -> np.ndarray:
        if name not in t:
            raise CheckpointError(f"{path}: tensor {name!r} is missing")
        return t[name]

    state = {}
    for mine, theirs in names.items():
        state[mine] = (np.concatenate([get(n) for n in theirs]) if isinstance(theirs, tuple)
                       else get(theirs))
    pos = state["pos.weight"]
    state["pos.weight"] = pos[spec.position_offset:spec.position_offset + spec.max_positions]
    used = {n for v in names.values() for n in ((v,) if isinstance(v, str) else v)}
    unknown = sorted(k for k in t if k not in used and not k.startswith(_IGNORED)
                     and not k.endswith("position_ids"))
    if unknown:
        raise CheckpointError(f"{path}: tensors {unknown[:5]} belong to no encoder layer this "
                              "model type has")
    return state


# ----------------------------------------------------------------------------- sentence embeddings
def _st_modules(d: Path) -> tuple[str, bool]:
    """(pooling, normalize) of a sentence-transformers directory (modules.json), else the
    default: mean pooling, no normalisation."""
    mods = d / "modules.json"
    if not mods.exists():
        return "mean", False
    import json

    try:
        entries = json.loads(mods.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{mods}: not readable JSON ({exc})") from None
    if not isinstance(entries, list):
        raise CheckpointError(f"{mods}: expected a list of modules")
    pooling, normalize = "mean", False
    for m in entries:
        kind = str(m.get("type", "")) if isinstance(m, dict) else ""
        if kind.endswith("Normalize"):
            normalize = True
        elif kind.endswith("Pooling"):
            sub = (d / str(m.get("path", ""))).resolve()
            if d.resolve() not in (sub, *sub.parents):
                raise CheckpointError(f"{mods}: module path {m.get('path')!r} is outside the "
                                      "model directory")
            cfg = read_json(sub / "config.json")
            modes = [k for k, v in cfg.items() if k.startswith("pooling_mode_") and v is True]
            mode = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}.get(
                modes[0] if len(modes) == 1 else "")
            if mode is None:
                raise CheckpointError(f"{d / str(m.get('path', ''))}/config.json: pooling "
                                      f"{modes or 'none'} is not supported (mean or cls tokens)")
            pooling = mode
        elif kind and not kind.endswith("Transformer"):
            raise CheckpointError(f"{mods}: module {kind!r} is not supported (Transformer, "
                                  "Pooling, Normalize)")
    return pooling, normalize


class Encoder:
    """A loaded encoder: ``encode(texts)`` -> float32 [N, d] sentence embeddings (the
    checkpoint's pooling and normalisation), ``hidden(ids, attention_mask)`` -> the last hidden
    states [N, T, d]. Batches are padded to their longest text, each length compiled once.
    Thread-safe: calls from several threads take turns (a plan's buffers serve one at a time)."""

    def __init__(self, model: Model, spec: EncoderSpec, tokenizer, normalize: bool) -> None:
        self.model, self.spec, self.tokenizer, self.normalize = model, spec, tokenizer, normalize
        self._lock = threading.Lock()

    def _run(self, ids: np.ndarray, mask: np.ndarray, types: np.ndarray | None = None) -> dict:
        n, T = ids.shape
        if T > self.spec.max_positions:
            raise ConfigError(f"{T} tokens exceed the model's {self.spec.max_positions} positions")
        x = {"ids": ids.astype(np.int32), "pad": np.asarray(mask) == 0}
        if self.spec.type_vocab:
            x["types"] = (np.zeros_like(x["ids"]) if types is None else types.astype(np.int32))
        with self._lock:
            plan = self.model.plan(n, shape={k: (T,) for k in x})
            for k, v in x.items():
                plan.inputs[k].a[...] = v
            plan.forward()
            return {k: t.a.copy() for k, t in plan.outputs.items()}

    def hidden(self, ids: np.ndarray, attention_mask: np.ndarray,
               token_type_ids: np.ndarray | None = None) -> np.ndarray:
        """The last hidden states [N, T, d] of token ids [N, T] (attention_mask 1 = token)."""
        return self._run(ids, attention_mask, token_type_ids)["hidden"]

    @property
    def max_tokens(self) -> int:
        """Tokens a text is cut to: the model's positions, or the tokenizer's
        ``model_max_length`` where that is smaller (tokenizer_config.json may have none)."""
        tok_limit = getattr(self.tokenizer, "model_max_length", None)
        return self.spec.max_positions if tok_limit is None else min(self.spec.max_positions,
                                                                     tok_limit)

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Sentence embeddings [len(texts), d] (float32)."""
        if isinstance(texts, str):
            texts = [texts]
        out = np.zeros((len(texts), self.spec.d), np.float32)
        limit = self.max_tokens
        for i in range(0, len(texts), batch_size):
            ids, mask = self.tokenizer.encode_batch(texts[i:i + batch_size], max_length=limit)
            e = self._run(np.asarray(ids), np.asarray(mask))["pooled"]
            if self.normalize:
                e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), np.float32(1e-12))
            out[i:i + len(e)] = e
        return out


def load_encoder(path: str | os.PathLike, kernels=None, pooling: str | None = None,
                 normalize: bool | None = None) -> Encoder:
    """An ``Encoder`` from a Hugging Face (or sentence-transformers) model directory:
    config.json, model.safetensors (or a sharded index), the tokenizer files; pooling and
    normalisation as modules.json declares (else mean pooling, none), or as given."""
    from .hf_tokenizer import load_tokenizer

    d = model_dir(path)
    spec = encoder_spec(read_json(d / "config.json"), d / "config.json")
    st_pool, st_norm = _st_modules(d)
    model = build_encoder(spec, pooling=pooling or st_pool, kernels=kernels)
    model.load_state_dict(qorus_state(spec, load_tensors(d), d), source=str(d))
    return Encoder(model, spec, load_tokenizer(d), st_norm if normalize is None else normalize)
