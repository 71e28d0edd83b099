"""Elementwise graph ops: binary ops that broadcast like NumPy, where / masked fill, scale,
the unary primitives and stop-gradient. Same-shape operands run the flat kernels (add, sub,
mul, ...); broadcasting ones the strided family (``bcast_binary`` and its backward, which
reduces each gradient to its operand's shape)."""

from __future__ import annotations

from typing import Any, ClassVar

from ..errors import ConfigError
from ..layer import Layer
from ..tensor import Spec
from ..validate import real
from .layout import broadcast

#: the op code of each binary op in ``k.bcast_binary``
BINARY_CODES = {"add": 0, "sub": 1, "mul": 2, "div": 3, "maximum": 4, "minimum": 5}


class _Binary(Layer):
    """y = x OP other, broadcasting; backward into both (each reduced to its own shape)."""

    inputs = ("x", "other")
    op: ClassVar[str] = ""

    def build(self, x: tuple[Spec, Spec], b) -> Spec:
        a, o = x
        for s in (a, o):
            if s.dtype != "f32":
                raise ConfigError(f"{type(self).__name__}: operands must be f32, got {s.dtype}")
        return Spec(broadcast(type(self).__name__, a.shape, o.shape))

    def forward(self, x, ctx):
        a, o, y = x, ctx.other, ctx.y
        if a.shape == o.shape:
            self._same(ctx.k, a, o, y)
        else:
            ctx.k.bcast_binary(a, o, y, BINARY_CODES[self.op])
        return y

    def backward(self, dy, ctx):
        a, o, da, do = ctx.x, ctx.other, ctx.dx, ctx.dother
        if a.shape == o.shape:
            self._same_bwd(ctx.k, a, o, dy, da, do)
        else:
            ctx.k.bcast_binary_bwd(a, o, dy, da, do, BINARY_CODES[self.op])
        return da

    def _same(self, k, a, o, y):
        getattr(k, self.op)(a, o, y)

    def _same_bwd(self, k, a, o, dy, da, do):
        getattr(k, self.op + "_bwd")(a, o, dy, da, do)


class Add(_Binary):
    """y = x + other (broadcasting): ``b.add``, residuals, ``ops.add``."""

    op = "add"
    replayable = True   # same shapes: one kernel call

    def _same_bwd(self, k, a, o, dy, da, do):
        for d in (da, do):
            if d is not None:
                k.copy(dy, d)


class Sub(_Binary):
    """y = x - other (broadcasting)."""

    op = "sub"

    def _same_bwd(self, k, a, o, dy, da, do):
        k.sub_bwd(dy, da, do)


class Mul(_Binary):
    """y = x * other (broadcasting): gates, masks, scaling by a learned tensor."""

    op = "mul"

    def _same_bwd(self, k, a, o, dy, da, do):
        if da is not None:
            k.mul(dy, o, da)
        if do is not None:
            k.mul(dy, a, do)


class Div(_Binary):
    """y = x / other (broadcasting)."""

    op = "div"


class Maximum(_Binary):
    """y = max(x, other) elementwise (broadcasting; NaN wins; a tie splits the gradient)."""

    op = "maximum"


class Minimum(_Binary):
    """y = min(x, other) elementwise (broadcasting; NaN wins; a tie splits the gradient)."""

    op = "minimum"


class Where(Layer):
    """y = x where cond else other; cond (f32 or i32, nonzero = true), x and other broadcast."""

    inputs = ("cond", "x", "other")

    def build(self, x: tuple[Spec, Spec, Spec], b) -> Spec:
        """The output: cond, x and other broadcast together (x and other float32)."""
        c, a, o = x
        if a.dtype != "f32" or o.dtype != "f32":
            raise ConfigError(f"Where: x and other must be f32, got {a.dtype} and {o.dtype}")
        return Spec(broadcast("Where", c.shape, a.shape, o.shape))

    def forward(self, x, ctx):
        """y = x where cond else other, broadcasting."""
        c, a, o = ctx.xs
        ctx.k.bcast_where(c, a, o, ctx.y)
        return ctx.y

    def backward(self, dy, ctx):
        """dy routed to dx where cond and to dother elsewhere, each summed over its broadcast axes; cond
        gets none."""
        _, da, do = ctx.dxs
        if da is not None or do is not None:
            ctx.k.bcast_where_bwd(ctx.xs[0], dy, da, do)
        return None


