"""An independent llama forward pass in PyTorch, from a GGUF file's tensors as the `gguf`
package reads and dequantizes them (test oracle only; nothing here is Qorus).

``ggml_activations=True`` also rounds each matmul input to 8-bit blocks of 32 the way ggml
does before multiplying a quantized weight, so the result follows llama.cpp's arithmetic,
not just its weights."""

from __future__ import annotations

import numpy as np


def _load(path: str):
    import gguf
    import torch

    r = gguf.GGUFReader(path)
    out, types = {}, {}
    for t in r.tensors:
        a = gguf.dequantize(t.data, t.tensor_type)
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        out[t.name] = torch.from_numpy(np.array(a, dtype=np.float32).reshape(shape))
        types[t.name] = t.tensor_type.name
    meta = {}
    for k, f in r.fields.items():
        if k.startswith("llama."):
            meta[k] = f.contents()
    return out, types, meta


def _fp16(x):
    return x.half().float()


def _q8_rows(x, f32_scale: bool = False):
    """x [M, K] -> (q [M, K/32, 32] integers, d [M, K/32, 1]): ggml's 8-bit blocks, the scale
    amax/127 rounded to fp16 as stored (q8_1's fp16 block sum is not modelled); with
    ``f32_scale`` kept in float32, as Qorus's activation blocks keep it."""
    import torch

    M, K = x.shape
    b = x.reshape(M, K // 32, 32)
    amax = b.abs().amax(-1, keepdim=True)
    d = amax / 127
    inv = torch.where(d > 0, 1.0 / d, torch.zeros_like(d))
    q = torch.sign(b * inv) * torch.floor((b * inv).abs() + 0.5)     # roundf: ties away from 0
    return q, (d if f32_scale else _fp16(d))


def _matmul(x, w, wtype: str, ggml_activations, q8_types=None):
    """x @ w^T; with ``ggml_activations`` a quantized weight (of a type in ``q8_types``, if
    given) multiplies x's q8 reconstruction (``"f32"``: its scales kept in float32)."""
    if not ggml_activations or wtype in ("F32", "F16", "BF16"):
        return x @ w.T
    if q8_types is not None and wtype not in q8_types:
        return x @ w.T
    q, d = _q8_rows(x, ggml_activations == "f32")
    return (q * d).reshape(x.shape) @ w.T


def llama_logits(path: str, ids: list[int], ggml_activations: bool | str = False,
                 q8_types=None) -> np.ndarray:
    """Logits [T, V] of token ids under the llama model in ``path`` (full causal pass);
    ``ggml_activations``: True or "f32" (see ``_matmul``), for the weights of the GGUF types
    in ``q8_types`` ("Q8_0", ...) alone if given (a prompt's 8-bit products), else all."""
    import torch

    W, types, meta = _load(path)
    n_layers = int(meta["llama.block_count"])
    H = int(meta["llama.attention.head_count"])
    Hkv = int(meta["llama.attention.head_count_kv"])
    eps = float(meta["llama.attention.layer_norm_rms_epsilon"])
    theta = float(meta.get("llama.rope.freq_base", 10000.0))
    emb = W["token_embd.weight"]
    out_w = W.get("output.weight", emb)
    out_t = types.get("output.weight", types["token_embd.weight"])
    d = emb.shape[1]
    D = d // H
    T = len(ids)
    x = emb[torch.tensor(ids)].clone()

    def norm(h, w):
        return h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps) * w

    pos = torch.arange(T, dtype=torch.float64)[:, None]
    freq = theta ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
    ang = pos * freq[None]
    cos, sin = torch.cos(ang).float(), torch.sin(ang).float()

    def rope(t):                               # adjacent pairs (2i, 2i+1), t [T, heads, D]
        a, b = t[..., 0::2], t[..., 1::2]
        c, s = cos[:, None], sin[:, None]
        out = torch.empty_like(t)
        out[..., 0::2] = a * c - b * s
        out[..., 1::2] = a * s + b * c
        return out

    def mm(h, name):
        return _matmul(h, W[name], types[name], ggml_activations, q8_types)

    mask = torch.full((T, T), float("-inf")).triu(1)
    for i in range(n_layers):
        p = f"blk.{i}."
        h = norm(x, W[p + "attn_norm.weight"])
        q = rope(mm(h, p + "attn_q.weight").reshape(T, H, D))
        k = rope(mm(h, p + "attn_k.weight").reshape(T, Hkv, D))
        v = mm(h, p + "attn_v.weight").reshape(T, Hkv, D)
        k = k.repeat_interleave(H // Hkv, dim=1)
        v = v.repeat_interleave(H // Hkv, dim=1)
        s = torch.einsum("thd,shd->hts", q, k) / D ** 0.5 + mask
        a = torch.einsum("hts,shd->thd", torch.softmax(s, -1), v).reshape(T, H * D)
        x = x + mm(a, p + "attn_output.weight")
        h = norm(x, W[p + "ffn_norm.weight"])
        g = torch.nn.functional.silu(mm(h, p + "ffn_gate.weight")) * mm(h, p + "ffn_up.weight")
        x = x + mm(g, p + "ffn_down.weight")
    h = norm(x, W["output_norm.weight"])
    logits = _matmul(h, out_w, out_t, ggml_activations, q8_types)
    return logits.numpy()
