"""A tiny llama-architecture GGUF written by the tests (random weights, a byte-level BPE
vocabulary with a few merges, ChatML control tokens), so the loader, tokenizer and generator
run in every tox env without the SmolLM2 download; and the ``tokenizer.ggml.*`` metadata of
that BPE vocabulary or of a tiny SentencePiece one, for other architectures' test files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qorus_core.io.gguf import write_gguf
from qorus_core.kernels import get_kernels
from qorus_core.kernels.numpy_quant import QWeight
from qorus_core.tensor import Tensor
from qorus_layers_llm.tokenizer import bytes_to_unicode

D, H, HKV, FF, LAYERS = 64, 4, 2, 96, 2
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["Ġ t", "h e", "Ġt he", "i n", "a n", "Ġ a"]
SPM_SPECIALS = ["<unk>", "<s>", "</s>"]
SPM_PIECES = [p.replace(" ", "\u2581") for p in                    # spaces as U+2581
              [" ", " t", "he", " the", "an", " a", "in", " m", " an", " man", " ant"]]


def vocabulary() -> tuple[list[str], list[str], np.ndarray]:
    byte_chars = list(bytes_to_unicode().values())
    merged = [m.replace(" ", "") for m in MERGES]
    tokens = SPECIALS + byte_chars + merged
    types = np.array([3] * len(SPECIALS) + [1] * (len(tokens) - len(SPECIALS)), np.int32)
    return tokens, MERGES, types


def spm_vocabulary() -> tuple[list[str], np.ndarray, np.ndarray]:
    """(tokens, scores, types) of a SentencePiece vocabulary: <unk> <s> </s>, the 256 byte
    tokens <0xXX> (byte fallback), then a few pieces, earlier ones merged first."""
    tokens = SPM_SPECIALS + [f"<0x{b:02X}>" for b in range(256)] + SPM_PIECES
    scores = np.array([0.0] * (len(SPM_SPECIALS) + 256) + [-float(i) for i in range(len(SPM_PIECES))],
                      np.float32)
    types = np.array([2, 3, 3] + [6] * 256 + [1] * len(SPM_PIECES), np.int32)  # unknown, control, byte
    return tokens, scores, types


def tokenizer_metadata(model: str = "gpt2") -> dict:
    """The ``tokenizer.ggml.*`` keys of the BPE vocabulary (``"gpt2"``, ids 1/2 the ChatML
    start/end) or the SentencePiece one (``"llama"``, <s> 1, </s> 2)."""
    if model == "gpt2":
        tokens, merges, types = vocabulary()
        return {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "smollm",
                "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.token_type": types,
                "tokenizer.ggml.merges": merges, "tokenizer.ggml.bos_token_id": np.uint32(1),
                "tokenizer.ggml.eos_token_id": np.uint32(2), "tokenizer.ggml.add_bos_token": False}
    tokens, scores, types = spm_vocabulary()
    return {"tokenizer.ggml.model": "llama", "tokenizer.ggml.pre": "default",
            "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.scores": scores,
            "tokenizer.ggml.token_type": types, "tokenizer.ggml.bos_token_id": np.uint32(1),
            "tokenizer.ggml.eos_token_id": np.uint32(2),
            "tokenizer.ggml.unknown_token_id": np.uint32(0), "tokenizer.ggml.add_bos_token": True}


def _q(a: np.ndarray, qtype: str) -> QWeight:
    out = QWeight.empty(qtype, a.shape[0], a.shape[1])
    get_kernels("numpy").quantize(Tensor(np.ascontiguousarray(a)), out, qtype)
    return out


def write_tiny_llama(path: Path, qtype: str = "q8_0", tied: bool = True, seed: int = 0,
                     arch: str = "llama", drop: str | None = None) -> Path:
    """Write the model; ``qtype`` for the 2-D weights ('f32' keeps them float32); ``drop``
    leaves one tensor out (for the missing-tensor error)."""
    rng = np.random.default_rng(seed)
    V = len(vocabulary()[0])

    def w(n: int, k: int, scale: float = 0.2):
        a = (rng.standard_normal((n, k)) * scale).astype(np.float32)
        return a if qtype == "f32" else _q(a, qtype)

    t: dict = {"token_embd.weight": w(V, D, 1.0),
               "output_norm.weight": (1 + 0.1 * rng.standard_normal(D)).astype(np.float32)}
    if not tied:
        t["output.weight"] = w(V, D)
    Dh = D // H
    for i in range(LAYERS):
        p = f"blk.{i}."
        t[p + "attn_norm.weight"] = (1 + 0.1 * rng.standard_normal(D)).astype(np.float32)
        t[p + "ffn_norm.weight"] = (1 + 0.1 * rng.standard_normal(D)).astype(np.float32)
        t[p + "attn_q.weight"] = w(H * Dh, D)
        t[p + "attn_k.weight"] = w(HKV * Dh, D)
        t[p + "attn_v.weight"] = w(HKV * Dh, D)
        t[p + "attn_output.weight"] = w(D, H * Dh)
        t[p + "ffn_gate.weight"] = w(FF, D)
        t[p + "ffn_up.weight"] = w(FF, D)
        t[p + "ffn_down.weight"] = w(D, FF)
    if drop:
        del t[drop]
    meta = {
        "general.architecture": arch, "general.name": "tiny-llama",
        f"{arch}.block_count": np.uint32(LAYERS), f"{arch}.context_length": np.uint32(256),
        f"{arch}.embedding_length": np.uint32(D), f"{arch}.feed_forward_length": np.uint32(FF),
        f"{arch}.attention.head_count": np.uint32(H), f"{arch}.attention.head_count_kv": np.uint32(HKV),
        f"{arch}.rope.freq_base": np.float32(10000.0),
        f"{arch}.attention.layer_norm_rms_epsilon": np.float32(1e-5),
        f"{arch}.vocab_size": np.uint32(V), f"{arch}.rope.dimension_count": np.uint32(Dh),
        **tokenizer_metadata("gpt2"),
    }
    write_gguf(path, meta, t)
    return path
