"""Gemma 3 GGUF models (``general.architecture`` "gemma3") as an ``llm.Gemma3`` over weights
used where they lie.

``load_gemma3(path)`` maps the file, reads the hyperparameters from its metadata and hands
every tensor to the model as an external parameter, as ``load_llama`` does. llama.cpp's
conventions, which the network follows: the norm gains in the file are Hugging Face's
1 + w (its converter adds 1), so every RMSNorm multiplies by them as stored; q/k rows are
unpermuted (NEOX RoPE); query and key heads are RMS-normed before RoPE; layer i is global
when (i + 1) % 6 == 0 (RoPE base ``rope.freq_base``), the others see the last
``attention.sliding_window`` positions (RoPE base 10000); the attention scale is
1/sqrt(key_length), but 1/sqrt(embedding_length / head_count) for the 27B (62 blocks);
embeddings are scaled by sqrt(embedding_length) in float32; the output head is the
embedding table when ``output.weight`` is absent. The file's chat template is used, else
Gemma's (below); ``<end_of_turn>`` ends a reply; the newline and space runs, user-defined
tokens, are text in a reply.

A broken file is refused before anything is built: a ``GGUFError`` naming the file and the
key (wrong type, out of range, inconsistent) or the tensor (missing, wrong shape, non-finite
norm gain); what Qorus does not model (logit soft-capping, scaled or partial RoPE) is a
``ConfigError`` naming the key; a context whose KV cache cannot fit is a ``ConfigError``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from qorus_core import Model, Spec, check_alloc, param_shapes
from qorus_core.errors import ConfigError, GGUFError
from qorus_core.io.gguf import GGUFFile
from qorus_core.validate import integer

from .gemma_model import Gemma3
from .gguf_metadata import MetadataReader
from .llama import DEFAULT_CONTEXT, LoadedLLM, _external, check_tensor_shapes, loaded_llm
from .tokenizer import Tokenizer
from .window_cache import cache_rows, padded

ARCH = "gemma3"
WINDOW_PATTERN = 6            # llama.cpp's set_swa_pattern(6), Hugging Face's layer_types
ROPE_THETA_LOCAL = 10000.0    # llama.cpp's rope_freq_base_train_swa
END_OF_TURN = "<end_of_turn>"

# Gemma's template for string contents: the system text opens the first user turn
GEMMA_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}")

# our parameter name (per block: "blocks.{i}." prefix) -> GGUF tensor name
_BLOCK = {"norm1.weight": "attn_norm.weight", "attn.wq": "attn_q.weight",
          "attn.wk": "attn_k.weight", "attn.wv": "attn_v.weight", "attn.wo": "attn_output.weight",
          "attn.q_norm": "attn_q_norm.weight", "attn.k_norm": "attn_k_norm.weight",
          "post_attn_norm.weight": "post_attention_norm.weight", "norm2.weight": "ffn_norm.weight",
          "ffn.w_gate": "ffn_gate.weight", "ffn.w_up": "ffn_up.weight",
          "ffn.w_down": "ffn_down.weight", "post_ffn_norm.weight": "post_ffw_norm.weight"}
_TOP = {"embed.weight": "token_embd.weight", "norm.weight": "output_norm.weight",
        "head.weight": "output.weight"}


@dataclass
class Gemma3HParams:
    """What the metadata says about the network."""

    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_ff: int
    rope_theta: float
    eps: float
    context_length: int
    window: int | None            # None: every layer global
    attn_scale: float | None      # None: 1/sqrt(head_dim)
    tied: bool

    @classmethod
    def from_gguf(cls, f: GGUFFile) -> Gemma3HParams:
        """The hyperparameters, each of the right type and in range, consistent with each
        other and with the tensors the file holds (checked before anything is built)."""
        if f.architecture != ARCH:
            raise ConfigError(f"{f.path}: architecture {f.architecture!r} is not {ARCH!r}")
        md = MetadataReader(f, GGUFError)
        k = ARCH + "."
        n_heads = md.integer(k + "attention.head_count")
        d_model = md.integer(k + "embedding_length")
        n_kv = md.integer(k + "attention.head_count_kv", n_heads)
        if n_kv > n_heads or n_heads % n_kv:
            raise md.fail(k + "attention.head_count_kv", f"{n_kv} KV heads do not divide "
                          f"{k}attention.head_count {n_heads}")
        if k + "attention.key_length" not in md and d_model % n_heads:
            raise md.missing(k + "attention.key_length")
        head_dim = md.integer(k + "attention.key_length", d_model // n_heads)
        if head_dim % 2:
            raise md.fail(k + "attention.key_length", f"{head_dim} is odd; RoPE rotates pairs")
        if md.integer(k + "attention.value_length", head_dim) != head_dim:
            raise md.fail(k + "attention.value_length", f"{md.integer(k + 'attention.value_length')}"
                          f" differs from {k}attention.key_length {head_dim}")
        n_layers = md.integer(k + "block_count")
        window = md.integer(k + "attention.sliding_window", 0, lo=0) or None
        _refuse_unmodelled(f, md, k, head_dim)
        hp = cls(vocab_size=_vocab_size(f, md), d_model=d_model, n_layers=n_layers,
                 n_heads=n_heads, n_kv_heads=n_kv, head_dim=head_dim,
                 d_ff=md.integer(k + "feed_forward_length"),
                 rope_theta=md.real(k + "rope.freq_base", 10000.0),
                 eps=md.real(k + "attention.layer_norm_rms_epsilon", 1e-6, hi=1.0),
                 context_length=md.integer(k + "context_length", DEFAULT_CONTEXT),
                 window=window, attn_scale=_attn_scale(n_layers, d_model, n_heads),
                 tied="output.weight" not in f.tensors)
        hp.check_tensors(f)
        return hp

    def is_local(self, i: int) -> bool:
        """Whether block ``i`` attends within the sliding window (five local blocks to one global)."""
        return self.window is not None and (i + 1) % WINDOW_PATTERN != 0

    def tensor_shapes(self) -> Iterator[tuple[str, tuple[int, ...]]]:
        """(GGUF tensor name, the NumPy shape these hyperparameters imply), block after block
        (a generator: ``block_count`` can say 2**32 - 1)."""
        d, V, F, D = self.d_model, self.vocab_size, self.d_ff, self.head_dim
        q, kv = self.n_heads * D, self.n_kv_heads * D
        yield "token_embd.weight", (V, d)
        yield "output_norm.weight", (d,)
        if not self.tied:
            yield "output.weight", (V, d)
        block = {"attn_norm.weight": (d,), "attn_q.weight": (q, d), "attn_k.weight": (kv, d),
                 "attn_v.weight": (kv, d), "attn_output.weight": (d, q),
                 "attn_q_norm.weight": (D,), "attn_k_norm.weight": (D,),
                 "post_attention_norm.weight": (d,), "ffn_norm.weight": (d,),
                 "ffn_gate.weight": (F, d), "ffn_up.weight": (F, d), "ffn_down.weight": (d, F),
                 "post_ffw_norm.weight": (d,)}
        for i in range(self.n_layers):
            for name, shape in block.items():
                yield f"blk.{i}.{name}", shape

    def check_tensors(self, f: GGUFFile) -> None:
        """Every tensor the metadata promises is present with the implied shape, in order (a
        ``block_count`` of 2**32 - 1 fails at the first block the file lacks)."""
        check_tensor_shapes(f, self.tensor_shapes(), ARCH, self.n_layers,
                            f"vocab {self.vocab_size}, embedding_length {self.d_model}, "
                            f"head_count {self.n_heads}, head_count_kv {self.n_kv_heads}, "
                            f"key_length {self.head_dim}, feed_forward_length {self.d_ff}")

    def kv_cache_bytes(self, context: int) -> int:
        """Bytes of one sequence's float32 KV caches of ``context`` positions (a local
        layer's rows are padded and prefixed: ``window_cache``)."""
        row = self.n_kv_heads * 4 * 2
        bound = self.window is not None and self.window < context   # else it never binds
        local = sum(self.is_local(i) for i in range(self.n_layers)) if bound else 0
        total = (self.n_layers - local) * context * self.head_dim * row
        if local:
            total += local * cache_rows(1, self.window, context) * padded(self.head_dim) * row
        return total

    def network(self, context: int) -> Gemma3:
        """The ``llm.Gemma3`` these hyperparameters describe, with a KV cache of ``context``
        positions."""
        return Gemma3(self.vocab_size, self.d_model, self.n_layers, self.n_heads, context,
                      n_kv_heads=self.n_kv_heads, head_dim=self.head_dim, d_ff=self.d_ff,
                      window=self.window, window_pattern=WINDOW_PATTERN,
                      rope_theta=self.rope_theta, rope_theta_local=ROPE_THETA_LOCAL,
                      eps=self.eps, attn_scale=self.attn_scale, tie_embeddings=self.tied)

    def weight_names(self) -> Iterator[tuple[str, str]]:
        """(our parameter, the GGUF tensor holding it)."""
        for i in range(self.n_layers):
            for ours, theirs in _BLOCK.items():
                yield f"blocks.{i}.{ours}", f"blk.{i}.{theirs}"
        for ours, theirs in _TOP.items():
            if not (self.tied and ours == "head.weight"):
                yield ours, theirs


