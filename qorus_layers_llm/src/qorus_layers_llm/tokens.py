"""LearnedTokens: ``n`` learned vectors per example, [B, n, d] (ViT's class token, BERT-style
[CLS], register tokens), to ``ops.concat`` in front of a sequence. Its input only gives the
batch size: it gets no gradient."""

from __future__ import annotations

from qorus_core import Layer, Spec
from qorus_core.init import normal
from qorus_core.validate import positive_int, real


class LearnedTokens(Layer):
    """``tokens(x)`` -> ``weight`` [n, d] repeated over x's batch; params ``weight``
    N(0, init_std) (ViT's class token: zeros in the paper, 0.02 in timm)."""

    replayable = True   # inference forward: kernel calls only

    def __init__(self, d_model: int, n: int = 1, init_std: float = 0.02) -> None:
        name = "llm.LearnedTokens"
        self.d_model = positive_int(d_model, "d_model", name)
        self.n = positive_int(n, "n", name)
        self.init_std = real(init_std, "init_std", name, lo=0.0)

    def build(self, x: Spec, b) -> Spec:
        """``[B, ...] -> [B, n, d_model]``: ``n`` learned vectors (a class token) per example; the input
        only gives the batch size."""
        b.param("weight", (self.n, self.d_model), normal(self.init_std))   # (n, d)
        b.no_input_grad()
        return Spec((x.shape[0], self.n, self.d_model))

    # y seen as [B, n * d] rows, the weight as one [n * d] vector (ctx.view: made once)
    def forward(self, x, ctx):
        """The same ``n`` rows for every example."""
        B, nd = ctx.y.shape[0], self.n * self.d_model
        y = ctx.view(ctx.y, (B, nd))
        ctx.k.fill(y, 0.0)
        ctx.k.add_bcast(y, ctx.view(ctx.weight, (nd,)), y)    # y[b] = 0 + weight
        return ctx.y

    def backward(self, dy, ctx):
        """dweight added into as the sum of dy over the batch; the input takes no gradient."""
        B, nd = dy.shape[0], self.n * self.d_model
        ctx.k.col_sum(ctx.view(dy, (B, nd)), ctx.view(ctx.dweight, (nd,)), beta=1.0)
        return None
