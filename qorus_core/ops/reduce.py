"""Graph ops that reduce or index: sum and mean over axes, max over one axis, gather along an
axis (PyTorch's ``gather``), and batched matmul."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError, ShapeError
from ..layer import Layer
from ..tensor import Spec
from ..validate import boolean, integer
from .layout import axis_of, check_int_tuple, prod, strides
from .shape import _cached


class Sum(Layer):
    """y = x summed over ``axis`` (an int, a list, or None: every axis but the batch);
    ``keepdims`` keeps them as size 1."""

    scale_by_count = False

    def __init__(self, axis: int | list[int] | None = None, keepdims: bool = False) -> None:
        self.axis = None if axis is None else (
            axis if isinstance(axis, int) and not isinstance(axis, bool)
            else list(check_int_tuple(axis, "axis", type(self).__name__)))
        self.keepdims = boolean(keepdims, "keepdims", type(self).__name__)

    def _axes(self, nd: int) -> tuple[int, ...]:
        where = type(self).__name__
        if self.axis is None:
            return tuple(range(1, nd))
        axes = (self.axis,) if isinstance(self.axis, int) else tuple(self.axis)
        out = tuple(sorted({axis_of(a, nd, where) for a in axes}))
        if len(out) != len(axes):
            raise ConfigError(f"{where}: axis {self.axis} names an axis twice")
        return out

    def build(self, x: Spec, b) -> Spec:
        """The output: x without the reduced axes (size 1 with ``keepdims``); the batch axis cannot be
        reduced."""
        if x.dtype != "f32":
            raise ConfigError(f"{type(self).__name__}: input must be f32, got {x.dtype}")
        axes = self._axes(len(x.shape))
        if not axes:
            raise ShapeError(f"{type(self).__name__}: {x.shape} has no axis to reduce but the batch")
        if self.keepdims:
            return Spec(tuple(1 if i in axes else d for i, d in enumerate(x.shape)))
        return Spec(tuple(d for i, d in enumerate(x.shape) if i not in axes))

    def _layout(self, ctx) -> tuple[Any, ...]:
        """(y viewed with the reduced axes kept, 1 / count or 1, the broadcast of dy onto x)."""
        shape = tuple(ctx.x.shape)
        axes = self._axes(len(shape))
        kept = tuple(1 if i in axes else d for i, d in enumerate(shape))
        ks = strides(kept)
        bcast = tuple(0 if i in axes else s for i, s in enumerate(ks))
        n = prod([shape[i] for i in axes])
        return ctx.view(ctx.y, kept), (1.0 / n if self.scale_by_count else 1.0), bcast

    def forward(self, x, ctx):
        """The sum (the mean for ``Mean``) over the axes, in one kernel call."""
        y, alpha, _ = _cached(ctx, "_red", lambda: self._layout(ctx))
        ctx.k.sum_to(x, y, alpha, 0.0)
        return ctx.y

    def backward(self, dy, ctx):
        """dy broadcast back over the reduced axes (divided by their size for ``Mean``)."""
        if ctx.dx is not None:
            _, alpha, bcast = _cached(ctx, "_red", lambda: self._layout(ctx))
            shape = tuple(ctx.x.shape)
            ctx.k.strided_copy(dy, ctx.dx, shape, 0, bcast, 0, strides(shape))
            if alpha != 1.0:
                ctx.k.scale(ctx.dx, alpha)
        return ctx.dx


class Mean(Sum):
    """y = x averaged over ``axis`` (as ``Sum``)."""

    scale_by_count = True


def _split3(shape: tuple[int, ...], a: int) -> tuple[int, int, int]:
    return prod(shape[:a]), shape[a], prod(shape[a + 1:])


class Max(Layer):
    """y = the maximum of x over one ``axis`` (``keepdims``: kept as size 1); the gradient goes
    to the first maximal element (PyTorch's ``max(dim)``); NaN wins."""

    def __init__(self, axis: int = -1, keepdims: bool = False) -> None:
        self.axis = integer(axis, "axis", "Max")
        self.keepdims = boolean(keepdims, "keepdims", "Max")

    def build(self, x: Spec, b) -> Spec:
        """The output: x without ``axis`` (size 1 with ``keepdims``); the argmax is kept for
        backward."""
        if x.dtype != "f32":
            raise ConfigError(f"Max: input must be f32, got {x.dtype}")
        a = axis_of(self.axis, len(x.shape), "Max")
        o, _, i = _split3(x.shape, a)
        (b.saved if b.train else b.scratch)("argmax", (o * i,), "i32")
        if self.keepdims:
            return Spec(x.shape[:a] + (1,) + x.shape[a + 1:])
        return Spec(x.shape[:a] + x.shape[a + 1:])

    def _x3(self, ctx, t):
        a = axis_of(self.axis, len(ctx.x.shape), "Max")
        return ctx.view(t, _split3(tuple(ctx.x.shape), a))

    def forward(self, x, ctx):
        """The maximum along ``axis`` and where it is."""
        ctx.k.max_axis(self._x3(ctx, x), ctx.y, ctx.argmax)
        return ctx.y

    def backward(self, dy, ctx):
        """dy to the position of each maximum, 0 elsewhere."""
        if ctx.dx is not None:
            ctx.k.max_axis_bwd(dy, ctx.argmax, self._x3(ctx, ctx.dx))
        return ctx.dx


class Gather(Layer):
    """y[..., j, ...] = x[..., index[..., j, ...], ...] along ``axis`` (PyTorch's ``gather``);
    ``index`` is int32 and has x's shape but along ``axis``; no gradient flows to it."""

    inputs = ("x", "index")

    def __init__(self, axis: int) -> None:
        self.axis = integer(axis, "axis", "Gather")

    def build(self, x: tuple[Spec, Spec], b) -> Spec:
        """The output: index's shape; index int32 with x's shape except along ``axis``."""
        src, idx = x
        a = axis_of(self.axis, len(src.shape), "Gather")
        if idx.dtype != "i32":
            raise ConfigError(f"Gather: index must be i32, got {idx.dtype}")
        if src.dtype != "f32":
            raise ConfigError(f"Gather: x must be f32, got {src.dtype}")
        if len(idx.shape) != len(src.shape) or any(
                d != e for j, (d, e) in enumerate(zip(idx.shape, src.shape)) if j != a):
            raise ShapeError(f"Gather along axis {self.axis}: index {idx.shape} must have x's "
                             f"shape {src.shape} but along that axis")
        return Spec(idx.shape)

    def _views(self, ctx) -> tuple[Any, Any, Any, Any]:
        a = axis_of(self.axis, len(ctx.x.shape), "Gather")
        x3, i3 = _split3(tuple(ctx.x.shape), a), _split3(tuple(ctx.y.shape), a)
        dx = None if ctx.dx is None else ctx.view(ctx.dx, x3)
        return ctx.view(ctx.x, x3), ctx.view(ctx.other, i3), ctx.view(ctx.y, i3), dx

    def forward(self, x, ctx):
        """y gathered from x along ``axis`` at ``index``."""
        x3, i3, y3, _ = _cached(ctx, "_g", lambda: self._views(ctx))
        ctx.k.gather_axis(x3, i3, y3)
        return ctx.y

    def backward(self, dy, ctx):
        """dy added back to the positions it was gathered from (a position gathered twice gets both)."""
        if ctx.dx is not None:
            _, i3, y3, dx3 = _cached(ctx, "_g", lambda: self._views(ctx))
            ctx.k.gather_axis_bwd(ctx.view(dy, tuple(y3.shape)), i3, dx3)
        return ctx.dx


class MatMul(Layer):
    """y = op(x) @ op(other) over the last two axes, batched over the leading ones (equal
    in both); ``transpose_a`` / ``transpose_b`` transpose an operand's last two axes first
    (attention's ``q @ k^T`` is ``MatMul(transpose_b=True)``)."""

    inputs = ("x", "other")

    def __init__(self, transpose_a: bool = False, transpose_b: bool = False) -> None:
        self.transpose_a = boolean(transpose_a, "transpose_a", "MatMul")
        self.transpose_b = boolean(transpose_b, "transpose_b", "MatMul")

    def build(self, x: tuple[Spec, Spec], b) -> Spec:
        """The output: ``[..., m, n]`` of ``op(x) [..., m, k] @ op(other) [..., k, n]``; the leading
        axes must match."""
        a, o = x
        if len(a.shape) < 3 or a.shape[:-2] != o.shape[:-2] or len(a.shape) != len(o.shape):
            raise ShapeError(f"MatMul: {a.shape} @ {o.shape}: both need the same leading "
                             "(batch) axes and two matrix axes")
        m, k = a.shape[-2:][::-1] if self.transpose_a else a.shape[-2:]
        k2, n = o.shape[-2:][::-1] if self.transpose_b else o.shape[-2:]
        if k != k2:
            raise ShapeError(f"MatMul: {a.shape}{'^T' if self.transpose_a else ''} @ {o.shape}"
                             f"{'^T' if self.transpose_b else ''}: inner sizes {k} and {k2} differ")
        if a.dtype != "f32" or o.dtype != "f32":
            raise ConfigError("MatMul: operands must be f32")
        return Spec(a.shape[:-2] + (m, n))

    def _views(self, ctx) -> tuple[Any, ...]:
        def v3(t):
            return None if t is None else ctx.view(t, (prod(t.shape[:-2]),) + tuple(t.shape[-2:]))
        return v3(ctx.x), v3(ctx.other), v3(ctx.y), v3(ctx.dx), v3(ctx.dother)

    def forward(self, x, ctx):
        """A batched matrix product over the leading axes."""
        a, o, y, _, _ = _cached(ctx, "_mm", lambda: self._views(ctx))
        ctx.k.bmm(a, o, y, self.transpose_a, self.transpose_b)
        return ctx.y

    def backward(self, dy, ctx):
        """dx = dy op(other)^T and dother = op(x)^T dy, each stored transposed when its operand is."""
        a, o, y, da, do = _cached(ctx, "_mm", lambda: self._views(ctx))
        g, ta, tb, k = ctx.view(dy, tuple(y.shape)), self.transpose_a, self.transpose_b, ctx.k
        if da is not None:      # dA' = dY B'^T; stored transposed when ta
            if ta:
                k.bmm(o, g, da, tb, True)
            else:
                k.bmm(g, o, da, False, not tb)
        if do is not None:      # dB' = A'^T dY; stored transposed when tb
            if tb:
                k.bmm(g, a, do, True, ta)
            else:
                k.bmm(a, g, do, not ta, False)
        return ctx.dx