def _vocab_size(f: GGUFFile, md: MetadataReader) -> int:
    """The token list's length (else ``gemma3.vocab_size``, else the embedding's rows)."""
    tokens = f.metadata.get("tokenizer.ggml.tokens")
    embd = f.tensors.get("token_embd.weight")
    if ARCH + ".vocab_size" in md:
        vocab = md.integer(ARCH + ".vocab_size")
    elif isinstance(tokens, list) and tokens:
        vocab = len(tokens)
    elif embd is not None and len(embd.dims) == 2:
        vocab = embd.dims[1]
    else:
        raise GGUFError(f"{f.path}: no vocabulary size: neither {ARCH}.vocab_size, "
                        "tokenizer.ggml.tokens nor a 2-D token_embd.weight")
    if isinstance(tokens, list) and len(tokens) != vocab:
        raise GGUFError(f"{f.path}: metadata tokenizer.ggml.tokens holds {len(tokens)} tokens "
                        f"but the vocabulary has {vocab} ({ARCH}.vocab_size)")
    return vocab


def _refuse_unmodelled(f: GGUFFile, md: MetadataReader, k: str, head_dim: int) -> None:
    """ConfigError for what the network does not compute: logit soft-capping (a fine-tune may
    set ``final_logit_softcapping``; Gemma 3 has none), scaled RoPE (the 4B+ models' linear
    scaling of the global layers), partial RoPE."""
    for key in (k + "final_logit_softcapping", k + "attn_logit_softcapping"):
        v = md.md.get(key)
        if v is None or (isinstance(v, (int, float, np.integer, np.floating))
                         and not isinstance(v, (bool, np.bool_)) and v == 0):
            continue                                        # 0: none (llama.cpp's default)
        raise ConfigError(f"{f.path}: metadata {key} {md.real(key, 1.0)}: logit soft-capping "
                          "is not supported")
    kind = md.string(k + "rope.scaling.type", "none")
    factor = md.real(k + "rope.scaling.factor", 1.0)
    if kind not in ("none", "linear") or factor != 1.0:
        raise ConfigError(f"{f.path}: metadata {k}rope.scaling.type {kind!r}, factor {factor}: "
                          "scaled RoPE is not supported")
    dims = md.integer(k + "rope.dimension_count", head_dim)
    if dims != head_dim:
        raise ConfigError(f"{f.path}: metadata {k}rope.dimension_count {dims}: partial RoPE (of "
                          f"{head_dim} head dimensions) is not supported")


