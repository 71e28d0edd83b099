"""TransformerEncoderLayer and TransformerDecoderLayer: PyTorch's layers (batch first), post-
norm (the default, BERT's and the original Transformer's) or pre-norm (``norm_first``), ReLU
or GELU feed-forward, with PyTorch's parameter names (``self_attn.in_proj_weight``,
``multihead_attn.*``, ``linear1.weight``, ``norm1.weight``, ...), so their state dicts load
as they are. Masks follow ``MultiHeadAttention``: key padding masks bool [B, T] (True:
padding), attention masks float (added) or bool (True: not attended).
"""

from __future__ import annotations

from typing import Any

from qorus_core import Composite, Layer, layer_from_dict
from qorus_core.errors import ShapeError
from qorus_core.validate import boolean, choice, maybe, positive_int, probability, real

from .mha import MultiHeadAttention

ACTIVATIONS: dict[str, dict[str, Any]] = {"relu": {"type": "mlp.ReLU"},
                                          "gelu": {"type": "mlp.GELU"},
                                          "gelu_tanh": {"type": "mlp.GELU", "approximate": "tanh"}}


class _Block(Composite):
    """What both layers share: the config, the feed-forward and the norms."""

    kind = ""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation: str = "relu", layer_norm_eps: float = 1e-5,
                 norm_first: bool = False, bias: bool = True, n_kv_heads: int | None = None,
                 causal: bool = False) -> None:
        name = f"llm.{type(self).__name__}"
        self.d_model = positive_int(d_model, "d_model", name)
        self.nhead = positive_int(nhead, "nhead", name)
        self.dim_feedforward = positive_int(dim_feedforward, "dim_feedforward", name)
        self.dropout = probability(dropout, "dropout", name, hi_open=True)
        self.activation = choice(activation, "activation", name, sorted(ACTIVATIONS))
        self.layer_norm_eps = real(layer_norm_eps, "layer_norm_eps", name, lo=0.0)
        self.norm_first = boolean(norm_first, "norm_first", name)
        self.bias = boolean(bias, "bias", name)
        self.n_kv_heads = maybe(positive_int, n_kv_heads, "n_kv_heads", name)
        self.causal = boolean(causal, "causal", name)
        self.attention(self.causal)                          # bad head counts fail here

    def attention(self, causal: bool) -> MultiHeadAttention:
        return MultiHeadAttention(self.d_model, self.nhead, self.n_kv_heads, causal=causal,
                                  bias=self.bias, dropout=self.dropout)

    def _layer(self, spec: dict[str, Any]) -> Layer:
        return layer_from_dict(spec)

    def norm(self) -> Layer:
        return self._layer({"type": "mlp.LayerNorm", "normalized_shape": self.d_model,
                            "eps": self.layer_norm_eps})

    def drop(self) -> Layer:
        return self._layer({"type": "mlp.Dropout", "p": self.dropout})

    def _check(self, x, b, label: str) -> None:
        if len(x.shape) != 3 or x.shape[2] != self.d_model:
            raise ShapeError(f"{b.path or type(self).__name__}: {label} must be [B, T, "
                             f"{self.d_model}], got {x.shape}")

    def feed_forward(self, x, b, last: str = "dropout2"):
        """last(linear2(dropout(act(linear1(x))))): PyTorch's _ff_block (its last dropout is
        ``dropout2`` in the encoder layer, ``dropout3`` in the decoder layer)."""
        lin = lambda i, o: self._layer({"type": "mlp.Linear", "in_features": i,  # noqa: E731
                                        "out_features": o, "bias": self.bias})
        h = b.call(lin(self.d_model, self.dim_feedforward), x, "linear1")
        h = b.call(self._layer(ACTIVATIONS[self.activation]), h, "activation")
        h = b.call(self.drop(), h, "dropout")
        return b.call(self.drop(), b.call(lin(self.dim_feedforward, self.d_model), h, "linear2"),
                      last)

    def residual(self, x, sublayer, norm_name: str, b):
        """x + sublayer(norm(x)) (pre-norm) or norm(x + sublayer(x)) (post-norm)."""
        if self.norm_first:
            return b.add(x, sublayer(b.call(self.norm(), x, norm_name)))
        return b.call(self.norm(), b.add(x, sublayer(x)), norm_name)


class TransformerEncoderLayer(_Block):
    """``src`` [B, T, d] -> [B, T, d]: self-attention (``causal`` for a decoder-only stack),
    then the feed-forward, each with a residual and a LayerNorm. Params: ``self_attn.*``,
    ``linear1.*``, ``linear2.*``, ``norm1.*``, ``norm2.*``."""

    inputs = ("src", "src_key_padding_mask?", "src_mask?")

    def build(self, xs, b):
        """Self-attention then feed-forward, each with dropout and a residual, LayerNorm before
        (``norm_first``) or after each, as PyTorch's."""
        src, kpm, mask = xs
        self._check(src, b, "src")
        attn, drop = self.attention(self.causal), self.drop()

        def self_attention(h):
            return b.call(drop, b.call(attn, (h, None, kpm, mask), "self_attn"), "dropout1")

        h = self.residual(src, self_attention, "norm1", b)
        return self.residual(h, lambda u: self.feed_forward(u, b), "norm2", b)


class TransformerDecoderLayer(_Block):
    """``tgt`` [B, T, d] and ``memory`` [B, S, d] -> [B, T, d]: self-attention (causal when
    ``causal``, PyTorch's ``tgt_is_causal``), cross-attention to memory, then the
    feed-forward. Params: ``self_attn.*``, ``multihead_attn.*``, ``linear1.*``,
    ``linear2.*``, ``norm1.*`` .. ``norm3.*``."""

    inputs = ("tgt", "memory", "tgt_key_padding_mask?", "memory_key_padding_mask?",
              "tgt_mask?", "memory_mask?")

    def build(self, xs, b):
        """Self-attention, cross-attention over ``memory``, then feed-forward, each with dropout and a
        residual, as PyTorch's."""
        tgt, memory, tkpm, mkpm, tmask, mmask = xs
        self._check(tgt, b, "tgt")
        self._check(memory, b, "memory")
        sa, ca = self.attention(self.causal), self.attention(False)
        d1, d2 = self.drop(), self.drop()

        def self_attention(h):
            return b.call(d1, b.call(sa, (h, None, tkpm, tmask), "self_attn"), "dropout1")

        def cross_attention(h):
            return b.call(d2, b.call(ca, (h, memory, mkpm, mmask), "multihead_attn"), "dropout2")

        h = self.residual(tgt, self_attention, "norm1", b)
        h = self.residual(h, cross_attention, "norm2", b)
        return self.residual(h, lambda u: self.feed_forward(u, b, "dropout3"), "norm3", b)
