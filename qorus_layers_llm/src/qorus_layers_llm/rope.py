"""RotaryEmbedding: rotary position embedding over positions 0..T-1 (no parameters)."""

from __future__ import annotations

from qorus_core import Layer, Spec, Tensor
from qorus_core.errors import ConfigError, ShapeError
from qorus_core.validate import boolean, maybe, positive_int, real


def heads_view(ctx, t: Tensor, n_heads: int) -> Tensor:
    """A [B, T, H, D] view of a [B, T, H * D] (or [B, T, H, D]) tensor (``ctx.view``: made
    once, no array after the first step)."""
    B, T = t.shape[0], t.shape[1]
    return ctx.view(t, (B, T, n_heads, t.size // (B * T * n_heads)))


class RotaryEmbedding(Layer):
    """RoPE on [B, T, H * D] or [B, T, H, D]; ``half_split`` pairs (i, i + D/2) (HF) instead of
    adjacent pairs (2i, 2i + 1) (GGUF llama)."""

    replayable = True   # inference forward: kernel calls only

    def __init__(self, n_heads: int, head_dim: int | None = None, theta: float = 10000.0,
                 half_split: bool = False) -> None:
        name = "llm.RotaryEmbedding"
        self.n_heads = positive_int(n_heads, "n_heads", name)
        self.head_dim = maybe(positive_int, head_dim, "head_dim", name)
        if self.head_dim is not None and self.head_dim % 2:
            raise ConfigError(f"{name}: head_dim must be a positive even int, got {head_dim!r}")
        self.theta = real(theta, "theta", name, lo=0.0, lo_open=True)
        self.half_split = boolean(half_split, "half_split", name)

    def build(self, x: Spec, b) -> Spec:
        """Check ``[B, T, H, D]`` or ``[B, T, H * D]`` for ``n_heads`` heads of even size; the output
        has the input's shape."""
        H = self.n_heads
        if len(x.shape) == 4:
            if x.shape[2] != H:
                raise ShapeError(f"expected {H} heads in [B, T, H, D], got {x.shape}")
            D = x.shape[3]
        elif len(x.shape) == 3:
            if x.shape[2] % H:
                raise ShapeError(f"last dimension {x.shape[2]} is not a multiple of {H} heads")
            D = x.shape[2] // H
        else:
            raise ShapeError(f"expects [B, T, H * D] or [B, T, H, D], got {x.shape}")
        if self.head_dim is not None and D != self.head_dim:
            raise ShapeError(f"expected head_dim {self.head_dim}, got {D} from {x.shape}")
        if D % 2 or D == 0:
            raise ShapeError(f"head dim {D} must be even and positive")
        return x

    def forward(self, x, ctx):
        """Rotate each head's pairs by their position's angles."""
        ctx.k.rope(heads_view(ctx, x, self.n_heads), heads_view(ctx, ctx.y, self.n_heads), 0,
                   self.theta, self.half_split)
        return ctx.y

    def backward(self, dy, ctx):
        """The inverse rotation of dy."""
        if ctx.dx is not None:
            ctx.k.rope_bwd(heads_view(ctx, dy, self.n_heads), heads_view(ctx, ctx.dx, self.n_heads), 0,
                           self.theta, self.half_split)
        return ctx.dx
