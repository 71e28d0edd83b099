"""PositionalEmbedding: learned absolute positions added to [B, T, d] (GPT-2's ``wpe``).

Token ``t`` of a forward sits at position ``ctx.run.pos + t``: 0 in training, the number of
tokens already cached when decoding with a KV cache, so one layer serves both.
"""

from __future__ import annotations

from qorus_core import Layer, Spec
from qorus_core.errors import ShapeError
from qorus_core.init import normal
from qorus_core.validate import positive_int, real


class PositionalEmbedding(Layer):
    """y[b, t] = x[b, t] + weight[pos + t]; ``weight`` (max_len, d_model), N(0, init_std)."""

    replayable = True   # inference forward: kernel calls only

    def __init__(self, max_len: int, d_model: int, init_std: float = 0.02) -> None:
        name = "llm.PositionalEmbedding"
        self.max_len = positive_int(max_len, "max_len", name)
        self.d_model = positive_int(d_model, "d_model", name)
        self.init_std = real(init_std, "init_std", name, lo=0.0)

    def build(self, x: Spec, b) -> Spec:
        """Check ``[B, T, d_model]`` with ``T <= max_len``; declare ``weight`` ``(max_len,
        d_model)``."""
        if len(x.shape) != 3 or x.shape[2] != self.d_model:
            raise ShapeError(f"expects [B, T, {self.d_model}], got {x.shape}")
        if x.shape[1] > self.max_len:
            raise ShapeError(f"sequence length {x.shape[1]} exceeds max_len {self.max_len}")
        b.param("weight", (self.max_len, self.d_model), normal(self.init_std))   # (max_len, d)
        return x

    def _start(self, ctx, T: int) -> int:
        pos = ctx.run.pos
        if pos < 0 or pos + T > self.max_len:
            raise ShapeError(f"{ctx.path or 'PositionalEmbedding'}: positions {pos}..{pos + T - 1} "
                             f"exceed max_len {self.max_len} (tokens already cached: {pos}, new: {T})")
        return pos

    # x, y seen as [B, T*d] rows, the table's rows pos..pos+T as one [T*d] vector: ctx.view
    # caches each (one per position seen when decoding, at most max_len), so no array is made
    def forward(self, x, ctx):
        """x plus the rows of the positions it covers (from the sequence's position in decoding)."""
        B, T, d = x.shape
        rows = ctx.view(ctx.weight, (T * d,), self._start(ctx, T) * d)
        ctx.k.add_bcast(ctx.view(x, (B, T * d)), rows, ctx.view(ctx.y, (B, T * d)))
        return ctx.y

    def backward(self, dy, ctx):
        """dx = dy; each position's row gradient added into as the sum over the batch."""
        B, T, d = dy.shape
        drows = ctx.view(ctx.dweight, (T * d,), self._start(ctx, T) * d)
        dx = None if ctx.dx is None else ctx.view(ctx.dx, (B, T * d))
        ctx.k.add_bcast_bwd(ctx.view(dy, (B, T * d)), dx, drows)   # dW[pos+t] += sum_b dy[b, t]
        return ctx.dx
