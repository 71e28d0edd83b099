"""PositionalEmbedding: learned absolute positions added to [B, T, d] (GPT-2's ``wpe``).

Token ``t`` of a forward sits at position ``ctx.run.pos + t``: 0 in training, the number of
tokens already cached when decoding with a KV cache, so one layer serves both.
"""

from __future__ import annotations

from qorus_core import Layer, Spec, Tensor
from qorus_core.errors import ConfigError, ShapeError
from qorus_core.init import normal


def _rows_view(ctx, t: Tensor, rows: int) -> Tensor:
    """``t`` seen as ``rows`` rows (a [B, T*d] view of [B, T, d]); made once per plan."""
    cache = ctx.__dict__.setdefault("_pos_views", {})
    key = (t.p, rows)
    view = cache.get(key)
    if view is None:
        view = cache[key] = Tensor(t.a.reshape(rows, -1), t.name)
    return view


def _table_rows(ctx, table: Tensor, start: int, count: int) -> Tensor:
    """Rows ``start .. start+count`` of ``table`` as one flat Tensor (cached per start, so a
    decode step at a position seen before creates no array; at most ``max_len`` entries)."""
    cache = ctx.__dict__.setdefault("_pos_rows", {})
    key = (table.p, start, count)
    view = cache.get(key)
    if view is None:
        view = cache[key] = Tensor(table.a[start:start + count].reshape(-1), table.name)
    return view


class PositionalEmbedding(Layer):
    """y[b, t] = x[b, t] + weight[pos + t]; ``weight`` (max_len, d_model), N(0, init_std)."""

    def __init__(self, max_len: int, d_model: int, init_std: float = 0.02) -> None:
        if int(max_len) <= 0 or int(d_model) <= 0:
            raise ConfigError(f"PositionalEmbedding: sizes must be positive, got max_len={max_len}, "
                              f"d_model={d_model}")
        if not float(init_std) >= 0:
            raise ConfigError(f"PositionalEmbedding: init_std must be >= 0, got {init_std!r}")
        self.max_len = int(max_len)
        self.d_model = int(d_model)
        self.init_std = float(init_std)

    def build(self, x: Spec, b) -> Spec:
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

    def forward(self, x, ctx):
        B, T = x.shape[0], x.shape[1]
        rows = _table_rows(ctx, ctx.weight, self._start(ctx, T), T)
        ctx.k.add_bcast(_rows_view(ctx, x, B), rows, _rows_view(ctx, ctx.y, B))
        return ctx.y

    def backward(self, dy, ctx):
        B, T = dy.shape[0], dy.shape[1]
        drows = _table_rows(ctx, ctx.dweight, self._start(ctx, T), T)
        dx = None if ctx.dx is None else _rows_view(ctx, ctx.dx, B)
        ctx.k.add_bcast_bwd(_rows_view(ctx, dy, B), dx, drows)   # dW[pos+t] += sum_b dy[b, t]
        return ctx.dx
