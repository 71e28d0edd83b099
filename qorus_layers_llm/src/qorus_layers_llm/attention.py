"""CausalSelfAttention: q/k/v projections, RoPE, causal (grouped-query) attention, output
projection; weights in PyTorch's Linear layout (out, in), float32 or quantized (``QWeight``).

With ``max_len`` set, inference plans keep a KV cache of ``max_len`` positions (a state
buffer shared by the prefill and the decode plans): a forward appends its T keys and values
at ``ctx.run.pos`` and attends to everything cached so far. A run with ``rows`` (a batched
decode step of ``batch_decode``) gives each row its own position and cache slot instead.
"""

from __future__ import annotations

from qorus_core import Layer, Spec, Tensor
from qorus_core.errors import ConfigError, ShapeError
from qorus_core.init import torch_linear
from qorus_core.validate import boolean, maybe, positive_int, real

from .rope import heads_view


class CausalSelfAttention(Layer):
    """Multi-head causal self-attention with RoPE (unless ``rope=False``, GPT-2 style, where
    positions come from a learned embedding) and GQA (``n_kv_heads`` divides ``n_heads``).

    Params: wq (H*D, d), wk and wv (Hkv*D, d), wo (d, H*D), with D = d_model // n_heads; with
    ``bias`` also bq, bk, bv, bo.
    """

    replayable = True   # inference forward: kernel calls only

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int | None = None,
                 rope_theta: float = 10000.0, rope_half_split: bool = False,
                 bias: bool = False, max_len: int | None = None, rope: bool = True) -> None:
        name = "llm.CausalSelfAttention"
        d = positive_int(d_model, "d_model", name)
        H = positive_int(n_heads, "n_heads", name)
        self.n_kv_heads = maybe(positive_int, n_kv_heads, "n_kv_heads", name)
        Hkv = H if self.n_kv_heads is None else self.n_kv_heads
        if d % H or (d // H) % 2:
            raise ConfigError(f"{name}: d_model={d} must split into {H} heads of an even size")
        if H % Hkv:
            raise ConfigError(f"{name}: n_heads={H} must be a multiple of n_kv_heads={Hkv}")
        self.d_model = d
        self.n_heads = H
        self.rope_theta = real(rope_theta, "rope_theta", name, lo=0.0, lo_open=True)
        self.rope_half_split = boolean(rope_half_split, "rope_half_split", name)
        self.bias = boolean(bias, "bias", name)
        self.max_len = maybe(positive_int, max_len, "max_len", name)
        self.rope = boolean(rope, "rope", name)

    @property
    def _hkv(self) -> int:
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    def build(self, x: Spec, b) -> Spec:
        """Check ``[B, T, d_model]``; declare ``wq``, ``wk``, ``wv`` (grouped-query: ``n_kv_heads``
        key/value heads), ``wo`` and the biases, the rotary tables with ``rope``, a KV cache of
        ``max_len`` positions for inference, and the buffers backward reads."""
        if len(x.shape) != 3 or x.shape[2] != self.d_model:
            raise ShapeError(f"expects [B, T, {self.d_model}], got {x.shape}")
        B, T, d = x.shape
        H, Hkv = self.n_heads, self._hkv
        D = d // H
        b.param("wq", (H * D, d), torch_linear(d))
        b.param("wk", (Hkv * D, d), torch_linear(d))
        b.param("wv", (Hkv * D, d), torch_linear(d))
        b.param("wo", (d, H * D), torch_linear(H * D))
        if self.bias:
            b.param("bq", (H * D,), torch_linear(d))
            b.param("bk", (Hkv * D,), torch_linear(d))
            b.param("bv", (Hkv * D,), torch_linear(d))
            b.param("bo", (d,), torch_linear(H * D))
        b.saved("qr", (B, T, H * D))      # rotated queries
        b.saved("kr", (B, T, Hkv * D))    # rotated keys
        b.saved("vv", (B, T, Hkv * D))    # values
        b.saved("att", (B, T, H * D))     # attention output (before wo)
        b.saved("lse", (B, H, T))         # log-sum-exp of the scores
        b.scratch("datt", (B, T, H * D))
        b.scratch("dq", (B, T, H * D))
        b.scratch("dk", (B, T, Hkv * D))
        b.scratch("dv", (B, T, Hkv * D))
        if self.max_len is not None and not b.train:
            if T > self.max_len:
                raise ShapeError(f"{T} positions do not fit the KV cache of max_len={self.max_len}")
            b.state("k_cache", (B, self.max_len, Hkv, D), persistent=False)  # rotated keys
            b.state("v_cache", (B, self.max_len, Hkv, D), persistent=False)
        return x

    def forward(self, x, ctx):
        """q, k, v in one call over x, RoPE, the KV cache written at the sequence's position
        (inference), causal flash attention, then the output projection."""
        k = ctx.k
        H, Hkv = self.n_heads, self._hkv
        # q (R, H*D) = x wq^T, k (R, Hkv*D) = x wk^T, v (R, Hkv*D) = x wv^T: one call
        k.linears(x, (ctx.wq, ctx.wk, ctx.wv), (ctx.qr, ctx.kr, ctx.vv))
        if self.bias:
            k.bias_add(ctx.qr, ctx.bq)
            k.bias_add(ctx.kr, ctx.bk)
            k.bias_add(ctx.vv, ctx.bv)
        cached = self.max_len is not None and not ctx.train
        q4, k4 = heads_view(ctx, ctx.qr, H), heads_view(ctx, ctx.kr, Hkv)
        rows = getattr(ctx.run, "rows", None) if cached else None
        if rows is not None:                                 # a batched decode step
            self._attend_rows(ctx, rows, q4, k4)
        else:
            pos = ctx.run.pos if cached else 0
            if self.rope:
                k.rope(q4, q4, pos, self.rope_theta, self.rope_half_split)
                k.rope(k4, k4, pos, self.rope_theta, self.rope_half_split)
            if cached:
                self._attend_cached(ctx, pos, q4, k4)
            else:
                k.attention(ctx.qr, ctx.kr, ctx.vv, ctx.att, ctx.lse, None, H, Hkv, True)
        k.linear(ctx.att, ctx.wo, ctx.y)                     # y (R, d) = att wo^T
        if self.bias:
            k.bias_add(ctx.y, ctx.bo)
        return ctx.y

    def _attend_cached(self, ctx, pos: int, q4: Tensor, k4: Tensor) -> None:
        """Append this call's keys/values at ``pos`` and attend to cache positions [0, pos+T)."""
        H, Hkv = self.n_heads, self._hkv
        B, T = q4.shape[0], q4.shape[1]
        end = pos + T
        if pos < 0 or end > self.max_len:
            raise ShapeError(f"{ctx.path or 'attention'}: positions {pos}..{end - 1} exceed the "
                             f"context of max_len={self.max_len}")
        kc, vc = ctx.k_cache, ctx.v_cache
        row = Hkv * k4.shape[3]                              # values a cached position holds
        if B == 1:                                           # rows pos..end-1: one window
            ctx.k.copy_into(ctx.kr, kc, pos * row)
            ctx.k.copy_into(ctx.vv, vc, pos * row)
        else:                                                # one window per sequence
            for b in range(B):
                seq, dst = (T * row,), (b * self.max_len + pos) * row
                ctx.k.copy_into(ctx.view(ctx.kr, seq, b * T * row), kc, dst)
                ctx.k.copy_into(ctx.view(ctx.vv, seq, b * T * row), vc, dst)
        if T == 1:                                           # decode: one query per sequence
            ctx.k.attention_decode(q4, kc, vc, ctx.att, end, None, H, Hkv)
        elif pos == 0:                                       # fresh prompt: keys are all here
            ctx.k.attention(ctx.qr, ctx.kr, ctx.vv, ctx.att, ctx.lse, None, H, Hkv, True)
        elif B == 1:                                         # a prompt continuing a cached one
            seen = (1, end, Hkv, k4.shape[3])                # cache rows 0..end-1 (ctx.view)
            ctx.k.attention(ctx.qr, ctx.view(kc, seen), ctx.view(vc, seen), ctx.att,
                            ctx.lse, None, H, Hkv, True)
        else:
            raise ShapeError(f"{ctx.path or 'attention'}: continuing {B} cached sequences "
                             "with several tokens each is not supported; decode one at a time")

    def _attend_rows(self, ctx, rows, q4: Tensor, k4: Tensor) -> None:
        """A batched decode step (``batch_decode``): ``rows`` is (slot, pos), int32 [B]; row b
        is a token of the sequence in cache slot ``slot[b]`` at position ``pos[b]`` (the
        caches hold every slot, [S, max_len, Hkv, D]), computed as that sequence's own
        decode step computes it."""
        slot, pos = rows
        if q4.shape[1] != 1:
            raise ShapeError(f"{ctx.path or 'attention'}: a batched decode step takes one token "
                             f"a row, got {q4.shape[1]}")
        k, H, Hkv = ctx.k, self.n_heads, self._hkv
        if self.rope:
            k.rope_rows(q4, q4, pos, self.rope_theta, self.rope_half_split)
            k.rope_rows(k4, k4, pos, self.rope_theta, self.rope_half_split)
        k.kv_store_rows(ctx.kr, ctx.k_cache, slot, pos)
        k.kv_store_rows(ctx.vv, ctx.v_cache, slot, pos)
        k.attention_decode_rows(q4, ctx.k_cache, ctx.v_cache, ctx.att, slot, pos, None, H, Hkv)

    def backward(self, dy, ctx):
        """The attention backward (flash: recomputed from the saved log-sum-exp), RoPE's inverse, then
        the projections: dx written, every weight's gradient added into."""
        k = ctx.k
        H, Hkv = self.n_heads, self._hkv
        k.gemm(dy, ctx.att, ctx.dwo, trans_a=True, beta=1.0)  # dwo += dy^T att
        if self.bias:
            k.col_sum(dy, ctx.dbo, beta=1.0)
        k.gemm(dy, ctx.wo, ctx.datt)                          # datt = dy wo
        k.attention_bwd(ctx.qr, ctx.kr, ctx.vv, ctx.att, ctx.lse, ctx.datt, ctx.dq, ctx.dk,
                        ctx.dv, None, H, Hkv, True)
        if self.rope:
            dq4, dk4 = heads_view(ctx, ctx.dq, H), heads_view(ctx, ctx.dk, Hkv)
            k.rope_bwd(dq4, dq4, 0, self.rope_theta, self.rope_half_split)
            k.rope_bwd(dk4, dk4, 0, self.rope_theta, self.rope_half_split)
        x = ctx.x
        k.gemm(ctx.dq, x, ctx.dwq, trans_a=True, beta=1.0)   # dwq += dq^T x
        k.gemm(ctx.dk, x, ctx.dwk, trans_a=True, beta=1.0)
        k.gemm(ctx.dv, x, ctx.dwv, trans_a=True, beta=1.0)
        if self.bias:
            k.col_sum(ctx.dq, ctx.dbq, beta=1.0)
            k.col_sum(ctx.dk, ctx.dbk, beta=1.0)
            k.col_sum(ctx.dv, ctx.dbv, beta=1.0)
        if ctx.dx is not None:
            k.gemm(ctx.dq, ctx.wq, ctx.dx)                    # dx = dq wq + dk wk + dv wv
            k.gemm(ctx.dk, ctx.wk, ctx.dx, beta=1.0)
            k.gemm(ctx.dv, ctx.wv, ctx.dx, beta=1.0)
        return ctx.dx
