"""Graph ops that rearrange data: reshape, squeeze and unsqueeze (views of their input: no
copy, no backward work), permute and transpose, concat and stack, split and chunk, slice.
The copies are ``k.strided_copy`` calls whose layouts (shape, offsets, element strides) are
worked out once per plan, on the first call, and kept on the layer's ctx."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError, ShapeError
from ..layer import Layer
from ..tensor import Spec
from ..validate import integer, positive_int
from .layout import axis_of, check_int_tuple, prod, strides


def _cached(ctx, key: str, make):
    """``make()`` once per ctx (per plan): a layer's layout for that plan's shapes."""
    v = ctx.__dict__.get(key)
    if v is None:
        v = ctx.__dict__[key] = make()
    return v


class Reshape(Layer):
    """A view of x with per-example ``shape`` (the batch dimension kept; one -1 allowed)."""

    replayable = True

    def __init__(self, shape: list[int] | tuple[int, ...]) -> None:
        shape = check_int_tuple(shape, "shape", "Reshape")
        if sum(d == -1 for d in shape) > 1 or any(d == 0 or d < -1 for d in shape):
            raise ConfigError(f"Reshape: shape {list(shape)} must be positive ints and at most "
                              "one -1")
        self.shape = list(shape)

    def build(self, x: Spec, b) -> Spec:
        """A view of the input with the per-example ``shape`` (one ``-1`` inferred)."""
        n = prod(x.shape[1:])
        known = prod([d for d in self.shape if d != -1])
        want = [n // known if d == -1 else d for d in self.shape]
        if prod(want) != n:
            raise ShapeError(f"Reshape: cannot view per-example shape {x.shape[1:]} as "
                             f"{tuple(self.shape)}")
        return b.view_input((x.shape[0], *want))

    def forward(self, x, ctx):
        """Nothing to compute: the output is a view of the input."""
        return ctx.y

    def backward(self, dy, ctx):
        """Nothing to compute: dx is a view of dy."""
        return ctx.dx


class Squeeze(Layer):
    """A view of x without its size-1 ``axis`` (axes count batch first)."""

    replayable = True

    def __init__(self, axis: int) -> None:
        self.axis = integer(axis, "axis", "Squeeze")

    def build(self, x: Spec, b) -> Spec:
        """A view of the input without its size-1 ``axis``."""
        a = axis_of(self.axis, len(x.shape), "Squeeze")
        if x.shape[a] != 1:
            raise ShapeError(f"Squeeze: axis {self.axis} of {x.shape} has size {x.shape[a]}, not 1")
        return b.view_input(x.shape[:a] + x.shape[a + 1:])

    forward, backward = Reshape.forward, Reshape.backward


class Unsqueeze(Layer):
    """A view of x with a new size-1 axis at ``axis`` (of the result; batch first)."""

    replayable = True

    def __init__(self, axis: int) -> None:
        self.axis = integer(axis, "axis", "Unsqueeze")

    def build(self, x: Spec, b) -> Spec:
        """A view of the input with a size-1 axis inserted at ``axis``."""
        a = axis_of(self.axis, len(x.shape) + 1, "Unsqueeze")
        return b.view_input(x.shape[:a] + (1,) + x.shape[a:])

    forward, backward = Reshape.forward, Reshape.backward


class Permute(Layer):
    """y = x with its axes reordered: ``dims`` a permutation of all axes with 0 (batch) first."""

    def __init__(self, dims: list[int] | tuple[int, ...]) -> None:
        self.dims = list(check_int_tuple(dims, "dims", "Permute"))

    def _order(self, nd: int) -> list[int]:
        """The permutation for a tensor of ``nd`` axes, checked."""
        dims = [d + nd if d < 0 else d for d in self.dims]
        if sorted(dims) != list(range(nd)):
            raise ShapeError(f"Permute: dims {self.dims} are not a permutation of {nd} axes")
        if dims[0] != 0:
            raise ShapeError(f"Permute: dims {self.dims} move the batch axis 0")
        return dims

    def build(self, x: Spec, b) -> Spec:
        """The output: the input's axes in ``dims`` order."""
        return Spec(tuple(x.shape[d] for d in self._order(len(x.shape))), x.dtype)

    def _layout(self, ctx) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(y's shape, x's strides in y's axis order, y's strides)."""
        xs = strides(ctx.x.shape)
        return (tuple(ctx.y.shape), tuple(xs[d] for d in self._order(len(ctx.x.shape))),
                strides(ctx.y.shape))

    def forward(self, x, ctx):
        """A strided copy of x into the new axis order."""
        shape, xs, ys = _cached(ctx, "_perm", lambda: self._layout(ctx))
        ctx.k.strided_copy(x, ctx.y, shape, 0, xs, 0, ys)
        return ctx.y

    def backward(self, dy, ctx):
        """dy copied back into x's axis order."""
        if ctx.dx is not None:
            shape, xs, ys = _cached(ctx, "_perm", lambda: self._layout(ctx))
            ctx.k.strided_copy(dy, ctx.dx, shape, 0, ys, 0, xs)
        return ctx.dx


