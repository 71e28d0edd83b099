"""Hugging Face decoder directories (llama, mistral, qwen2, gpt2) as GGUF content, for
``qorus convert HF_DIR OUT.gguf`` (the llm plugin's ``qorus_convert`` hook; core quantizes and
writes the file).

The layout is llama.cpp's ``convert_hf_to_gguf.py``'s:

- llama and mistral are ``general.architecture = "llama"`` with ``llama.block_count``,
  ``context_length``, ``embedding_length``, ``feed_forward_length``,
  ``attention.head_count(_kv)``, ``rope.freq_base``, ``attention.layer_norm_rms_epsilon``,
  ``vocab_size`` and ``rope.dimension_count``; q and k rows permuted per head from HF's
  half-split RoPE order to the adjacent pairs llama.cpp's (and our) llama rotates
  (``LlamaModel.permute``). A Mistral sliding window shorter than ``max_position_embeddings``
  becomes the context length, so no loader attends past it (neither models the window).
- qwen2 is ``"qwen2"`` with the same keys but the last two, its q/k/v biases, and q/k rows
  left as they are: llama.cpp rotates qwen2 in the NEOX (half-split) order.
- gpt2 is ``"gpt2"``: ``gpt2.*`` sizes and ``attention.layer_norm_epsilon``, Conv1D weights
  transposed to (out, in), the fused ``attn_qkv`` kept, ``position_embd`` and an
  ``output.weight`` copy of ``token_embd`` (as llama.cpp writes it).

Tensors are ``token_embd``, ``blk.N.attn_norm``, ``attn_q``, ``attn_k``, ``attn_v``,
``attn_output``, ``ffn_norm``, ``ffn_gate``, ``ffn_up``, ``ffn_down``, ``output_norm`` and
``output`` (absent when the embeddings are tied), read one at a time from the safetensors
(shards too) when convert asks for them. The tokenizer goes in as ``hf_gguf_vocab`` says. A
tensor of the checkpoint that maps to nothing, a missing one, or a config field the GGUF
cannot say is a ``CheckpointError`` naming the file and the field or tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from qorus_core.errors import CheckpointError
from qorus_core.io.safetensors import SafeTensorsFile

from .hf_checkpoint import read_json
from .hf_decoder import DecoderSpec, decoder_spec
from .hf_gguf_vocab import vocab_metadata

#: HF model_type -> GGUF general.architecture
ARCH = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "gpt2": "gpt2"}
_FLOATS = ("F32", "F16", "BF16", "F64")
#: checkpoint buffers that are no weights (GPT-2's causal masks, old RoPE tables)
_IGNORED = (".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq")


class Getter:
    """Reads one checkpoint tensor as float32 (then ``transform``) when called; ``order``
    is its place in the checkpoint (shard, then position in the shard)."""

    def __init__(self, st: SafeTensorsFile, key: str, order: tuple[int, int],
                 transform: Callable[[np.ndarray], np.ndarray] | None) -> None:
        self.st, self.key, self.order, self.transform = st, key, order, transform

    def __call__(self) -> np.ndarray:
        """The tensor, read now as float32 (and transformed): convert reads one tensor at a time."""
        a = np.asarray(self.st.get(self.key), dtype=np.float32)
        return self.transform(a) if self.transform is not None else a


def read_hf_decoder(src: str | Path) -> tuple[dict[str, Any], dict[str, Getter]] | None:
    """(GGUF metadata, GGUF tensor name -> getter) of a Hugging Face decoder directory; None
    when ``src`` has no config.json (not a Hugging Face model directory)."""
    d = Path(src)
    cfg_path = d / "config.json"
    if not cfg_path.is_file():
        return None
    cfg = read_json(cfg_path)
    spec = decoder_spec(cfg, cfg_path)
    _check_convertible(cfg, spec, cfg_path)
    arch = ARCH[spec.model_type]
    meta: dict[str, Any] = {"general.architecture": arch, "general.name": d.resolve().name}
    meta.update(hparams_metadata(spec, cfg, arch))
    meta.update(vocab_metadata(d, cfg, spec.vocab, llama_arch=arch == "llama"))
    weights = WeightFiles(d)
    tensors = (_gpt2_tensors(spec, weights) if arch == "gpt2"
               else _llama_tensors(spec, weights, permute=arch == "llama"))
    weights.check_all_used(tied=spec.tied)
    # in the checkpoint's order, as llama.cpp writes them
    return meta, dict(sorted(tensors.items(), key=lambda kv: kv[1].order))


def _check_convertible(cfg: dict[str, Any], spec: DecoderSpec, path: Path) -> None:
    """Config fields of models the GGUF (and our loader) would get wrong, refused."""
    if spec.model_type in ("llama", "mistral"):
        for name in ("attention_bias", "mlp_bias"):
            if cfg.get(name):
                raise CheckpointError(f"{path}: field {name!r} is true; llama GGUFs converted "
                                      "here have no such biases")
    if spec.model_type == "qwen2" and cfg.get("use_sliding_window"):
        raise CheckpointError(f"{path}: field 'use_sliding_window' is true; the sliding window "
                              "is not modelled")
    head_dim = cfg.get("head_dim")
    if spec.model_type != "gpt2" and head_dim not in (None, spec.d // spec.heads):
        raise CheckpointError(f"{path}: field 'head_dim' is {head_dim!r}, not hidden_size / "
                              f"num_attention_heads = {spec.d // spec.heads}")


def _u32(v: int) -> np.uint32:
    return np.uint32(v)


def hparams_metadata(spec: DecoderSpec, cfg: dict[str, Any], arch: str) -> dict[str, Any]:
    """The ``<arch>.*`` keys llama.cpp's converter writes for this model, in its order."""
    k = f"{arch}."
    if arch == "gpt2":
        return {k + "block_count": _u32(spec.layers),
                k + "context_length": _u32(cfg.get("n_ctx") or spec.max_positions),
                k + "embedding_length": _u32(spec.d), k + "feed_forward_length": _u32(spec.ffn),
                k + "attention.head_count": _u32(spec.heads),
                k + "attention.layer_norm_epsilon": np.float32(spec.eps)}
    context = spec.max_positions
    window = cfg.get("sliding_window")
    if spec.model_type == "mistral" and isinstance(window, int) and 0 < window < context:
        context = window
    meta = {k + "block_count": _u32(spec.layers), k + "context_length": _u32(context),
            k + "embedding_length": _u32(spec.d), k + "feed_forward_length": _u32(spec.ffn),
            k + "attention.head_count": _u32(spec.heads),
            k + "attention.head_count_kv": _u32(spec.kv_heads),
            k + "rope.freq_base": np.float32(spec.rope_theta),
            k + "attention.layer_norm_rms_epsilon": np.float32(spec.eps)}
    if cfg.get("head_dim") is not None:
        meta[k + "attention.key_length"] = meta[k + "attention.value_length"] = \
            _u32(cfg["head_dim"])
    if arch == "llama":
        meta[k + "vocab_size"] = _u32(spec.vocab)
        meta[k + "rope.dimension_count"] = _u32(spec.d // spec.heads)
    return meta


def permute_rope_rows(w: np.ndarray, heads: int) -> np.ndarray:
    """Rows of ``heads`` heads from HF's half-split RoPE order to adjacent pairs (row 2i of a
    head <- row i, 2i + 1 <- i + D/2): llama.cpp's ``LlamaModel.permute``."""
    return np.ascontiguousarray(
        w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2)
        .reshape(w.shape))


