"""MultiHeadAttention: self- and cross-attention with a key padding mask and an attention
mask, PyTorch's ``nn.MultiheadAttention`` (batch first) with GQA and optional RoPE.

Called as ``mha(query, key_value=None, key_padding_mask=None, attn_mask=None)``:
query [B, Tq, d]; key_value [B, Tk, d] (None: self-attention on query); key_padding_mask
bool [B, Tk] (True: padding, left out); attn_mask [B, Tq, Tk] (a model input: one per
example), [Tq, Tk], [B * H, Tq, Tk] or [B | 1, H | 1, Tq, Tk], float (added to the scores)
or bool (True: not attended, PyTorch's convention for this layer). A query whose every key
is masked gets 0 (PyTorch's SDPA).
Parameters carry PyTorch's names: ``in_proj_weight`` [(H + 2 Hkv) D, d] (q, k, v rows),
``in_proj_bias``, ``out_proj.weight``, ``out_proj.bias``; a state dict of
``nn.MultiheadAttention`` loads as it is. The tiled kernel keeps no Tq x Tk matrix unless a
dense attn_mask is given (which it reads, and which gets no gradient).
"""

from __future__ import annotations

import math

from qorus_core import Composite, Layer, Spec, layer_from_dict
from qorus_core.errors import ConfigError, ShapeError
from qorus_core.init import uniform, zeros
from qorus_core.validate import boolean, integer, maybe, positive_int, probability, real

from .rope import heads_view


def _heads(name: str, d_model: int, n_heads: int, n_kv_heads: int | None) -> tuple[int, int]:
    H = positive_int(n_heads, "n_heads", name)
    Hkv = H if n_kv_heads is None else positive_int(n_kv_heads, "n_kv_heads", name)
    if d_model % H:
        raise ConfigError(f"{name}: d_model={d_model} must split into n_heads={H} heads")
    if H % Hkv:
        raise ConfigError(f"{name}: n_heads={H} must be a multiple of n_kv_heads={Hkv}")
    return H, Hkv


