"""LMHead: hidden states [..., d] to vocabulary logits [..., V]: the mlp plugin's Linear
(public API), named for what it does and bias-free by default."""

from __future__ import annotations

from qorus_core.validate import boolean, positive_int
from qorus_layers_mlp import Linear


class LMHead(Linear):
    """logits = x W^T (+ b); ``weight`` (vocab_size, d_model), PyTorch's Linear layout, so a
    GPT can tie it to its token embedding table (same shape). A float32 or quantized weight
    (``k.linear``), forward and backward from ``mlp.Linear``."""

    def __init__(self, d_model: int, vocab_size: int, bias: bool = False) -> None:
        self.d_model = positive_int(d_model, "d_model", "llm.LMHead")
        self.vocab_size = positive_int(vocab_size, "vocab_size", "llm.LMHead")
        super().__init__(self.d_model, self.vocab_size, boolean(bias, "bias", "llm.LMHead"))