class MaskedFill(Layer):
    """y = value where mask else x (PyTorch's ``masked_fill``); mask broadcasts to x."""

    inputs = ("x", "mask")

    def __init__(self, value: float) -> None:
        self.value = real(value, "value", "MaskedFill", finite=False)

    def build(self, x: tuple[Spec, Spec], b) -> Spec:
        """The output: x's shape (the mask must broadcast to it); a one-value scratch holds the fill
        value."""
        a, m = x
        if a.dtype != "f32":
            raise ConfigError(f"MaskedFill: x must be f32, got {a.dtype}")
        out = broadcast("MaskedFill", a.shape, m.shape)
        if out != a.shape:
            raise ConfigError(f"MaskedFill: mask {m.shape} must broadcast to x {a.shape}")
        b.scratch("fill", (1,))
        return Spec(a.shape)

    def forward(self, x, ctx):
        """y = value where mask else x."""
        ctx.k.fill(ctx.fill, self.value)
        ctx.k.bcast_where(ctx.xs[1], ctx.fill, x, ctx.y)
        return ctx.y

    def backward(self, dy, ctx):
        """dx = dy where the mask is false, 0 where it is true."""
        if ctx.dx is not None:
            ctx.k.bcast_where_bwd(ctx.xs[1], dy, None, ctx.dx)
        return ctx.dx


class Scale(Layer):
    """y = alpha * x."""

    replayable = True

    def __init__(self, alpha: float) -> None:
        self.alpha = real(alpha, "alpha", "Scale")

    def build(self, x: Spec, b) -> Spec:
        """The output: the input's shape."""
        return x

    def forward(self, x, ctx):
        """y = alpha * x."""
        ctx.k.copy(x, ctx.y)
        ctx.k.scale(ctx.y, self.alpha)
        return ctx.y

    def backward(self, dy, ctx):
        """dx = alpha * dy."""
        if ctx.dx is not None:
            ctx.k.copy(dy, ctx.dx)
            ctx.k.scale(ctx.dx, self.alpha)
        return ctx.dx


class _Unary(Layer):
    """y = f(x) through the flat kernel ``k.<op>`` and its backward ``k.<op>_bwd``, which reads
    x or y as the kernel declares (``uses``)."""

    op: ClassVar[str] = ""
    uses: ClassVar[str] = "x"          # what the backward kernel reads: "x", "y" or ""
    replayable = True

    def build(self, x: Spec, b) -> Spec:
        if x.dtype != "f32":
            raise ConfigError(f"{type(self).__name__}: input must be f32, got {x.dtype}")
        return x

    def forward(self, x, ctx):
        getattr(ctx.k, self.op)(x, ctx.y)
        return ctx.y

    def backward(self, dy, ctx):
        if ctx.dx is not None:
            bwd: Any = getattr(ctx.k, self.op + "_bwd")
            if self.uses:
                bwd(ctx.x if self.uses == "x" else ctx.y, dy, ctx.dx)
            else:
                bwd(dy, ctx.dx)
        return ctx.dx


class Exp(_Unary):
    """y = exp(x)."""

    op, uses = "exp", "y"


class Log(_Unary):
    """y = log(x)."""

    op, uses = "log", "x"


class Sqrt(_Unary):
    """y = sqrt(x)."""

    op, uses = "sqrt", "y"


class Abs(_Unary):
    """y = |x| (gradient sign(x), 0 at 0)."""

    op, uses = "abs", "x"


class Neg(_Unary):
    """y = -x."""

    op, uses = "neg", ""


class StopGradient(Layer):
    """y = x in forward; no gradient flows back to x (PyTorch's ``detach``)."""

    replayable = True

    def build(self, x: Spec, b) -> Spec:
        """The output: the input's shape; the input takes no gradient."""
        b.no_input_grad()
        return x

    def forward(self, x, ctx):
        """y = x."""
        ctx.k.copy(x, ctx.y)
        return ctx.y

    def backward(self, dy, ctx):
        """No gradient flows back."""
        return None
