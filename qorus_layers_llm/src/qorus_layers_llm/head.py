"""LMHead: hidden states [..., d] to vocabulary logits [..., V]: the mlp plugin's Linear
(public API), named for what it does and bias-free by default."""

from __future__ import annotations

from qorus_core import QWeight
from qorus_core.validate import boolean, positive_int
from qorus_layers_mlp import Linear


class LMHead(Linear):
    """logits = x W^T (+ b); ``weight`` (vocab_size, d_model), PyTorch's Linear layout, so a
    GPT can tie it to its token embedding table (same shape). A float32 or quantized weight
    (``k.linear``), forward and backward from ``mlp.Linear``.

    Where the run reads only the last position (``ctx.run.last_position_only``: a
    generator's prompt chunk), the inference forward computes that position's logits alone,
    with the float32 activations a prompt's products use: the vocabulary product of the
    other positions (a fifth of a small model's prompt work) is skipped."""

    def __init__(self, d_model: int, vocab_size: int, bias: bool = False) -> None:
        self.d_model = positive_int(d_model, "d_model", "llm.LMHead")
        self.vocab_size = positive_int(vocab_size, "vocab_size", "llm.LMHead")
        super().__init__(self.d_model, self.vocab_size, boolean(bias, "bias", "llm.LMHead"))

    def forward(self, x, ctx):
        if ctx.train or not ctx.run.last_position_only or len(x.shape) != 3 or x.shape[1] == 1:
            return super().forward(x, ctx)
        B, T, d = x.shape
        V = self.vocab_size
        for b in range(B):                       # the last position of each sequence
            row = b * T + T - 1
            xr, yr = ctx.view(x, (1, d), row * d), ctx.view(ctx.y, (1, V), row * V)
            if isinstance(ctx.weight, QWeight):  # float32 activations, as a prompt's rows
                ctx.k.matmul_qf(xr, ctx.weight, yr)
            else:
                ctx.k.linear(xr, ctx.weight, yr)
            if self.bias:
                ctx.k.bias_add(yr, ctx.bias)
        return ctx.y
