"""GPT-2 GGUFs (llama.cpp's ``gpt2`` layout, as ``qorus convert`` writes it from a Hugging Face
directory) as the GPT-2 form of ``llm.GPT``: learned positions, LayerNorm with biases, tanh-GELU
MLP, biases everywhere; weights used where they lie, the fused ``attn_qkv`` split into q, k and
v by row ranges (no copy). ``output.weight`` is the head (llama.cpp writes the tied table
again); without it the head is tied to ``token_embd``.

Tensors per block ``blk.N.``: attn_norm (weight, bias), attn_qkv (weight [3d, d], bias),
attn_output, ffn_norm, ffn_up [F, d], ffn_down [d, F], each with a bias; then output_norm
(weight, bias), token_embd [V, d], position_embd [P, d].
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from qorus_core import Model, Spec, check_alloc, param_shapes
from qorus_core.errors import ConfigError, GGUFError
from qorus_core.io.gguf import GGUFFile
from qorus_core.validate import integer

from .gguf_metadata import MetadataReader
from .gpt import GPT
from .llama import DEFAULT_CONTEXT, LoadedLLM, _external, loaded_llm
from .tokenizer import Tokenizer

# our parameter (per block: "blocks.{i}." prefix) -> (GGUF tensor, row block of a fused one)
_BLOCK = {"norm1.weight": ("attn_norm.weight", None), "norm1.bias": ("attn_norm.bias", None),
          "attn.wq": ("attn_qkv.weight", 0), "attn.wk": ("attn_qkv.weight", 1),
          "attn.wv": ("attn_qkv.weight", 2), "attn.bq": ("attn_qkv.bias", 0),
          "attn.bk": ("attn_qkv.bias", 1), "attn.bv": ("attn_qkv.bias", 2),
          "attn.wo": ("attn_output.weight", None), "attn.bo": ("attn_output.bias", None),
          "norm2.weight": ("ffn_norm.weight", None), "norm2.bias": ("ffn_norm.bias", None),
          "ffn.fc.weight": ("ffn_up.weight", None), "ffn.fc.bias": ("ffn_up.bias", None),
          "ffn.proj.weight": ("ffn_down.weight", None), "ffn.proj.bias": ("ffn_down.bias", None)}
_TOP = {"embed.weight": "token_embd.weight", "pos.weight": "position_embd.weight",
        "norm.weight": "output_norm.weight", "norm.bias": "output_norm.bias",
        "head.weight": "output.weight"}


@dataclass
class GPT2HParams:
    """What a gpt2 GGUF's metadata says about the network."""

    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int
    eps: float
    context_length: int
    tied: bool
    arch: str = "gpt2"

    @classmethod
    def from_gguf(cls, f: GGUFFile) -> GPT2HParams:
        """The hyperparameters a gpt2 GGUF's metadata gives, each checked (the key named when wrong)."""
        md = MetadataReader(f, GGUFError)
        k = "gpt2."
        d, heads = md.integer(k + "embedding_length"), md.integer(k + "attention.head_count")
        if d % heads:
            raise md.fail(k + "attention.head_count", f"{heads} heads do not divide "
                          f"{k}embedding_length {d}")
        tokens = f.metadata.get("tokenizer.ggml.tokens")
        if not isinstance(tokens, list) or not tokens:
            raise GGUFError(f"{f.path}: metadata tokenizer.ggml.tokens is missing")
        hp = cls(len(tokens), d, md.integer(k + "block_count"), heads,
                 md.integer(k + "feed_forward_length"),
                 md.real(k + "attention.layer_norm_epsilon", 1e-5, hi=1.0),
                 md.integer(k + "context_length", DEFAULT_CONTEXT),
                 "output.weight" not in f.tensors)
        hp.check_tensors(f)
        return hp

    def tensor_shapes(self) -> Iterator[tuple[str, tuple[int, ...]]]:
        """(GGUF tensor, its NumPy shape), block after block (a generator: block_count may lie)."""
        D, F, V = self.d_model, self.d_ff, self.vocab_size
        yield "token_embd.weight", (V, D)
        yield "position_embd.weight", (self.context_length, D)
        yield "output_norm.weight", (D,)
        yield "output_norm.bias", (D,)
        if not self.tied:
            yield "output.weight", (V, D)
        block = {"attn_norm.weight": (D,), "attn_norm.bias": (D,), "attn_qkv.weight": (3 * D, D),
                 "attn_qkv.bias": (3 * D,), "attn_output.weight": (D, D), "attn_output.bias": (D,),
                 "ffn_norm.weight": (D,), "ffn_norm.bias": (D,), "ffn_up.weight": (F, D),
                 "ffn_up.bias": (F,), "ffn_down.weight": (D, F), "ffn_down.bias": (D,)}
        for i in range(self.n_layers):
            for name, shape in block.items():
                yield f"blk.{i}.{name}", shape

    def check_tensors(self, f: GGUFFile) -> None:
        """GGUFError naming the first tensor that is missing or not of the shape the metadata
        implies."""
        for name, shape in self.tensor_shapes():
            if name not in f.tensors:
                raise GGUFError(f"{f.path}: tensor {name!r} is missing (metadata gpt2.block_count "
                                f"promises {self.n_layers} blocks)")
            if f.tensors[name].shape != shape:
                raise GGUFError(f"{f.path}: tensor {name!r} has shape {f.tensors[name].shape}, "
                                f"the metadata implies {shape}")

    def network(self, context: int) -> GPT:
        """The GPT-2 layout of ``llm.GPT`` (learned positions, LayerNorm, tanh-GELU, biases) with
        ``context`` positions."""
        return GPT(self.vocab_size, self.d_model, self.n_layers, self.n_heads, max_len=context,
                   d_ff=self.d_ff, positional="learned", norm="layernorm", ffn="gelu_tanh",
                   tie_embeddings=self.tied, eps=self.eps, bias=True)


