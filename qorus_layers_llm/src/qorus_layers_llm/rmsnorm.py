"""RMSNorm: x / sqrt(mean(x^2) + eps) * weight over the last dimension (llama's norm)."""

from __future__ import annotations

from qorus_core import Layer, Spec
from qorus_core.errors import ShapeError
from qorus_core.init import ones
from qorus_core.validate import maybe, positive_int, real


class RMSNorm(Layer):
    """Root-mean-square normalisation with a learned scale (PyTorch's nn.RMSNorm)."""

    replayable = True   # inference forward: kernel calls only

    def __init__(self, dim: int | None = None, eps: float = 1e-6) -> None:
        self.dim = maybe(positive_int, dim, "dim", "llm.RMSNorm")
        self.eps = real(eps, "eps", "llm.RMSNorm", lo=0.0)

    def build(self, x: Spec, b) -> Spec:
        """Declare ``weight`` ``(d,)`` (ones) over the last dimension, and each row's 1/rms saved for
        backward."""
        d = x.shape[-1]
        if self.dim is not None and d != self.dim:
            raise ShapeError(f"expected last dimension {self.dim}, got {d}")
        b.param("weight", (d,), ones())          # scale (D,)
        b.saved("rstd", (x.size // d,))         # per-row 1/rms (R,)
        return x

    def forward(self, x, ctx):
        """``x / rms(x) * weight``, row by row."""
        ctx.k.rmsnorm(x, ctx.weight, ctx.y, ctx.rstd, self.eps)
        return ctx.y

    def backward(self, dy, ctx):
        """dx written, dweight added into, from the saved 1/rms."""
        ctx.k.rmsnorm_bwd(ctx.x, ctx.weight, ctx.rstd, dy, ctx.dx, ctx.dweight)
        return ctx.dx
