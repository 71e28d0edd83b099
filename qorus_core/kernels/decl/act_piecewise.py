"""Piecewise activations of PyTorch's set and their backward (csrc/act_ext.c, act_ext_impl.h):
leaky_relu, elu, hardswish, elementwise over any shape, from x, with PyTorch's branch
conditions (so its NaN and signed-zero behaviour: a NaN x passes dy in elu_bwd and
hardswish_bwd, elu(-0) = -0).

leaky_relu and hardswish do the same float32 operations on both sets (bit-identical); elu's C
expm1 is a polynomial near 0 and exp - 1 below (csrc/act_ext.h, within 1.4 ulp), NumPy's is
``np.expm1``, so elu is held to float tolerance.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ...tensor import Tensor
from .act import _in
from .spec import EXACT, FLOAT, kernel, same_size

FAMILY = "act"
#: the values edge examples put first in x: NaN, +-inf, +-0, subnormal, tiny, the kinks and
#: branch points (0, +-3, -ln 2, 20), exp's limits (88, -104), huge
EDGE = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e-45, 1e-30, -1e-30, 1e-7, -1e-7,
                 3.0, -3.0, 2.99, -2.99, 3.01, -3.01, -0.6931472, -0.69314718, 0.5, -0.5,
                 1.0, -1.0, 20.0, -20.0, 20.5, 10.0, -10.0, 44.0, -44.0, 88.0, -88.0, 89.0,
                 -104.0, -110.0, 1e6, -1e6, 1e30, -1e30, 3.4e38, -3.4e38], np.float32)


def with_edges(shape: tuple[int, ...], scale: float = 4.0) -> Callable[[np.random.Generator],
                                                                       np.ndarray]:
    """An example operand: normal values times ``scale``, ``EDGE`` first."""
    def make(rng: np.random.Generator) -> np.ndarray:
        x = (rng.standard_normal(shape) * scale).astype(np.float32)
        flat = x.reshape(-1)
        k = min(flat.size, EDGE.size)
        flat[:k] = EDGE[:k]
        return x
    return make


_S = (7, 33)
_X = dict(x=_S, y=_S)
_XE = dict(x=with_edges(_S), y=_S)
_XD = dict(x=_S, dy=_S, dx=_S)
_XDE = dict(x=with_edges(_S), dy=_S, dx=_S)


@kernel(FAMILY, "x y:out", check=same_size,
        c="qr_leaky_relu_f32(x, y, n, negative_slope:f32)", tol=EXACT,
        examples=[_X, {**_XE, "negative_slope": 0.2}, {**_XE, "negative_slope": -1.5}])
def leaky_relu(self, x: Tensor, y: Tensor, negative_slope: float = 0.01) -> None:
    """y = x > 0 ? x : x * negative_slope."""
    s = np.float32(negative_slope)
    Y = y.w
    X, m = _in(x, y.shape), self.scratch("leaky", y.shape, np.bool_)
    np.greater(X, 0, out=m)
    np.logical_not(m, out=m)
    np.copyto(Y, X)                          # y may be x: the masked multiply reads y
    np.multiply(Y, s, out=Y, where=m)


@kernel(FAMILY, "x dy dx:out", check=same_size,
        c="qr_leaky_relu_bwd_f32(x, dy, dx, n, negative_slope:f32)", tol=EXACT,
        examples=[_XD, {**_XDE, "negative_slope": 0.2}])
def leaky_relu_bwd(self, x: Tensor, dy: Tensor, dx: Tensor, negative_slope: float = 0.01) -> None:
    """dx = x > 0 ? dy : dy * negative_slope."""
    s = np.float32(negative_slope)
    DX = dx.w
    m = self.scratch("leaky", dx.shape, np.bool_)
    np.greater(_in(x, dx.shape), 0, out=m)
    np.logical_not(m, out=m)
    np.copyto(DX, _in(dy, dx.shape))
    np.multiply(DX, s, out=DX, where=m)


@kernel(FAMILY, "x y:out", check=same_size, c="qr_elu_f32(x, y, n, alpha:f32)", tol=FLOAT,
        examples=[_X, {**_XE, "alpha": 0.5}])
def elu(self, x: Tensor, y: Tensor, alpha: float = 1.0) -> None:
    """y = x < 0 ? alpha * expm1(x) : x."""
    a = np.float32(alpha)
    Y = y.w
    X, t = _in(x, y.shape), self.scratch("elu", y.shape)
    m = self.scratch("elu_m", y.shape, np.bool_)
    np.less(X, 0, out=m)
    np.minimum(X, 0, out=t)                  # no overflow where x is not taken
    np.expm1(t, out=t)
    np.copyto(Y, X)
    np.multiply(t, a, out=Y, where=m)


@kernel(FAMILY, "x dy dx:out", check=same_size, c="qr_elu_bwd_f32(x, dy, dx, n, alpha:f32)",
        tol=FLOAT, examples=[_XD, {**_XDE, "alpha": 0.5}])
def elu_bwd(self, x: Tensor, dy: Tensor, dx: Tensor, alpha: float = 1.0) -> None:
    """dx = x <= 0 ? dy * alpha * exp(x) : dy."""
    a = np.float32(alpha)
    DX = dx.w
    X, e = _in(x, dx.shape), self.scratch("elu", dx.shape)
    m = self.scratch("elu_m", dx.shape, np.bool_)
    np.less_equal(X, 0, out=m)
    np.minimum(X, 0, out=e)
    np.exp(e, out=e)
    np.copyto(DX, _in(dy, dx.shape))         # dx may be dy
    np.multiply(DX, a, out=DX, where=m)
    np.multiply(DX, e, out=DX, where=m)


@kernel(FAMILY, "x y:out", check=same_size, c="qr_hardswish_f32(x, y, n)", tol=EXACT,
        examples=[_X, _XE])
def hardswish(self, x: Tensor, y: Tensor) -> None:
    """y = x * min(max(x + 3, 0), 6) / 6."""
    Y = y.w
    X, t = _in(x, y.shape), self.scratch("hardswish", y.shape)
    np.add(X, np.float32(3.0), out=t)
    np.maximum(t, np.float32(0.0), out=t)
    np.minimum(t, np.float32(6.0), out=t)
    np.multiply(X, t, out=Y)
    np.divide(Y, np.float32(6.0), out=Y)


@kernel(FAMILY, "x dy dx:out", check=same_size, c="qr_hardswish_bwd_f32(x, dy, dx, n)",
        tol=EXACT, examples=[_XD, _XDE])
def hardswish_bwd(self, x: Tensor, dy: Tensor, dx: Tensor) -> None:
    """dx = x <= -3 ? 0 : x < 3 ? dy * (x / 3 + 0.5) : dy."""
    DX = dx.w
    X, t = _in(x, dx.shape), self.scratch("hardswish", dx.shape)
    m = self.scratch("hardswish_m", dx.shape, np.bool_)
    np.divide(X, np.float32(3.0), out=t)
    np.add(t, np.float32(0.5), out=t)
    np.less(X, np.float32(3.0), out=m)
    np.copyto(DX, _in(dy, dx.shape))
    np.multiply(DX, t, out=DX, where=m)
    np.less_equal(X, np.float32(-3.0), out=m)
    np.copyto(DX, np.float32(0.0), where=m)
