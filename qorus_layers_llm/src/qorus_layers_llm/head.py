"""LMHead: hidden states [..., d] to vocabulary logits [..., V]: the mlp plugin's Linear
(public API), named for what it does and bias-free by default."""

from __future__ import annotations

from qorus_core.validate import boolean, positive_int
from qorus_layers_mlp import Linear


class LMHead(Linear):
    """logits = x W^T (+ b); ``weight`` (vocab_size, d_model), PyTorch's Linear layout, so a
    GPT can tie it to its token embedding table (same shape). A float32 or quantized weight
    (``k.linear``), forward and backward from ``mlp.Linear``.

    Where the run reads only the last position (``ctx.run.last_position_only``: a
    generator's prompt chunk), the inference forward computes that position's logits alone,
    by ``k.prompt_linear`` (the product a prompt's rows take, so the row gets the bits a full
    pass gives it): the vocabulary product of the other positions (a fifth of a small
    model's prompt work) is skipped."""

    def __init__(self, d_model: int, vocab_size: int, bias: bool = False) -> None:
        self.d_model = positive_int(d_model, "d_model", "llm.LMHead")
        self.vocab_size = positive_int(vocab_size, "vocab_size", "llm.LMHead")
        super().__init__(self.d_model, self.vocab_size, boolean(bias, "bias", "llm.LMHead"))

    def forward(self, x, ctx):
        """The logits: of every position in training, of each sequence's last position only when the run
        asks for it (a prompt's next token), as a prompt's rows."""
        if ctx.train or not ctx.run.last_position_only or len(x.shape) != 3 or x.shape[1] == 1:
            return super().forward(x, ctx)
        B, T, d = x.shape
        V = self.vocab_size
        for b in range(B):                       # the last position of each sequence
            row = b * T + T - 1
            xr, yr = ctx.view(x, (1, d), row * d), ctx.view(ctx.y, (1, V), row * V)
            ctx.k.prompt_linear(xr, ctx.weight, yr)   # as a prompt's rows, not a decode row
            if self.bias:
                ctx.k.bias_add(yr, ctx.bias)
        return ctx.y
