"""GemmaAttention: Gemma 3's self-attention. q/k/v projections to heads of their own size
(``head_dim``, not d_model / n_heads), an RMSNorm of every query and key head (q_norm,
k_norm) before the rotation, NEOX RoPE (pairs (i, i + D/2), as Gemma's GGUF files keep q/k
rows unpermuted), grouped-query causal attention with a fixed scale, output projection.

``window`` set: each query sees the last ``window`` positions only (itself included), as
Hugging Face's sliding-window mask and llama.cpp's standard SWA do; its KV cache is
``window_cache``'s. Without a KV cache (training, ``max_len`` None) the window is a band
bias. A ``CausalSelfAttention`` subclass, so ``Generator`` finds its ``max_len`` context.
"""

from __future__ import annotations

import math

from qorus_core import Spec
from qorus_core.errors import ConfigError, ShapeError
from qorus_core.init import ones, torch_linear
from qorus_core.validate import maybe, positive_int, real

from . import window_cache
from .attention import CausalSelfAttention
from .rope import heads_view


class GemmaAttention(CausalSelfAttention):
    """Causal GQA self-attention with per-head q/k RMSNorm, NEOX RoPE, heads of ``head_dim``
    and an optional sliding ``window``. Params: wq (H*D, d), wk and wv (Hkv*D, d), wo
    (d, H*D), q_norm and k_norm (D,) (gains multiplied in, llama.cpp's convention: Hugging
    Face's 1 + w). ``scale`` None: 1/sqrt(head_dim); ``eps`` of the q/k norms."""

    replayable = True   # inference forward: kernel calls only
    rope_half_split, bias, rope = True, False, True   # CausalSelfAttention's, fixed here

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int | None = None,
                 head_dim: int | None = None, rope_theta: float = 10000.0,
                 window: int | None = None, eps: float = 1e-6, scale: float | None = None,
                 max_len: int | None = None) -> None:
        name = "llm.GemmaAttention"
        self.d_model = positive_int(d_model, "d_model", name)
        self.n_heads = H = positive_int(n_heads, "n_heads", name)
        self.n_kv_heads = maybe(positive_int, n_kv_heads, "n_kv_heads", name)
        self.head_dim = maybe(positive_int, head_dim, "head_dim", name)
        if self.head_dim is None and self.d_model % H:
            raise ConfigError(f"{name}: d_model={d_model} does not split into {H} heads; give "
                              "head_dim")
        if self._dh % 2:
            raise ConfigError(f"{name}: the head dimension {self._dh} must be even (RoPE)")
        if H % self._hkv:
            raise ConfigError(f"{name}: n_heads={H} must be a multiple of n_kv_heads={self._hkv}")
        self.rope_theta = real(rope_theta, "rope_theta", name, lo=0.0, lo_open=True)
        self.window = maybe(positive_int, window, "window", name)
        self.eps = real(eps, "eps", name, lo=0.0)
        self.scale = maybe(real, scale, "scale", name, lo=0.0, lo_open=True)
        self.max_len = maybe(positive_int, max_len, "max_len", name)

    @property
    def _dh(self) -> int:
        return self.d_model // self.n_heads if self.head_dim is None else self.head_dim

    @property
    def _scale(self) -> float:
        return 1.0 / math.sqrt(self._dh) if self.scale is None else self.scale

    def build(self, x: Spec, b) -> Spec:
        """As ``CausalSelfAttention``'s, with ``head_dim`` heads, RMSNorm'd queries and keys
        (``q_norm``, ``k_norm``) and an optional sliding window."""
        if len(x.shape) != 3 or x.shape[2] != self.d_model:
            raise ShapeError(f"expects [B, T, {self.d_model}], got {x.shape}")
        B, T, d = x.shape
        H, Hkv, D = self.n_heads, self._hkv, self._dh
        b.param("wq", (H * D, d), torch_linear(d))
        b.param("wk", (Hkv * D, d), torch_linear(d))
        b.param("wv", (Hkv * D, d), torch_linear(d))
        b.param("wo", (d, H * D), torch_linear(H * D))
        b.param("q_norm", (D,), ones())
        b.param("k_norm", (D,), ones())
        b.saved("q_raw", (B, T, H * D))   # projections, before the head norms
        b.saved("k_raw", (B, T, Hkv * D))
        b.saved("qr", (B, T, H * D))      # normed and rotated
        b.saved("kr", (B, T, Hkv * D))
        b.saved("vv", (B, T, Hkv * D))
        b.saved("rstd_q", (B * T * H,))
        b.saved("rstd_k", (B * T * Hkv,))
        b.saved("att", (B, T, H * D))     # attention output (before wo)
        b.saved("lse", (B, H, T))
        if b.train:
            for name, width in (("datt", H * D), ("dq", H * D), ("dk", Hkv * D),
                                ("dv", Hkv * D), ("dq_raw", H * D), ("dk_raw", Hkv * D)):
                b.scratch(name, (B, T, width))
        if self.max_len is not None and not b.train:
            if T > self.max_len:
                raise ShapeError(f"{T} positions do not fit the KV cache of max_len={self.max_len}")
            if self.window is None:
                b.state("k_cache", (B, self.max_len, Hkv, D), persistent=False)  # rotated keys
                b.state("v_cache", (B, self.max_len, Hkv, D), persistent=False)
            else:
                window_cache.declare(b, B, T, H, Hkv, D, self.window, self.max_len)
        elif self.window is not None and T > self.window:
            b.state("band", (T, T), window_cache.band_init(self.window), persistent=False)
        return x

    def forward(self, x, ctx):
        """q, k, v in one call, RMSNorm of q and k per head, RoPE, the KV cache, then attention (banded
        within the window) and the output projection."""
        k = ctx.k
        H, Hkv, D = self.n_heads, self._hkv, self._dh
        k.linears(x, (ctx.wq, ctx.wk, ctx.wv), (ctx.q_raw, ctx.k_raw, ctx.vv))
        k.rmsnorm(self._rows(ctx, ctx.q_raw), ctx.q_norm, self._rows(ctx, ctx.qr), ctx.rstd_q,
                  self.eps)
        k.rmsnorm(self._rows(ctx, ctx.k_raw), ctx.k_norm, self._rows(ctx, ctx.kr), ctx.rstd_k,
                  self.eps)
        cached = self.max_len is not None and not ctx.train
        pos = ctx.run.pos if cached else 0
        q4, k4 = heads_view(ctx, ctx.qr, H), heads_view(ctx, ctx.kr, Hkv)
        k.rope(q4, q4, pos, self.rope_theta, True)
        k.rope(k4, k4, pos, self.rope_theta, True)
        if not cached:
            self._attend_all(ctx)
        else:
            end = pos + q4.shape[1]
            if pos < 0 or end > self.max_len:
                raise ShapeError(f"{ctx.path or 'attention'}: positions {pos}..{end - 1} exceed "
                                 f"the context of max_len={self.max_len}")
            if self.window is None:
                self._attend_cached(ctx, pos, q4, k4)
            else:
                window_cache.attend(ctx, pos, H, Hkv, D, self.window, self.max_len, self._scale)
        k.linear(ctx.att, ctx.wo, ctx.y)                     # y (R, d) = att wo^T
        return ctx.y

    def _rows(self, ctx, t):
        """``t`` [B, T, heads * D] as [B * T * heads, D]: one row a head (the q/k norms)."""
        return ctx.view(t, (t.size // self._dh, self._dh))

    def _attend_all(self, ctx) -> None:
        """No cache: the T queries attend to the T keys of this call."""
        H, Hkv = self.n_heads, self._hkv
        band = getattr(ctx, "band", None)
        if band is None:
            ctx.k.attention(ctx.qr, ctx.kr, ctx.vv, ctx.att, ctx.lse, self._scale, H, Hkv, True)
        else:
            ctx.k.attention_masked(ctx.qr, ctx.kr, ctx.vv, None, band, ctx.att, ctx.lse,
                                   self._scale, H, Hkv, True)

    def _attend_cached(self, ctx, pos: int, q4, k4) -> None:
        """A global layer: append the keys/values at ``pos``, attend to positions [0, pos+T)."""
        H, Hkv, D = self.n_heads, self._hkv, self._dh
        B, T = q4.shape[0], q4.shape[1]
        end, kc, vc, row = pos + T, ctx.k_cache, ctx.v_cache, Hkv * D
        for b in range(B):                                   # rows pos..end-1 of sequence b
            seq, dst = (T * row,), (b * self.max_len + pos) * row
            ctx.k.copy_into(ctx.view(ctx.kr, seq, b * T * row), kc, dst)
            ctx.k.copy_into(ctx.view(ctx.vv, seq, b * T * row), vc, dst)
        if T == 1:                                           # decode: one query per sequence
            ctx.k.attention_decode(q4, kc, vc, ctx.att, end, self._scale, H, Hkv)
        elif pos == 0:                                       # fresh prompt: keys are all here
            self._attend_all(ctx)
        else:                                                # continuing: the cached rows
            seen, qd = (1, end, Hkv, D), H * D
            for b in range(B):
                at = b * self.max_len * row
                ctx.k.attention(ctx.view(ctx.qr, (1, T, qd), b * T * qd),
                                ctx.view(kc, seen, at), ctx.view(vc, seen, at),
                                ctx.view(ctx.att, (1, T, qd), b * T * qd),
                                ctx.view(ctx.lse, (1, H, T), b * H * T), self._scale, H, Hkv,
                                True)

    def backward(self, dy, ctx):
        """Back through attention, RoPE and the q/k norms to x: dx written, every weight's gradient
        added into."""
        k = ctx.k
        H, Hkv = self.n_heads, self._hkv
        k.gemm(dy, ctx.att, ctx.dwo, trans_a=True, beta=1.0)  # dwo += dy^T att
        k.gemm(dy, ctx.wo, ctx.datt)                          # datt = dy wo
        band = getattr(ctx, "band", None)
        if band is None:
            k.attention_bwd(ctx.qr, ctx.kr, ctx.vv, ctx.att, ctx.lse, ctx.datt, ctx.dq, ctx.dk,
                            ctx.dv, self._scale, H, Hkv, True)
        else:
            k.attention_masked_bwd(ctx.qr, ctx.kr, ctx.vv, None, band, ctx.att, ctx.lse,
                                   ctx.datt, ctx.dq, ctx.dk, ctx.dv, self._scale, H, Hkv, True)
        dq4, dk4 = heads_view(ctx, ctx.dq, H), heads_view(ctx, ctx.dk, Hkv)
        k.rope_bwd(dq4, dq4, 0, self.rope_theta, True)
        k.rope_bwd(dk4, dk4, 0, self.rope_theta, True)
        k.rmsnorm_bwd(self._rows(ctx, ctx.q_raw), ctx.q_norm, ctx.rstd_q, self._rows(ctx, ctx.dq),
                      self._rows(ctx, ctx.dq_raw), ctx.dq_norm)
        k.rmsnorm_bwd(self._rows(ctx, ctx.k_raw), ctx.k_norm, ctx.rstd_k, self._rows(ctx, ctx.dk),
                      self._rows(ctx, ctx.dk_raw), ctx.dk_norm)
        x = ctx.x
        k.gemm(ctx.dq_raw, x, ctx.dwq, trans_a=True, beta=1.0)   # dwq += dq^T x
        k.gemm(ctx.dk_raw, x, ctx.dwk, trans_a=True, beta=1.0)
        k.gemm(ctx.dv, x, ctx.dwv, trans_a=True, beta=1.0)
        if ctx.dx is not None:
            k.gemm(ctx.dq_raw, ctx.wq, ctx.dx)                # dx = dq wq + dk wk + dv wv
            k.gemm(ctx.dk_raw, ctx.wk, ctx.dx, beta=1.0)
            k.gemm(ctx.dv, ctx.wv, ctx.dx, beta=1.0)
        return ctx.dx
