"""LMHead: hidden states [..., d] to vocabulary logits [..., V]: the mlp plugin's Linear
(public API), named for what it does and bias-free by default."""

from __future__ import annotations

from qorus_core.errors import ConfigError
from qorus_layers_mlp import Linear


class LMHead(Linear):
    """logits = x W^T (+ b); ``weight`` (vocab_size, d_model), PyTorch's Linear layout, so a
    GPT can tie it to its token embedding table (same shape). A float32 or quantized weight
    (``k.linear``), forward and backward from ``mlp.Linear``."""

    def __init__(self, d_model: int, vocab_size: int, bias: bool = False) -> None:
        if int(d_model) <= 0 or int(vocab_size) <= 0:
            raise ConfigError(f"LMHead: sizes must be positive, got d_model={d_model}, "
                              f"vocab_size={vocab_size}")
        super().__init__(int(d_model), int(vocab_size), bias)
        self.d_model = int(d_model)
        self.vocab_size = int(vocab_size)