def load_gpt2(path: str | os.PathLike, context: int | None = None, kernels: Any = None,
              dequantize: bool = False) -> LoadedLLM:
    """Map a gpt2 GGUF and build its model and tokenizer (no weight copied; ``dequantize``:
    float32 copies). ``context``: KV-cache positions, at most the position table's."""
    t0 = time.perf_counter()
    f = GGUFFile(path)
    try:
        hp = GPT2HParams.from_gguf(f)
        ctx = min(hp.context_length, DEFAULT_CONTEXT) if context is None else integer(
            context, "context", "load_gpt2", want="an integer")
        if not 0 < ctx <= hp.context_length:
            raise ConfigError(f"{f.path}: context {ctx}: GPT-2 has {hp.context_length} learned "
                              "positions (metadata gpt2.context_length)")
        check_alloc(2 * hp.n_layers * ctx * hp.d_model * 4, f"{f.path}: the KV cache of {ctx} "
                    "positions", "; choose a smaller context (--ctx)")
        tok = Tokenizer.from_gguf(f)
        net = hp.network(ctx)
        shapes = param_shapes(net, Spec((1, 1), "i32"))
        D = hp.d_model
        weights = {}
        for i in range(hp.n_layers):
            for ours, (theirs, part) in _BLOCK.items():
                rows = None if part is None else (part * D, (part + 1) * D)
                weights[f"blocks.{i}.{ours}"] = _external(
                    f, f"blk.{i}.{theirs}", shapes[f"blocks.{i}.{ours}"], dequantize, kernels, rows)
        for ours, theirs in _TOP.items():
            if ours == "head.weight" and hp.tied:
                continue
            rows = (0, ctx) if ours == "pos.weight" else None
            weights[ours] = _external(f, theirs, shapes[ours], dequantize, kernels, rows)
        model = Model(net, (ctx,), input_dtype="i32", kernels=kernels, external_params=weights,
                      weight_files=(f,))
    except BaseException:
        f.close()
        raise
    return loaded_llm(model, tok, f, hp, ctx, t0, weights)
