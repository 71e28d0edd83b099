"""Llama-family GGUF models (``llama``, ``qwen2``, ``phi3``) as an ``llm.GPT`` over weights used
where they lie.

``load_llama(path)`` maps the file, reads the hyperparameters from its metadata (grouped-query
heads, RoPE base, RMSNorm epsilon, tied output when there is no ``output.weight``), builds
``llm.GPT(positional="rope", norm="rmsnorm", ffn="swiglu")`` and hands every tensor to the
model as an external parameter: F32 tensors as read-only views of the map, Q4_0/Q4_1/Q8_0/F16
as ``QWeight``s over it. Nothing is copied or dequantized; the file stays open while the model
lives. The architectures differ only in llama.cpp's layout of that network (``ARCHS``):

- ``llama``: llama.cpp's converter permutes q/k rows for adjacent-pair RoPE (DESIGN.md), our
  default.
- ``qwen2``: q/k/v biases (``blk.N.attn_q.bias`` ...), none on the output (the GPT's ``bo`` is
  zero); q/k rows as trained, for NEOX RoPE (pairs (i, i + D/2): ``llm.GPT(rope_half_split=True)``).
- ``phi3``: NEOX RoPE, q/k/v fused in ``blk.N.attn_qkv.weight`` [(H + 2 Hkv) D, d] and gate
  then up in ``blk.N.ffn_up.weight`` [2F, d]. Each part is a row range of the fused tensor,
  and rows are contiguous, so the parts are views of the map (a ``QWeight`` over a slice of
  its bytes, or a float32 row slice), never copies. RoPE scaling (longrope/su factor tensors
  ``rope_factors_long/short``, a scaling type or factor) is refused, for qwen2 too, and a
  sliding window (``phi3.attention.sliding_window``, 0: none) shorter than the context asked
  for is refused rather than attended past (the default context stops at the window).

A hostile or broken file is refused before anything is built, with a ``GGUFError`` naming
the file and the key: every hyperparameter must have an integer (or, for RoPE base and
epsilon, a finite positive number) type and a range that makes sense together (heads dividing
the width, KV heads dividing the heads); every tensor the metadata promises must be present
with the shape it implies (so ``block_count`` 2**32 - 1 fails at the first missing block);
the norm gains and biases (a few KB) must be finite. The big matrices are not scanned for NaN,
which would read the whole file at load: a non-finite weight there yields non-finite logits,
which the sampler refuses. A context whose KV cache cannot fit in memory is a ``ConfigError``
naming the bytes, before any allocation. The model checks the file before each forward (its
``weight_files``; one ``fstat``), so a file overwritten in place while in use raises a
``GGUFError`` naming it (``qorus_core.io.mapped``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qorus_core import Model, QWeight, Spec, Tensor, check_alloc, param_shapes, to_float32
from qorus_core.errors import ConfigError, GGUFError
from qorus_core.io.gguf import GGUFFile
from qorus_core.kernels import get_kernels
from qorus_core.validate import integer

from .gguf_metadata import MetadataReader
from .gpt import GPT
from .tokenizer import Tokenizer

DEFAULT_CONTEXT = 2048


@dataclass(frozen=True)
class Arch:
    """What sets one GGUF architecture apart in llama.cpp's layout of the same network."""

    qkv_bias: bool = False    # blk.N.attn_{q,k,v}.bias; the GPT's output bias is then zero
    fused: bool = False       # blk.N.attn_qkv.weight [q; k; v], ffn_up.weight [gate; up]
    neox: bool = False        # q/k rows unpermuted: RoPE rotates pairs (i, i + D/2)
    plain_rope: bool = False  # RoPE scaling refused (llama's files are not checked for it)
    window: bool = False      # {arch}.attention.sliding_window bounds the context


ARCHS: dict[str, Arch] = {
    "llama": Arch(),
    "qwen2": Arch(qkv_bias=True, neox=True, plain_rope=True),
    "phi3": Arch(fused=True, neox=True, plain_rope=True, window=True),
}
ARCHITECTURES = tuple(ARCHS)

# our parameter name (per block: "blocks.{i}." prefix) -> GGUF tensor name
_BLOCK = {"norm1.weight": "attn_norm.weight", "attn.wq": "attn_q.weight", "attn.wk": "attn_k.weight",
          "attn.wv": "attn_v.weight", "attn.wo": "attn_output.weight", "norm2.weight": "ffn_norm.weight",
          "ffn.w_gate": "ffn_gate.weight", "ffn.w_up": "ffn_up.weight", "ffn.w_down": "ffn_down.weight"}