class Transpose(Permute):
    """Swap axes ``dim0`` and ``dim1`` (PyTorch's ``transpose``; not the batch axis)."""

    def __init__(self, dim0: int, dim1: int) -> None:
        self.dim0 = integer(dim0, "dim0", "Transpose")
        self.dim1 = integer(dim1, "dim1", "Transpose")

    def _order(self, nd: int) -> list[int]:
        a, c = axis_of(self.dim0, nd, "Transpose"), axis_of(self.dim1, nd, "Transpose")
        dims = list(range(nd))
        dims[a], dims[c] = c, a
        return dims


def _pieces(pieces, whole, axis: int, where: str) -> list[tuple[Any, ...]]:
    """Pieces laid end to end along ``axis`` of ``whole`` (a concat's inputs, a split's
    outputs): per piece (its shape, its strides, its element offset in whole, whole's strides)."""
    a = axis_of(axis, len(whole.shape), where)
    ws, out, at = strides(whole.shape), [], 0
    for t in pieces:
        out.append((tuple(t.shape), strides(t.shape), at * ws[a], ws))
        at += t.shape[a]
    return out


class Concat(Layer):
    """y = the inputs joined along ``axis`` (all other axes equal); backward slices dy."""

    inputs = ("xs*",)

    def __init__(self, axis: int = -1) -> None:
        self.axis = integer(axis, "axis", "Concat")

    def build(self, x: tuple[Spec, ...], b) -> Spec:
        """The output: the inputs joined along ``axis``; every other axis and the dtype must agree."""
        first = x[0]
        a = axis_of(self.axis, len(first.shape), "Concat")
        for i, s in enumerate(x):
            if s is None:
                raise ConfigError(f"Concat: input {i} is missing")
            if s.dtype != first.dtype or len(s.shape) != len(first.shape) or any(
                    d != e for j, (d, e) in enumerate(zip(s.shape, first.shape)) if j != a):
                raise ShapeError(f"Concat along axis {self.axis}: input {i} {s.shape} {s.dtype} "
                                 f"does not fit input 0 {first.shape} {first.dtype}")
        return Spec(first.shape[:a] + (sum(s.shape[a] for s in x),) + first.shape[a + 1:],
                    first.dtype)

    def _layout(self, ctx) -> list[tuple[Any, ...]]:
        """Per input: (its shape, its strides, its offset in y, y's strides)."""
        return _pieces(ctx.xs, ctx.y, self.axis, "Concat")

    def forward(self, x, ctx):
        """Each input copied into its stretch of the output."""
        k, y = ctx.k, ctx.y
        for t, (shape, ts, off, ys) in zip(ctx.xs, _cached(ctx, "_cat", lambda: self._layout(ctx))):
            k.strided_copy(t, y, shape, 0, ts, off, ys)
        return y

    def backward(self, dy, ctx):
        """Each input's stretch of dy copied to its gradient."""
        k = ctx.k
        for d, (shape, ts, off, ys) in zip(ctx.dxs, _cached(ctx, "_cat", lambda: self._layout(ctx))):
            if d is not None:
                k.strided_copy(dy, d, shape, off, ys, 0, ts)
        return ctx.dx


class Stack(Concat):
    """y = the inputs (all one shape) stacked along a new ``axis`` of the result."""

    def build(self, x: tuple[Spec, ...], b) -> Spec:
        """The output: the inputs, all of one shape, stacked along a new ``axis``."""
        first = x[0]
        a = axis_of(self.axis, len(first.shape) + 1, "Stack")
        for i, s in enumerate(x):
            if s is None or s != first:
                raise ShapeError(f"Stack: input {i} {s} differs from input 0 {first}")
        return Spec(first.shape[:a] + (len(x),) + first.shape[a:], first.dtype)

    def _layout(self, ctx) -> list[tuple[Any, ...]]:
        a = axis_of(self.axis, len(ctx.y.shape), "Stack")
        ys = strides(ctx.y.shape)
        shape = tuple(ctx.xs[0].shape)
        ts = strides(shape)
        ys_without = ys[:a] + ys[a + 1:]      # y's strides over an input's axes
        return [(shape, ts, i * ys[a], ys_without) for i in range(len(ctx.xs))]


