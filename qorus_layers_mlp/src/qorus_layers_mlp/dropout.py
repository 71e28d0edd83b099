"""Dropout: zeroes inputs with probability p in training, identity in inference; seeded."""

from __future__ import annotations

from qorus_core import Layer, Spec
from qorus_core.validate import integer, probability


class Dropout(Layer):
    """Inverted dropout with probability ``p``: seeded, identity in inference.

    The mask of training step ``s`` is a counter-based hash of (seed, layer position, s):
    reproducible, identical on C and NumPy kernels, and a resumed run continues the same
    stream (the step count is part of the checkpoint)."""

    replayable = True   # inference forward: kernel calls only

    def __init__(self, p: float = 0.5, seed: int = 0) -> None:
        self.p = probability(p, "p", "mlp.Dropout", hi_open=True)
        self.seed = integer(seed, "seed", "mlp.Dropout")

    def build(self, x: Spec, b) -> Spec:
        if not b.train or self.p == 0.0:
            return b.view_input(x.shape)      # identity: the output is the input's memory
        b.saved("mask", x.shape)              # scale-or-zero mask, same shape as x
        return x

    def forward(self, x, ctx):
        if ctx.train and self.p:
            seed = (self.seed * 0x9E3779B1 + ctx.index * 0x85EBCA77 + ctx.run.step * 0xC2B2AE3D)
            ctx.k.dropout_mask(ctx.mask, self.p, seed & 0xFFFFFFFF)
            ctx.k.mul(x, ctx.mask, ctx.y)
        return ctx.y

    def backward(self, dy, ctx):
        ctx.k.mul(dy, ctx.mask, ctx.dx)
        return ctx.dx