_TOP = {"embed.weight": "token_embd.weight", "norm.weight": "output_norm.weight",
        "head.weight": "output.weight"}
_BIASES = {"attn.bq": "attn_q.bias", "attn.bk": "attn_k.bias", "attn.bv": "attn_v.bias"}
# tensors of RoPE frequency factors (Phi-3's longrope/su, llama3's rope_freqs): scaled RoPE
_ROPE_FACTORS = ("rope_factors_long.weight", "rope_factors_short.weight", "rope_freqs.weight")

Rows = tuple[int, int]


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
    arch: str = "llama"
    sliding_window: int = 0     # 0: full causal attention

    @classmethod
    def from_gguf(cls, f: GGUFFile) -> LlamaHParams:
        """The hyperparameters, each of the right type and in range, consistent with each
        other and with the tensors the file holds (checked before anything is built)."""
        arch = f.architecture
        if arch not in ARCHS:
            raise ConfigError(f"{f.path}: architecture {arch!r} is not supported (supported: "
                              f"{', '.join(ARCHITECTURES)})")
        md = MetadataReader(f, GGUFError)
        integer, real = md.integer, md.real
        k = f"{arch}."
        n_heads = integer(k + "attention.head_count")
        d_model = integer(k + "embedding_length")
        n_kv = integer(k + "attention.head_count_kv", n_heads)
        if d_model % n_heads:
            raise md.fail(k + "attention.head_count", f"{n_heads} heads do not divide "
                       f"{k}embedding_length {d_model}")
        if n_kv > n_heads or n_heads % n_kv:
            raise md.fail(k + "attention.head_count_kv", f"{n_kv} KV heads do not divide "
                       f"{k}attention.head_count {n_heads}")
        hp = cls(vocab_size=_vocab_size(f, md, k), d_model=d_model,
                 n_layers=integer(k + "block_count"),
                 n_heads=n_heads, n_kv_heads=n_kv, d_ff=integer(k + "feed_forward_length"),
                 rope_theta=real(k + "rope.freq_base", 10000.0),
                 eps=real(k + "attention.layer_norm_rms_epsilon", 1e-5, hi=1.0),
                 context_length=integer(k + "context_length", DEFAULT_CONTEXT),
                 tied="output.weight" not in f.tensors, arch=arch,
                 sliding_window=(integer(k + "attention.sliding_window", 0, lo=0)
                                 if ARCHS[arch].window else 0))
        rope_dims = integer(k + "rope.dimension_count", d_model // n_heads)
        if rope_dims != d_model // n_heads:
            raise ConfigError(f"{f.path}: partial RoPE ({rope_dims} of {d_model // n_heads} head "
                              "dimensions) is not supported")
        if ARCHS[arch].plain_rope:
            _refuse_rope_scaling(f, md, k)
        hp.check_tensors(f)
        return hp

    @property
    def head_dim(self) -> int:
        """``d_model // n_heads``."""
        return self.d_model // self.n_heads

    def tensor_shapes(self) -> Iterator[tuple[str, tuple[int, ...]]]:
        """(GGUF tensor name, the NumPy shape these hyperparameters imply), block after block
        (a generator: ``block_count`` can say 2**32 - 1)."""
        D, V = self.d_model, self.vocab_size
        yield "token_embd.weight", (V, D)
        yield "output_norm.weight", (D,)
        if not self.tied:
            yield "output.weight", (V, D)
        block = self._block_shapes()
        for i in range(self.n_layers):
            for name, shape in block.items():
                yield f"blk.{i}.{name}", shape

    def _block_shapes(self) -> dict[str, tuple[int, ...]]:
        """One block's tensors (llama.cpp's names without ``blk.N.``) and NumPy shapes."""
        D, F = self.d_model, self.d_ff
        q, kv = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        spec = ARCHS[self.arch]
        if spec.fused:
            attn: dict[str, tuple[int, ...]] = {"attn_qkv.weight": (q + 2 * kv, D)}
            ffn: dict[str, tuple[int, ...]] = {"ffn_up.weight": (2 * F, D)}
        else:
            attn = {"attn_q.weight": (q, D), "attn_k.weight": (kv, D), "attn_v.weight": (kv, D)}
            ffn = {"ffn_gate.weight": (F, D), "ffn_up.weight": (F, D)}
        if spec.qkv_bias:
            attn.update({"attn_q.bias": (q,), "attn_k.bias": (kv,), "attn_v.bias": (kv,)})
        return {"attn_norm.weight": (D,), "ffn_norm.weight": (D,), **attn,
                "attn_output.weight": (D, q), **ffn, "ffn_down.weight": (D, F)}

    def weight_sources(self) -> Iterator[tuple[str, str, Rows | None]]:
        """(our parameter, the GGUF tensor holding it, its rows there or None: all of it).
        phi3's fused tensors give row ranges: q, k, v of ``attn_qkv``, gate then up of
        ``ffn_up`` (llama.cpp's ``ggml_swiglu`` gates with the first half)."""
        spec = ARCHS[self.arch]
        q, kv, F = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim, self.d_ff
        fused = {"attn.wq": ("attn_qkv.weight", (0, q)), "attn.wk": ("attn_qkv.weight", (q, q + kv)),
                 "attn.wv": ("attn_qkv.weight", (q + kv, q + 2 * kv)),
                 "ffn.w_gate": ("ffn_up.weight", (0, F)), "ffn.w_up": ("ffn_up.weight", (F, 2 * F))}
        block: dict[str, tuple[str, Rows | None]] = {ours: (theirs, None) for ours, theirs in _BLOCK.items()}
        if spec.fused:
            block.update(fused)
        if spec.qkv_bias:
            block.update({ours: (theirs, None) for ours, theirs in _BIASES.items()})
        for i in range(self.n_layers):
            for ours, (theirs, rows) in block.items():
                yield f"blocks.{i}.{ours}", f"blk.{i}.{theirs}", rows
        for ours, theirs in _TOP.items():
            if not (self.tied and ours == "head.weight"):
                yield ours, theirs, None

    def check_tensors(self, f: GGUFFile) -> None:
        """Every tensor the metadata promises is present with the implied shape; checked in
        order, so a file whose ``block_count`` says 20,000 (or 2**32 - 1) fails at once, at
        the first block it lacks."""
        check_tensor_shapes(f, self.tensor_shapes(), self.arch, self.n_layers,
                            f"vocab {self.vocab_size}, embedding_length {self.d_model}, "
                            f"head_count {self.n_heads}, head_count_kv {self.n_kv_heads}, "
                            f"feed_forward_length {self.d_ff}")

    def kv_cache_bytes(self, context: int) -> int:
        """Bytes of the float32 KV cache of ``context`` positions (keys and values, every layer)."""
        return 2 * self.n_layers * context * self.n_kv_heads * self.head_dim * 4

    def default_context(self) -> int:
        """The model's context, at most ``DEFAULT_CONTEXT`` and the sliding window."""
        return min(self.context_length, DEFAULT_CONTEXT, self.sliding_window or DEFAULT_CONTEXT)

    def network(self, context: int) -> GPT:
        """The ``llm.GPT`` these hyperparameters describe (RoPE, RMSNorm, SwiGLU, grouped-query
        attention, the architecture's biases and RoPE order), with ``context`` positions."""
        spec = ARCHS[self.arch]
        return GPT(self.vocab_size, self.d_model, self.n_layers, self.n_heads, max_len=context,
                   d_ff=self.d_ff, n_kv_heads=self.n_kv_heads, positional="rope", norm="rmsnorm",
                   ffn="swiglu", tie_embeddings=self.tied, rope_theta=self.rope_theta,
                   eps=self.eps, bias=spec.qkv_bias, rope_half_split=spec.neox)


def _vocab_size(f: GGUFFile, md: MetadataReader, k: str) -> int:
    """``{arch}.vocab_size``, else the token list's length, else the embedding's rows; it must
    agree with the token list."""
    tokens = f.metadata.get("tokenizer.ggml.tokens")
    if k + "vocab_size" in md:
        vocab = md.integer(k + "vocab_size")
    elif isinstance(tokens, list) and tokens:
        vocab = len(tokens)
    elif "token_embd.weight" in f.tensors and len(f.tensors["token_embd.weight"].dims) == 2:
        vocab = f.tensors["token_embd.weight"].dims[1]
    else:
        raise GGUFError(f"{f.path}: no vocabulary size: neither {k}vocab_size, "
                        "tokenizer.ggml.tokens nor a 2-D token_embd.weight")
    if isinstance(tokens, list) and len(tokens) != vocab:
        raise GGUFError(f"{f.path}: metadata tokenizer.ggml.tokens holds {len(tokens)} tokens "
                        f"but the vocabulary has {vocab} ({k}vocab_size)")
    return vocab


def _refuse_rope_scaling(f: GGUFFile, md: MetadataReader, k: str) -> None:
    """Refuse scaled RoPE (frequency-factor tensors, a scaling type, a factor other than 1):
    it is not modelled, and rotating without it would give other logits at every position."""
    for name in _ROPE_FACTORS:
        if name in f.tensors:
            raise ConfigError(f"{f.path}: tensor {name!r}: scaled RoPE (longrope/su frequency "
                              "factors) is not supported")
    kind = md.string(k + "rope.scaling.type", "none")
    if kind != "none":
        raise ConfigError(f"{f.path}: metadata {k}rope.scaling.type {kind!r}: scaled RoPE is "
                          "not supported")
    for key in (k + "rope.scaling.factor", k + "rope.scaling.attn_factor"):
        if key in md and md.real(key, 1.0) != 1.0:
            raise ConfigError(f"{f.path}: metadata {key} {md.real(key, 1.0)}: scaled RoPE is "
                              "not supported")


def check_tensor_shapes(f: GGUFFile, shapes: Iterator[tuple[str, tuple[int, ...]]], arch: str,
                        n_layers: int, sizes: str) -> None:
    """Every (tensor, shape) of ``shapes`` (a generator, block after block) is in the file with
    that shape, checked in order, so a ``block_count`` of 2**32 - 1 fails at the first block
    the file lacks; a GGUFError names the file, the tensor and the ``sizes`` implying it."""
    for name, shape in shapes:
        if name not in f.tensors:
            promise = (f" (metadata {arch}.block_count promises {n_layers} blocks)"
                       if name.startswith("blk.") else "")
            raise GGUFError(f"{f.path}: tensor {name!r} is missing{promise}")
        got = f.tensors[name].shape
        if got != shape:
            raise GGUFError(f"{f.path}: tensor {name!r} has shape {got}, the metadata implies "
                            f"{shape} ({sizes})")


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

    def check_unchanged(self) -> None:
        """Raise ``GGUFError`` if the mapped file was truncated or rewritten since the load
        (one ``fstat``; the model's plans and generators do it before each forward, where a
        copy over the file in use would otherwise give wrong results or SIGBUS)."""
        self.gguf.check_unchanged()


def _rows(w: QWeight | np.ndarray, rows: Rows) -> QWeight | np.ndarray:
    """Rows [r0, r1) of a weight, without a copy: a ``QWeight`` over that slice of its bytes
    (rows are contiguous), or a row view of an array."""
    r0, r1 = rows
    if isinstance(w, QWeight):
        return QWeight(w.a[r0 * w.row_bytes:r1 * w.row_bytes], w.qtype, r1 - r0, w.k)
    return w[r0:r1]


def _external(f: GGUFFile, gguf_name: str, shape: tuple[int, ...], dequantize: bool = False,
              kernels: Any = None, rows: Rows | None = None) -> Tensor | QWeight:
    """The tensor named ``gguf_name`` (its ``rows`` only, when given) as a weight of NumPy
    ``shape``, used in place (or, with ``dequantize``, copied to float32)."""
    if gguf_name not in f.tensors:
        raise GGUFError(f"{f.path}: tensor {gguf_name!r} is missing")
    half = {"F16": "f16", "BF16": "bf16"}.get(f.tensors[gguf_name].type_name)
    if half and len(shape) == 2:                 # a 16-bit matrix: used in place
        dims = f.tensors[gguf_name].dims
        w = QWeight(f.raw(gguf_name), half, math.prod(dims[1:]), dims[0])
    else:
        w = f.tensor(gguf_name)
    if isinstance(w, QWeight) and len(shape) != 2:
        raise GGUFError(f"{f.path}: tensor {gguf_name!r} is {f.tensors[gguf_name].type_name}, a "
                        f"type this model cannot use for a {len(shape)}-D tensor (F32, F16 or BF16)")
    label = gguf_name
    if rows is not None:
        w, label = _rows(w, rows), f"{gguf_name}[{rows[0]}:{rows[1]}]"
    if isinstance(w, QWeight):
        got = w.shape
    else:
        if w.dtype != np.float32:
            w = w.astype(np.float32)            # F16/BF16 norm vectors: a few KB
        if w.ndim == 1 and not np.isfinite(w).all():   # norm gains, biases: a few KB, read once
            bad = int(np.flatnonzero(~np.isfinite(w))[0])
            raise GGUFError(f"{f.path}: tensor {gguf_name!r} holds a non-finite value "
                            f"({w[bad]} at index {bad})")
        got = w.shape
        w = Tensor(np.ascontiguousarray(w), label)
    if tuple(got) != tuple(shape):
        raise GGUFError(f"{f.path}: tensor {label!r} has shape {tuple(got)}, the model "
                        f"expects {tuple(shape)}")
    if dequantize and isinstance(w, QWeight):
        return Tensor(to_float32(w, get_kernels(kernels)), label)
    return w


def _weights(f: GGUFFile, hp: LlamaHParams, net: GPT, dequantize: bool, kernels: Any
             ) -> dict[str, Tensor | QWeight]:
    """Every parameter of ``net`` from the file (qwen2's absent output bias: zeros)."""
    shapes = param_shapes(net, Spec((1, 1), "i32"))   # from the network's declarations
    weights = {ours: _external(f, theirs, shapes[ours], dequantize, kernels, rows)
               for ours, theirs, rows in hp.weight_sources()}
    if ARCHS[hp.arch].qkv_bias:
        for i in range(hp.n_layers):
            name = f"blocks.{i}.attn.bo"
            weights[name] = Tensor(np.zeros(shapes[name], np.float32), name)
    return weights


def load_llama(path: str | os.PathLike, context: int | None = None, kernels: Any = None,
               dequantize: bool = False) -> LoadedLLM:
    """Map a llama, qwen2 or phi3 GGUF and build its model and tokenizer (no weight copied).
    ``context``: KV-cache positions (default: the model's, at most 2048 and the sliding
    window). ``dequantize``: copy the weights to float32 instead, so matmuls keep float32
    activations (ggml-style quantized products round them to 8 bits): slower, 4-8x the
    memory, reference accuracy."""
    t0 = time.perf_counter()
    f = GGUFFile(path)
    try:
        hp = LlamaHParams.from_gguf(f)
        tok = Tokenizer.from_gguf(f)
        if tok.vocab_size != hp.vocab_size:
            raise GGUFError(f"{f.path}: {tok.vocab_size} tokens but vocab_size {hp.vocab_size}")
        ctx = _check_context(f, hp, hp.default_context() if context is None else context,
                             dequantize)
        net = hp.network(ctx)
        weights = _weights(f, hp, net, dequantize, kernels)
        model = Model(net, (ctx,), input_dtype="i32", kernels=kernels, external_params=weights,
                      weight_files=(f,))   # checked before each forward (F32 tensors stay mapped)
    except BaseException:
        f.close()
        raise
    return loaded_llm(model, tok, f, hp, ctx, t0, weights)


def loaded_llm(model: Model, tok: Tokenizer, f: GGUFFile, hp: Any, ctx: int, t0: float,
               weights: dict[str, Any]) -> LoadedLLM:
    """The ``LoadedLLM`` of a GGUF loader (every architecture's): weight bytes as used, the
    file's name and type, the load time since ``t0`` (``time.perf_counter``)."""
    nbytes = sum(int(w.nbytes) if isinstance(w, QWeight) else int(w.a.nbytes) for w in weights.values())
    info = {"name": f.metadata.get("general.name", ""), "file_type": f.metadata.get("general.file_type")}
    return LoadedLLM(model, tok, f, hp, ctx, (time.perf_counter() - t0) * 1e3, nbytes, info)


def _check_context(f: GGUFFile, hp: LlamaHParams, ctx: Any, dequantize: bool) -> int:
    """``ctx`` as an int; refused if it is not a positive integer, if it reaches past the
    sliding window (not modelled), or if its KV cache (plus float32 weights with
    ``dequantize``) cannot fit in memory, before building anything."""
    ctx = integer(ctx, "context", "load_llama", want="an integer")
    if ctx <= 0:
        raise ConfigError(f"load_llama: context must be positive, got {ctx}")
    if hp.sliding_window and hp.sliding_window < ctx:
        raise ConfigError(f"{f.path}: metadata {hp.arch}.attention.sliding_window "
                          f"{hp.sliding_window} is shorter than the context {ctx}; sliding-window "
                          f"attention is not modelled: load with context <= {hp.sliding_window}")
    need = hp.kv_cache_bytes(ctx)
    what = (f"{f.path}: context {ctx}: the KV cache of {ctx} positions ({hp.n_layers} layers x 2 "
            f"x {hp.n_kv_heads} KV heads x {hp.head_dim} x 4 bytes a position)")
    if dequantize:
        need += sum(math.prod(s) for _, s in hp.tensor_shapes()) * 4
        what += " and the float32 weights"
    check_alloc(need, what, "; choose a smaller context (--ctx)")
    return ctx
