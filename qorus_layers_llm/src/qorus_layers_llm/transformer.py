"""Stacks of transformer layers with PyTorch's names: TransformerEncoder (``layers.<i>.*``,
``norm.*``), TransformerDecoder and the encoder-decoder Transformer (``encoder.layers.<i>``,
``encoder.norm``, ``decoder.layers.<i>``, ``decoder.norm``: ``nn.Transformer``'s state dict
loads as it is). Each takes the layer's options (see transformer_layers.py)."""

from __future__ import annotations

from qorus_core import Composite
from qorus_core.validate import boolean, nonneg_int

from .transformer_layers import TransformerDecoderLayer, TransformerEncoderLayer


class _Stack(Composite):
    """num_layers layers of one kind (their options as the layer's) and an optional final
    LayerNorm (``norm``)."""

    layer_type: type = TransformerEncoderLayer

    def __init__(self, d_model: int, nhead: int, num_layers: int = 6,
                 dim_feedforward: int = 2048, dropout: float = 0.1, activation: str = "relu",
                 layer_norm_eps: float = 1e-5, norm_first: bool = False, bias: bool = True,
                 n_kv_heads: int | None = None, causal: bool = False,
                 norm: bool = False) -> None:
        name = f"llm.{type(self).__name__}"
        self.num_layers = nonneg_int(num_layers, "num_layers", name)
        self.norm = boolean(norm, "norm", name)
        self.d_model, self.nhead, self.causal = d_model, nhead, causal
        self.dim_feedforward, self.dropout, self.activation = dim_feedforward, dropout, activation
        self.layer_norm_eps, self.norm_first, self.bias = layer_norm_eps, norm_first, bias
        self.n_kv_heads = n_kv_heads
        self.block()                                          # bad options fail here

    def block(self):
        """One layer (each call a new object: its own parameters)."""
        return self.layer_type(self.d_model, self.nhead, self.dim_feedforward, self.dropout,
                               self.activation, self.layer_norm_eps, self.norm_first, self.bias,
                               self.n_kv_heads, self.causal)

    def final_norm(self, x, b):
        if not self.norm:
            return x
        return b.call(self.block().norm(), x, "norm")


class TransformerEncoder(_Stack):
    """``src`` [B, T, d] through ``num_layers`` encoder layers (then ``norm`` when set)."""

    inputs = ("src", "src_key_padding_mask?", "src_mask?")

    def build(self, xs, b):
        """``src`` through ``num_layers`` encoder layers (with the padding and attention masks), then
        the final norm."""
        h, kpm, mask = xs
        for i in range(self.num_layers):
            h = b.call(self.block(), (h, kpm, mask), f"layers.{i}")
        return self.final_norm(h, b)


class TransformerDecoder(_Stack):
    """``tgt`` [B, T, d] attending to ``memory`` [B, S, d] through ``num_layers`` decoder
    layers (self-attention causal when ``causal``; then ``norm`` when set)."""

    layer_type = TransformerDecoderLayer
    inputs = ("tgt", "memory", "tgt_key_padding_mask?", "memory_key_padding_mask?",
              "tgt_mask?", "memory_mask?")

    def build(self, xs, b):
        """``tgt`` through ``num_layers`` decoder layers attending to ``memory``, then the final
        norm."""
        h, memory, *masks = xs
        for i in range(self.num_layers):
            h = b.call(self.block(), (h, memory, *masks), f"layers.{i}")
        return self.final_norm(h, b)


class Transformer(Composite):
    """PyTorch's ``nn.Transformer`` (batch first): ``src`` [B, S, d] through the encoder (with
    its final norm), ``tgt`` [B, T, d] through the decoder attending to it (self-attention
    causal unless ``causal=False``; with its final norm) -> [B, T, d]. Inputs in
    ``nn.Transformer.forward``'s order; layer options as ``TransformerEncoderLayer``'s."""

    inputs = ("src", "tgt", "src_mask?", "tgt_mask?", "memory_mask?", "src_key_padding_mask?",
              "tgt_key_padding_mask?", "memory_key_padding_mask?")

    def __init__(self, d_model: int = 512, nhead: int = 8, num_encoder_layers: int = 6,
                 num_decoder_layers: int = 6, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation: str = "relu", layer_norm_eps: float = 1e-5,
                 norm_first: bool = False, bias: bool = True, n_kv_heads: int | None = None,
                 causal: bool = True) -> None:
        name = "llm.Transformer"
        self.d_model, self.nhead = d_model, nhead
        self.num_encoder_layers = nonneg_int(num_encoder_layers, "num_encoder_layers", name)
        self.num_decoder_layers = nonneg_int(num_decoder_layers, "num_decoder_layers", name)
        self.causal = boolean(causal, "causal", name)
        self.dim_feedforward, self.dropout, self.activation = dim_feedforward, dropout, activation
        self.layer_norm_eps, self.norm_first, self.bias = layer_norm_eps, norm_first, bias
        self.n_kv_heads = n_kv_heads
        self.children()

    def children(self) -> tuple[TransformerEncoder, TransformerDecoder]:
        """The encoder and the decoder stacks, each with its final norm."""
        opts = (self.dim_feedforward, self.dropout, self.activation, self.layer_norm_eps,
                self.norm_first, self.bias, self.n_kv_heads)
        return (TransformerEncoder(self.d_model, self.nhead, self.num_encoder_layers, *opts,
                                   causal=False, norm=True),
                TransformerDecoder(self.d_model, self.nhead, self.num_decoder_layers, *opts,
                                   causal=self.causal, norm=True))

    def build(self, xs, b):
        """The encoder over ``src``, then the decoder over ``tgt`` attending to its output."""
        src, tgt, src_mask, tgt_mask, mem_mask, src_kpm, tgt_kpm, mem_kpm = xs
        encoder, decoder = self.children()
        memory = b.call(encoder, (src, src_kpm, src_mask), "encoder")
        return b.call(decoder, (tgt, memory, tgt_kpm, mem_kpm, tgt_mask, mem_mask), "decoder")