class Split(Layer):
    """Several outputs: x cut along ``axis`` into pieces of ``sizes`` (which sum to its
    extent), or into ``sections`` equal pieces (PyTorch's ``split`` / ``chunk``)."""

    def __init__(self, sizes: list[int] | None = None, sections: int | None = None,
                 axis: int = -1) -> None:
        if (sizes is None) == (sections is None):
            raise ConfigError("Split: give exactly one of sizes (a list) and sections (an int)")
        self.sizes = None if sizes is None else [positive_int(s, "sizes", "Split") for s in
                                                 check_int_tuple(sizes, "sizes", "Split")]
        self.sections = None if sections is None else positive_int(sections, "sections", "Split")
        self.axis = integer(axis, "axis", "Split")

    def _sizes(self, n: int) -> list[int]:
        if self.sizes is not None:
            if sum(self.sizes) != n:
                raise ShapeError(f"Split: sizes {self.sizes} sum to {sum(self.sizes)}, the axis "
                                 f"has {n}")
            return list(self.sizes)
        if n % self.sections:
            raise ShapeError(f"Split: {n} does not split into {self.sections} equal sections")
        return [n // self.sections] * self.sections

    def build(self, x: Spec, b) -> tuple[Spec, ...]:
        """One output per size in ``sizes`` (or per equal section), along ``axis``."""
        a = axis_of(self.axis, len(x.shape), "Split")
        return tuple(Spec(x.shape[:a] + (s,) + x.shape[a + 1:], x.dtype)
                     for s in self._sizes(x.shape[a]))

    def _layout(self, ctx) -> list[tuple[Any, ...]]:
        """Per output: (its shape, its strides, its offset in x, x's strides)."""
        return _pieces(ctx.ys, ctx.x, self.axis, "Split")

    def forward(self, x, ctx):
        """Each piece of x copied to its output."""
        k = ctx.k
        for t, (shape, ts, off, xs) in zip(ctx.ys, _cached(ctx, "_split", lambda: self._layout(ctx))):
            k.strided_copy(x, t, shape, off, xs, 0, ts)
        return ctx.y

    def backward(self, dy, ctx):
        """Each output's gradient copied into its piece of dx."""
        if ctx.dx is not None:
            k = ctx.k
            for d, (shape, ts, off, xs) in zip(ctx.dys, _cached(ctx, "_split",
                                                                lambda: self._layout(ctx))):
                k.strided_copy(d, ctx.dx, shape, 0, ts, off, xs)
        return ctx.dx


class Slice(Layer):
    """y = x[..., start:stop:step, ...] along ``axis`` (PyTorch's slicing and ``narrow``;
    negative start/stop count from the end, stop None: to the end)."""

    def __init__(self, axis: int, start: int = 0, stop: int | None = None, step: int = 1) -> None:
        self.axis = integer(axis, "axis", "Slice")
        self.start = integer(start, "start", "Slice")
        self.stop = None if stop is None else integer(stop, "stop", "Slice")
        self.step = positive_int(step, "step", "Slice")

    def build(self, x: Spec, b) -> Spec:
        """The output: ``start:stop:step`` of ``axis``; ShapeError when it is empty."""
        a = axis_of(self.axis, len(x.shape), "Slice")
        n = len(range(*slice(self.start, self.stop, self.step).indices(x.shape[a])))
        if n == 0:
            raise ShapeError(f"Slice {self.start}:{self.stop}:{self.step} of axis {self.axis} "
                             f"(size {x.shape[a]}) is empty")
        return Spec(x.shape[:a] + (n,) + x.shape[a + 1:], x.dtype)

    def _layout(self, ctx) -> tuple[Any, ...]:
        a = axis_of(self.axis, len(ctx.x.shape), "Slice")
        xs = strides(ctx.x.shape)
        first = slice(self.start, self.stop, self.step).indices(ctx.x.shape[a])[0]
        src = xs[:a] + (xs[a] * self.step,) + xs[a + 1:]
        return tuple(ctx.y.shape), first * xs[a], src, strides(ctx.y.shape)

    def forward(self, x, ctx):
        """The slice of x, copied."""
        shape, off, src, ys = _cached(ctx, "_slice", lambda: self._layout(ctx))
        ctx.k.strided_copy(x, ctx.y, shape, off, src, 0, ys)
        return ctx.y

    def backward(self, dy, ctx):
        """dx is 0 but for dy in the sliced positions."""
        if ctx.dx is not None:
            shape, off, src, ys = _cached(ctx, "_slice", lambda: self._layout(ctx))
            ctx.k.fill(ctx.dx, 0.0)
            ctx.k.strided_copy(dy, ctx.dx, shape, 0, ys, off, src)
        return ctx.dx
