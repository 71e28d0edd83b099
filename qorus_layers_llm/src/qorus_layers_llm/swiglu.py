"""SwiGLUFeedForward: y = w_down(silu(w_gate x) * w_up x) (llama's MLP), no biases."""

from __future__ import annotations

from qorus_core import Layer, Spec
from qorus_core.errors import ShapeError
from qorus_core.init import torch_linear
from qorus_core.validate import positive_int


class SwiGLUFeedForward(Layer):
    """Gated feed-forward; weights in PyTorch's Linear layout: w_gate, w_up (hidden, d),
    w_down (d, hidden)."""

    replayable = True   # inference forward: kernel calls only

    def __init__(self, d_model: int, hidden: int) -> None:
        self.d_model = positive_int(d_model, "d_model", "llm.SwiGLUFeedForward")
        self.hidden = positive_int(hidden, "hidden", "llm.SwiGLUFeedForward")

    def build(self, x: Spec, b) -> Spec:
        """Declare ``w_gate``, ``w_up`` ``(hidden, d_model)`` and ``w_down`` ``(d_model, hidden)``
        (llama's names), and the activations backward reads."""
        d, h = self.d_model, self.hidden
        if x.shape[-1] != d:
            raise ShapeError(f"expected last dimension {d}, got {x.shape}")
        b.param("w_gate", (h, d), torch_linear(d))
        b.param("w_up", (h, d), torch_linear(d))
        b.param("w_down", (d, h), torch_linear(h))
        hs = tuple(x.shape[:-1]) + (h,)
        b.saved("gate", hs)     # x w_gate^T
        b.saved("up", hs)       # x w_up^T
        b.saved("act", hs)      # silu(gate) * up
        b.scratch("dact", hs)
        b.scratch("dgate", hs)
        b.scratch("dup", hs)
        return x

    def forward(self, x, ctx):
        """``w_down(silu(x w_gate^T) * x w_up^T)``; the two input projections in one call."""
        k = ctx.k
        # gate (R, h) = x w_gate^T, up (R, h) = x w_up^T (one call: x read once)
        k.linears(x, (ctx.w_gate, ctx.w_up), (ctx.gate, ctx.up))
        k.swiglu(ctx.gate, ctx.up, ctx.act)
        k.linear(ctx.act, ctx.w_down, ctx.y)      # y (R, d) = act w_down^T
        return ctx.y

    def backward(self, dy, ctx):
        """Through the gated product back to x: dx written, every weight's gradient added into."""
        k = ctx.k
        k.gemm(dy, ctx.act, ctx.dw_down, trans_a=True, beta=1.0)   # dw_down += dy^T act
        k.gemm(dy, ctx.w_down, ctx.dact)                            # dact = dy w_down
        k.swiglu_bwd(ctx.gate, ctx.up, ctx.dact, ctx.dgate, ctx.dup)
        k.gemm(ctx.dgate, ctx.x, ctx.dw_gate, trans_a=True, beta=1.0)
        k.gemm(ctx.dup, ctx.x, ctx.dw_up, trans_a=True, beta=1.0)
        if ctx.dx is not None:
            k.gemm(ctx.dgate, ctx.w_gate, ctx.dx)                   # dx = dgate wg + dup wu
            k.gemm(ctx.dup, ctx.w_up, ctx.dx, beta=1.0)
        return ctx.dx