class ProjectedAttention(Layer):
    """The q/k/v in-projection and the masked attention of ``MultiHeadAttention`` (all but
    its out_proj): output [B, Tq, H * D], the heads' attention before the output projection.
    Inputs and parameters as ``MultiHeadAttention``'s (it runs under that layer's path)."""

    inputs = ("query", "key_value?", "key_padding_mask?", "attn_mask?")

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int | None = None,
                 causal: bool = False, bias: bool = True, rope: bool = False,
                 rope_theta: float = 10000.0, dropout: float = 0.0, seed: int = 0) -> None:
        name = "llm.ProjectedAttention"
        self.dropout = probability(dropout, "dropout", name, hi_open=True)
        self.seed = integer(seed, "seed", name)
        self.d_model = positive_int(d_model, "d_model", name)
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads
        self._H, self._Hkv = _heads(name, self.d_model, n_heads, n_kv_heads)
        self.causal = boolean(causal, "causal", name)
        self.bias = boolean(bias, "bias", name)
        self.rope = boolean(rope, "rope", name)
        self.rope_theta = real(rope_theta, "rope_theta", name, lo=0.0, lo_open=True)
        if self.rope and (self.d_model // self._H) % 2:
            raise ConfigError(f"{name}: RoPE needs an even head size, got {self.d_model // self._H}")

    def build(self, xs: tuple, b) -> Spec:
        """Check query ``[B, T, d]``, key_value ``[B, S, d]`` and the masks; declare PyTorch's
        ``in_proj_weight`` ``(3d, d)`` and ``in_proj_bias``, and the per-head buffers backward reads."""
        q, kv, kpm, am = xs
        d, H, Hkv = self.d_model, self._H, self._Hkv
        D = d // H
        where = b.path or "MultiHeadAttention"
        for label, s in (("query", q), ("key_value", kv)):
            if s is not None and (len(s.shape) != 3 or s.shape[2] != d or s.dtype != "f32"):
                raise ShapeError(f"{where}: {label} must be float [B, T, {d}], got {s.shape} "
                                 f"{s.dtype}")
        src = q if kv is None else kv
        B, Tq, Tk = q.shape[0], q.shape[1], src.shape[1]
        if src.shape[0] != B:
            raise ShapeError(f"{where}: key_value batch {src.shape[0]} != query batch {B}")
        if self.causal and Tk < Tq:
            raise ShapeError(f"{where}: causal attention needs Tk >= Tq, got {Tq} queries and "
                             f"{Tk} keys")
        if kpm is not None and (kpm.shape != (B, Tk) or kpm.dtype != "i32"):
            raise ShapeError(f"{where}: key_padding_mask must be bool [{B}, {Tk}], got "
                             f"{kpm.shape} {kpm.dtype}")
        if am is not None:
            self._check_mask(where, am, B, H, Tq, Tk)
            if am.dtype == "i32":                      # bool: True -> -inf, False -> 0
                b.scratch("mask_f", am.shape)
                b.scratch("mask_fill", (2,))
        rows = (H + 2 * Hkv) * D
        b.param("in_proj_weight", (rows, d), uniform(math.sqrt(6.0 / (d + rows))))
        if self.bias:
            b.param("in_proj_bias", (rows,), zeros())
        b.saved("qh", (B, Tq, H * D))      # projected (rotated) queries
        b.saved("kh", (B, Tk, Hkv * D))    # keys
        b.saved("vh", (B, Tk, Hkv * D))    # values
        b.saved("lse", (B, H, Tq))        # log-sum-exp of the scores
        b.scratch("dq", (B, Tq, H * D))
        b.scratch("dk", (B, Tk, Hkv * D))
        b.scratch("dv", (B, Tk, Hkv * D))
        return Spec((B, Tq, H * D))

    @staticmethod
    def _check_mask(where: str, am: Spec, B: int, H: int, Tq: int, Tk: int) -> None:
        s = am.shape
        ok = (s == (Tq, Tk) or s in ((B, Tq, Tk), (B * H, Tq, Tk))
              or (len(s) == 4 and s[2:] == (Tq, Tk) and s[0] in (1, B) and s[1] in (1, H)))
        if not ok:
            raise ShapeError(f"{where}: attn_mask must be [{Tq}, {Tk}], [{B} or {B * H}, {Tq}, "
                             f"{Tk}] or [{B} or 1, {H} or 1, {Tq}, {Tk}], got {s}")

    # --- the in-projection, as views of in_proj_weight / in_proj_bias -------------------
    def _slices(self, ctx, t, cols: int | None):
        """(q, k, v) row blocks of ``t`` (the weight or its gradient: cols = d; the bias: None)."""
        H, Hkv, D = self._H, self._Hkv, self.d_model // self._H
        sizes, out, at = (H * D, Hkv * D, Hkv * D), [], 0
        for n in sizes:
            shape = (n,) if cols is None else (n, cols)
            out.append(ctx.view(t, shape, at))
            at += n * (1 if cols is None else cols)
        return out

    def forward(self, x, ctx):
        """q, k, v projected (self-attention: one call), then masked flash attention (key padding, an
        additive or boolean mask, causal, dropout) per head."""
        k, d = ctx.k, self.d_model
        query, kv, kpm, am = ctx.xs
        wq, wk, wv = self._slices(ctx, ctx.in_proj_weight, d)
        if kv is None:                                       # self-attention: one call
            k.linears(query, (wq, wk, wv), (ctx.qh, ctx.kh, ctx.vh))
        else:
            k.linear(query, wq, ctx.qh)
            k.linears(kv, (wk, wv), (ctx.kh, ctx.vh))
        if self.bias:
            for t, bias in zip((ctx.qh, ctx.kh, ctx.vh), self._slices(ctx, ctx.in_proj_bias, None)):
                k.bias_add(t, bias)
        if self.rope:
            q4, k4 = heads_view(ctx, ctx.qh, self._H), heads_view(ctx, ctx.kh, self._Hkv)
            k.rope(q4, q4, 0, self.rope_theta, False)
            k.rope(k4, k4, 0, self.rope_theta, False)
        p, seed = self._dropout(ctx)
        k.attention_masked(ctx.qh, ctx.kh, ctx.vh, kpm, self._bias(ctx, am), ctx.y, ctx.lse,
                           None, self._H, self._Hkv, self.causal, p, seed)
        return ctx.y

    def _dropout(self, ctx) -> tuple[float, int]:
        """(p, seed) of this step's attention dropout: mlp.Dropout's seeding (seed, layer
        position, training step), kept on the ctx for the backward; (0, 0) in inference."""
        if not (ctx.train and self.dropout):
            return 0.0, 0
        if ctx.__dict__.get("drop_step") != ctx.run.step:
            per_row = ctx.lse.size // ctx.lse.shape[0] * ctx.kh.shape[1]     # H * Tq * Tk
            seed = ctx.run.dropout_seed(self.seed, ctx.index, per_row)
            ctx.__dict__["drop_seed"], ctx.__dict__["drop_step"] = seed, ctx.run.step
        return self.dropout, ctx.__dict__["drop_seed"]

    @staticmethod
    def _bias(ctx, am):
        """The additive mask: a float attn_mask as it is, a bool one as -inf / 0."""
        if am is None or am.dtype == "f32":
            return am
        ctx.k.fill(ctx.view(ctx.mask_fill, (1,), 0), float("-inf"))
        ctx.k.fill(ctx.view(ctx.mask_fill, (1,), 1), 0.0)
        ctx.k.bcast_where(am, ctx.view(ctx.mask_fill, (1,), 0), ctx.view(ctx.mask_fill, (1,), 1),
                          ctx.mask_f)
        return ctx.mask_f

    def backward(self, dy, ctx):
        """The attention backward, then the input projections: query and key_value gradients written,
        the weights' added into; the mask takes none."""
        k, d = ctx.k, self.d_model
        query, kv, kpm, am = ctx.xs
        if len(ctx.dxs) > 3 and ctx.dxs[3] is not None:
            raise ShapeError(f"{ctx.path or 'MultiHeadAttention'}: attn_mask gets no gradient; "
                             "pass it through ops.StopGradient (or make it a model input)")
        p, seed = self._dropout(ctx)
        k.attention_masked_bwd(ctx.qh, ctx.kh, ctx.vh, kpm, self._bias(ctx, am), ctx.y, ctx.lse, dy,
                               ctx.dq, ctx.dk, ctx.dv, None, self._H, self._Hkv, self.causal, p,
                               seed)
        if self.rope:
            dq4, dk4 = heads_view(ctx, ctx.dq, self._H), heads_view(ctx, ctx.dk, self._Hkv)
            k.rope_bwd(dq4, dq4, 0, self.rope_theta, False)
            k.rope_bwd(dk4, dk4, 0, self.rope_theta, False)
        src = query if kv is None else kv
        grads = (ctx.dq, ctx.dk, ctx.dv)
        for g, x, dw in zip(grads, (query, src, src), self._slices(ctx, ctx.din_proj_weight, d)):
            k.gemm(g, x, dw, trans_a=True, beta=1.0)         # dW_part += g^T x
        if self.bias:
            for g, db in zip(grads, self._slices(ctx, ctx.din_proj_bias, None)):
                k.col_sum(g, db, beta=1.0)
        wq, wk, wv = self._slices(ctx, ctx.in_proj_weight, d)
        dquery, dkv = ctx.dxs[0], ctx.dxs[1] if len(ctx.dxs) > 1 else None
        if kv is None:
            if dquery is not None:                           # dx = dq wq + dk wk + dv wv
                k.gemm(ctx.dq, wq, dquery)
                k.gemm(ctx.dk, wk, dquery, beta=1.0)
                k.gemm(ctx.dv, wv, dquery, beta=1.0)
            return dquery
        if dquery is not None:
            k.gemm(ctx.dq, wq, dquery)
        if dkv is not None:
            k.gemm(ctx.dk, wk, dkv)
            k.gemm(ctx.dv, wv, dkv, beta=1.0)
        return dquery


class MultiHeadAttention(Composite):
    """Multi-head attention (PyTorch's ``nn.MultiheadAttention``, batch first): see the module
    docs for the call and the masks. ``n_kv_heads`` < ``n_heads`` shares each key/value head
    among a group of query heads (GQA); ``rope`` rotates queries and keys by position (0..T-1);
    ``causal`` masks later keys (queries aligned to the last keys when Tk > Tq); ``dropout``
    drops attention probabilities in training (PyTorch's ``dropout``), seeded like
    ``mlp.Dropout``."""

    inputs = ("query", "key_value?", "key_padding_mask?", "attn_mask?")

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int | None = None,
                 causal: bool = False, bias: bool = True, rope: bool = False,
                 rope_theta: float = 10000.0, dropout: float = 0.0, seed: int = 0) -> None:
        name = "llm.MultiHeadAttention"
        self.dropout, self.seed = dropout, seed
        self.d_model = positive_int(d_model, "d_model", name)
        self.n_heads = n_heads
        self.n_kv_heads = maybe(positive_int, n_kv_heads, "n_kv_heads", name)
        self.causal = boolean(causal, "causal", name)
        self.bias = boolean(bias, "bias", name)
        self.rope = boolean(rope, "rope", name)
        self.rope_theta = rope_theta
        self.children()                                       # bad sizes fail here

    def children(self) -> tuple[ProjectedAttention, Layer]:
        """The in-projection + attention (run under this layer's own path) and out_proj."""
        core = ProjectedAttention(self.d_model, self.n_heads, self.n_kv_heads, self.causal,
                                  self.bias, self.rope, self.rope_theta, self.dropout, self.seed)
        out = layer_from_dict({"type": "mlp.Linear", "in_features": self.d_model,
                               "out_features": self.d_model, "bias": self.bias})
        return core, out

    def build(self, xs, b):
        """``out_proj(attention(query, key_value, masks))``, PyTorch's ``nn.MultiheadAttention``
        parameter names."""
        core, out = self.children()
        return b.call(out, b.call(core, xs, ""), "out_proj")
