"""Dropout: zeroes inputs with probability p in training, identity in inference; seeded."""

from __future__ import annotations

from qorus_core import Layer, Spec
from qorus_core.validate import integer, probability


class Dropout(Layer):
    """Inverted dropout with probability ``p``: seeded, identity in inference.

    The mask of training step ``s`` is a counter-based hash of (seed, layer position, s):
    reproducible, identical on C and NumPy kernels, and a resumed run continues the same
    stream (the step count is part of the checkpoint). A rank of a data-parallel job draws
    its rows' part of the mask one process would draw for the whole batch."""

    replayable = True   # inference forward: kernel calls only

    def __init__(self, p: float = 0.5, seed: int = 0) -> None:
        self.p = probability(p, "p", "mlp.Dropout", hi_open=True)
        self.seed = integer(seed, "seed", "mlp.Dropout")

    def build(self, x: Spec, b) -> Spec:
        """In training with ``p > 0``: a saved mask of the input's shape; otherwise the output is a view
        of the input (no copy)."""
        if not b.train or self.p == 0.0:
            return b.view_input(x.shape)      # identity: the output is the input's memory
        b.saved("mask", x.shape)              # scale-or-zero mask, same shape as x
        return x

    def forward(self, x, ctx):
        """In training, zero each value with probability ``p`` and scale the rest by ``1 / (1 - p)`` (a
        mask drawn from the run's step and seed, so a resumed run draws the same); otherwise the input
        as it is."""
        if ctx.train and self.p:
            per_row = ctx.mask.size // ctx.mask.shape[0]
            ctx.k.dropout_mask(ctx.mask, self.p, ctx.run.dropout_seed(self.seed, ctx.index, per_row))
            ctx.k.mul(x, ctx.mask, ctx.y)
        return ctx.y

    def backward(self, dy, ctx):
        """dx = dy times the same mask."""
        ctx.k.mul(dy, ctx.mask, ctx.dx)
        return ctx.dx