def _attn_scale(n_layers: int, d_model: int, n_heads: int) -> float | None:
    """llama.cpp's rule: the 27B (62 blocks) scales by 1/sqrt(d_model / n_heads)
    (query_pre_attn_scalar 168), the others by 1/sqrt(head_dim) (None)."""
    return 1.0 / math.sqrt(d_model // n_heads) if n_layers == 62 else None


def _chat_tokenizer(f: GGUFFile, vocab: int) -> Tokenizer:
    """The file's tokenizer, with Gemma's chat template when the file has none and
    ``<end_of_turn>`` among the ids that end a reply. (Gemma's newline and space runs are
    user-defined tokens: parsed whole from the text, decoded as text, as every tokenizer
    treats them.)"""
    tok = Tokenizer.from_gguf(f)
    if tok.vocab_size != vocab:
        raise GGUFError(f"{f.path}: {tok.vocab_size} tokens but vocab_size {vocab}")
    if tok.chat_template is None:
        tok.chat_template = GEMMA_TEMPLATE
    eot = tok.vocab.get(END_OF_TURN)
    if eot is not None:
        tok.stop_ids = tok.stop_ids | {eot}
    return tok


def load_gemma3(path: str | os.PathLike, context: int | None = None, kernels: Any = None,
                dequantize: bool = False) -> LoadedLLM:
    """Map a gemma3 GGUF and build its model and tokenizer (no weight copied). ``context``:
    KV-cache positions (default: the model's, at most 2048). ``dequantize``: float32 copies
    of the weights instead (reference accuracy, 4-8x the memory)."""
    t0 = time.perf_counter()
    f = GGUFFile(path)
    try:
        hp = Gemma3HParams.from_gguf(f)
        tok = _chat_tokenizer(f, hp.vocab_size)
        ctx = _check_context(f, hp, min(hp.context_length, DEFAULT_CONTEXT) if context is None
                             else context, dequantize)
        net = hp.network(ctx)
        shapes = param_shapes(net, Spec((1, 1), "i32"))
        weights = {ours: _external(f, theirs, shapes[ours], dequantize, kernels)
                   for ours, theirs in hp.weight_names()}
        model = Model(net, (ctx,), input_dtype="i32", kernels=kernels, external_params=weights,
                      weight_files=(f,))   # checked before each forward
    except BaseException:
        f.close()
        raise
    return loaded_llm(model, tok, f, hp, ctx, t0, weights)


def _check_context(f: GGUFFile, hp: Gemma3HParams, ctx: Any, dequantize: bool) -> int:
    """``ctx`` as a positive int whose KV caches (plus float32 weights with ``dequantize``)
    fit in memory, checked before anything is allocated."""
    ctx = integer(ctx, "context", "load_gemma3", want="an integer")
    if ctx <= 0:
        raise ConfigError(f"load_gemma3: context must be positive, got {ctx}")
    need = hp.kv_cache_bytes(ctx)
    what = f"{f.path}: context {ctx}: the KV caches of {ctx} positions ({hp.n_layers} layers)"
    if dequantize:
        need += sum(math.prod(s) for _, s in hp.tensor_shapes()) * 4
        what += " and the float32 weights"
    check_alloc(need, what, "; choose a smaller context (--ctx)")
    return ctx
