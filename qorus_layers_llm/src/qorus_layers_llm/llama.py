"""Llama-architecture GGUF models as an ``llm.GPT`` over weights used where they lie.

``load_llama(path)`` maps the file, reads the hyperparameters from its metadata (grouped-query
heads, RoPE base, RMSNorm epsilon, tied output when there is no ``output.weight``), builds
``llm.GPT(positional="rope", norm="rmsnorm", ffn="swiglu")`` and hands every tensor to the
model as an external parameter: F32 tensors as read-only views of the map, Q4_0/Q4_1/Q8_0/F16
as ``QWeight``s over it. Nothing is copied or dequantized; the file stays open while the model
lives. GGUF llama files store q/k rows for adjacent-pair RoPE (DESIGN.md), our default.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qorus_core import Model, Tensor
from qorus_core.errors import ConfigError, GGUFError
from qorus_core.io.gguf import GGUFFile
from qorus_core.kernels import get_kernels
from qorus_core.kernels.numpy_quant import QWeight, to_float32

from .gpt import GPT
from .tokenizer import Tokenizer

ARCHITECTURES = ("llama",)
DEFAULT_CONTEXT = 2048

# our parameter name (per block: "blocks.{i}." prefix) -> GGUF tensor name
_BLOCK = {"norm1.weight": "attn_norm.weight", "attn.wq": "attn_q.weight", "attn.wk": "attn_k.weight",
          "attn.wv": "attn_v.weight", "attn.wo": "attn_output.weight", "norm2.weight": "ffn_norm.weight",
          "ffn.w_gate": "ffn_gate.weight", "ffn.w_up": "ffn_up.weight", "ffn.w_down": "ffn_down.weight"}
_TOP = {"embed.weight": "token_embd.weight", "norm.weight": "output_norm.weight",
        "head.weight": "output.weight"}


@dataclass
class LlamaHParams:
    """What the metadata says about the network."""

    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_ff: int
    rope_theta: float
    eps: float
    context_length: int
    tied: bool

    @classmethod
    def from_gguf(cls, f: GGUFFile) -> LlamaHParams:
        arch = f.architecture
        if arch not in ARCHITECTURES:
            raise ConfigError(f"{f.path}: architecture {arch!r} is not supported (supported: "
                              f"{', '.join(ARCHITECTURES)})")
        md = f.metadata

        def need(key: str) -> Any:
            if f"{arch}.{key}" not in md:
                raise GGUFError(f"{f.path}: metadata {arch}.{key} is missing")
            return md[f"{arch}.{key}"]

        n_heads = int(need("attention.head_count"))
        d_model = int(need("embedding_length"))
        vocab = md.get(f"{arch}.vocab_size")
        if vocab is None:
            vocab = len(md.get("tokenizer.ggml.tokens", ())) or f.tensors["token_embd.weight"].dims[-1]
        hp = cls(vocab_size=int(vocab), d_model=d_model, n_layers=int(need("block_count")),
                 n_heads=n_heads, n_kv_heads=int(md.get(f"{arch}.attention.head_count_kv", n_heads)),
                 d_ff=int(need("feed_forward_length")),
                 rope_theta=float(md.get(f"{arch}.rope.freq_base", 10000.0)),
                 eps=float(md.get(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)),
                 context_length=int(md.get(f"{arch}.context_length", DEFAULT_CONTEXT)),
                 tied="output.weight" not in f.tensors)
        rope_dims = md.get(f"{arch}.rope.dimension_count")
        if rope_dims is not None and int(rope_dims) != d_model // n_heads:
            raise ConfigError(f"{f.path}: partial RoPE ({rope_dims} of {d_model // n_heads} head "
                              "dimensions) is not supported")
        return hp

    def network(self, context: int) -> GPT:
        return GPT(self.vocab_size, self.d_model, self.n_layers, self.n_heads, max_len=context,
                   d_ff=self.d_ff, n_kv_heads=self.n_kv_heads, positional="rope", norm="rmsnorm",
                   ffn="swiglu", tie_embeddings=self.tied, rope_theta=self.rope_theta,
                   eps=self.eps, bias=False)


@dataclass
class LoadedLLM:
    """A pretrained model ready to run: the network, its tokenizer and the mapped file."""

    model: Model
    tokenizer: Tokenizer
    gguf: GGUFFile
    hparams: LlamaHParams
    context: int
    load_ms: float
    weight_bytes: int = 0
    info: dict[str, Any] = field(default_factory=dict)


def _external(f: GGUFFile, gguf_name: str, shape: tuple[int, ...], dequantize: bool = False,
              kernels: Any = None) -> Tensor | QWeight:
    """The tensor named ``gguf_name`` as a weight of NumPy ``shape``, used in place (or, with
    ``dequantize``, copied to float32)."""
    if gguf_name not in f.tensors:
        raise GGUFError(f"{f.path}: tensor {gguf_name!r} is missing")
    w = f.tensor(gguf_name)
    if isinstance(w, QWeight):
        got = w.shape
    elif w.dtype == np.float16 and len(shape) == 2:
        w = QWeight(f.raw(gguf_name), "f16", w.shape[0], w.shape[1])
        got = w.shape
    else:
        if w.dtype != np.float32:
            w = w.astype(np.float32)            # F16/BF16 norm vectors: a few KB
        got = w.shape
        w = Tensor(np.ascontiguousarray(w), gguf_name)
    if tuple(got) != tuple(shape):
        raise GGUFError(f"{f.path}: tensor {gguf_name!r} has shape {tuple(got)}, the model "
                        f"expects {tuple(shape)}")
    if dequantize and isinstance(w, QWeight):
        return Tensor(to_float32(w, get_kernels(kernels)), gguf_name)
    return w


def load_llama(path: str | os.PathLike, context: int | None = None, kernels: Any = None,
               dequantize: bool = False) -> LoadedLLM:
    """Map a llama-architecture GGUF and build its model and tokenizer (no weight copied).
    ``context``: KV-cache positions (default: the model's, at most 2048). ``dequantize``:
    copy the weights to float32 instead, so matmuls keep float32 activations (ggml-style
    quantized products round them to 8 bits): slower, 4-8x the memory, reference accuracy."""
    t0 = time.perf_counter()
    f = GGUFFile(path)
    try:
        hp = LlamaHParams.from_gguf(f)
        ctx = min(hp.context_length, DEFAULT_CONTEXT) if context is None else int(context)
        if ctx <= 0:
            raise ConfigError(f"context must be positive, got {context}")
        net = hp.network(ctx)
        shapes = _param_shapes(net, hp)
        names = {f"blocks.{i}.{ours}": f"blk.{i}.{theirs}" for i in range(hp.n_layers)
                 for ours, theirs in _BLOCK.items()}
        names.update({k: v for k, v in _TOP.items() if not (hp.tied and k == "head.weight")})
        weights = {ours: _external(f, theirs, shapes[ours], dequantize, kernels)
                   for ours, theirs in names.items()}
        model = Model(net, (ctx,), input_dtype="i32", kernels=kernels, external_params=weights)
        tok = Tokenizer.from_gguf(f)
    except BaseException:
        f.close()
        raise
    if tok.vocab_size != hp.vocab_size:
        raise GGUFError(f"{f.path}: {tok.vocab_size} tokens but vocab_size {hp.vocab_size}")
    nbytes = sum(int(w.nbytes) if isinstance(w, QWeight) else int(w.a.nbytes) for w in weights.values())
    info = {"name": f.metadata.get("general.name", ""), "file_type": f.metadata.get("general.file_type")}
    return LoadedLLM(model, tok, f, hp, ctx, (time.perf_counter() - t0) * 1e3, nbytes, info)


def _param_shapes(net: GPT, hp: LlamaHParams) -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape, from the network's own declarations (one trace, no memory)."""
    from qorus_core.graph import Graph
    from qorus_core.tensor import Spec

    g = Graph(train=False)
    g.trace(net, Spec((1, 1), "i32"))
    return {p.name: p.shape for p in g.params()}