class WeightFiles:
    """The floating-point tensors of a directory's safetensors (one file or an index of
    shards) by name, a model prefix (``model.``, ``transformer.``) dropped; each read, as
    float32, only when its getter is called."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.where: dict[str, tuple[SafeTensorsFile, str, tuple[int, int]]] = {}
        for shard, path in enumerate(_weight_files(directory)):
            st = SafeTensorsFile(path)
            for pos, key in enumerate(st.keys()):
                if st.dtype(key) in _FLOATS:
                    name = key.removeprefix("model.").removeprefix("transformer.")
                    self.where[name] = (st, key, (shard, pos))
        self.used: set[str] = set()

    def getter(self, name: str, transform: Callable[[np.ndarray], np.ndarray] | None = None
               ) -> Getter:
        """A callable reading tensor ``name`` (then ``transform``); CheckpointError now when
        the checkpoint lacks it."""
        if name not in self.where:
            raise CheckpointError(f"{self.directory}: tensor {name!r} is missing from its "
                                  "safetensors weights")
        self.used.add(name)
        st, key, order = self.where[name]
        return Getter(st, key, order, transform)

    def check_all_used(self, tied: bool) -> None:
        """Every weight maps to a GGUF tensor: one that would be dropped silently is refused
        (llama.cpp's "Can not map tensor")."""
        left = sorted(n for n in self.where if n not in self.used
                      and not n.endswith(_IGNORED) and not (tied and n == "lm_head.weight"))
        if left:
            raise CheckpointError(f"{self.directory}: tensors {left[:5]} ({len(left)} in all) map "
                                  "to no GGUF tensor of this model type")


def _weight_files(d: Path) -> list[Path]:
    """model.safetensors, or the shards model.safetensors.index.json names (inside ``d``)."""
    index = d / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{index}: field 'weight_map' must map tensor names to files")
        files = [(d / str(f)).resolve() for f in sorted({str(f) for f in weight_map.values()})]
        for f in files:
            if f.parent != d.resolve():
                raise CheckpointError(f"{index}: shard {f.name!r} is outside the model directory")
        return files
    if (d / "model.safetensors").is_file():
        return [d / "model.safetensors"]
    raise CheckpointError(f"{d}: no model.safetensors or model.safetensors.index.json (a "
                          "pickled pytorch_model.bin is not read: unpickling can run code)")


def _llama_tensors(spec: DecoderSpec, w: WeightFiles, permute: bool) -> dict[str, Getter]:
    """The llama / qwen2 GGUF tensors; q/k rows permuted for llama."""
    def rope_rows(heads: int) -> Callable[[np.ndarray], np.ndarray] | None:
        return (lambda a: permute_rope_rows(a, heads)) if permute else None

    t = {"token_embd.weight": w.getter("embed_tokens.weight")}
    for i in range(spec.layers):
        a, b = f"layers.{i}.", f"blk.{i}."
        t[b + "attn_norm.weight"] = w.getter(a + "input_layernorm.weight")
        for part, heads in (("q", spec.heads), ("k", spec.kv_heads), ("v", None)):
            rows = rope_rows(heads) if heads else None
            t[f"{b}attn_{part}.weight"] = w.getter(f"{a}self_attn.{part}_proj.weight", rows)
            if spec.qkv_bias:
                t[f"{b}attn_{part}.bias"] = w.getter(f"{a}self_attn.{part}_proj.bias", rows)
        t[b + "attn_output.weight"] = w.getter(a + "self_attn.o_proj.weight")
        t[b + "ffn_norm.weight"] = w.getter(a + "post_attention_layernorm.weight")
        for mine, theirs in (("gate", "gate_proj"), ("up", "up_proj"), ("down", "down_proj")):
            t[f"{b}ffn_{mine}.weight"] = w.getter(f"{a}mlp.{theirs}.weight")
    t["output_norm.weight"] = w.getter("norm.weight")
    if not spec.tied:
        t["output.weight"] = w.getter("lm_head.weight")
    return t


def _transposed(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.T)


def _gpt2_tensors(spec: DecoderSpec, w: WeightFiles) -> dict[str, Getter]:
    """The gpt2 GGUF tensors: Conv1D (in, out) weights transposed, output = token_embd."""
    t = {"token_embd.weight": w.getter("wte.weight"), "position_embd.weight": w.getter("wpe.weight"),
         "output.weight": w.getter("wte.weight")}
    for i in range(spec.layers):
        a, b = f"h.{i}.", f"blk.{i}."
        for mine, theirs, conv in (("attn_norm", "ln_1", False), ("attn_qkv", "attn.c_attn", True),
                                   ("attn_output", "attn.c_proj", True), ("ffn_norm", "ln_2", False),
                                   ("ffn_up", "mlp.c_fc", True), ("ffn_down", "mlp.c_proj", True)):
            t[f"{b}{mine}.weight"] = w.getter(f"{a}{theirs}.weight", _transposed if conv else None)
            t[f"{b}{mine}.bias"] = w.getter(f"{a}{theirs}.bias")
    t["output_norm.weight"] = w.getter("ln_f.weight")
    t["output_norm.bias"] = w.getter("ln_f.bias")
    return t
