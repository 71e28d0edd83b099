"""Activations and their backward (csrc/act.c, vec_impl.h): elementwise over any shape.

The NumPy implementations follow the C kernels' float32 operation order; the exp-based ones
(GELU, sigmoid, SiLU, tanh) differ in the last bits (the C exp is a polynomial).
"""

from __future__ import annotations

import math

import numpy as np

from ...tensor import Tensor
from .spec import EXACT, FLOAT, kernel, same_size

FAMILY = "act"
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_X = [dict(x=(7, 33), y=(7, 33))]
_XD = [dict(x=(7, 33), dy=(7, 33), dx=(7, 33))]
_YD = [dict(y=((7, 33), -0.99, 0.99), dy=(7, 33), dx=(7, 33))]


def _in(t: Tensor, shape: tuple[int, ...]) -> np.ndarray:
    """Input ``t`` viewed in the output's shape (the same size: the check held it), so an
    operand of another shape is served as on the C set; no new view when they agree."""
    return t.a if t.shape == shape else t.a.reshape(shape)


@kernel(FAMILY, "x y:out", check=same_size, c="qr_relu_f32(x, y, n)", replay=True,
        examples=_X, tol=EXACT)
def relu(self, x: Tensor, y: Tensor) -> None:
    """y = max(x, 0)."""
    Y = y.w
    np.maximum(_in(x, y.shape), np.float32(0), out=Y)


@kernel(FAMILY, "x dy dx:out", check=same_size, c="qr_relu_bwd_f32(x, dy, dx, n)",
        examples=_XD, tol=EXACT)
def relu_bwd(self, x: Tensor, dy: Tensor, dx: Tensor) -> None:
    """dx = dy * (x > 0)."""
    DX = dx.w
    mask = self.scratch("relu", dx.shape, np.bool_)
    np.greater(_in(x, dx.shape), 0, out=mask)
    np.multiply(_in(dy, dx.shape), mask, out=DX)


@kernel(FAMILY, "x y:out", check=same_size, c="qr_gelu_f32(x, y, n, approximate:bool)",
        replay=True, examples=[dict(x=(7, 33), y=(7, 33), approximate=False),
                               dict(x=(7, 33), y=(7, 33), approximate=True)], tol=FLOAT)
def gelu(self, x: Tensor, y: Tensor, approximate: bool = False) -> None:
    """y = x * Phi(x) (exact, erf) or the tanh approximation."""
    Y = y.w
    X, t = _in(x, y.shape), self.scratch("gelu", y.shape)
    if approximate:   # x * sigmoid(2u): 0.5 (1 + tanh u) = 1 / (1 + exp(-2u))
        np.multiply(X, X, out=t)
        np.multiply(t, np.float32(0.044715), out=t)
        np.add(t, np.float32(1.0), out=t)
        np.multiply(t, X, out=t)
        np.multiply(t, np.float32(-2.0 * _SQRT_2_OVER_PI), out=t)
        with np.errstate(over="ignore"):                     # x -> -inf: exp -> inf
            np.exp(t, out=t)
        np.add(t, np.float32(1.0), out=t)
        np.divide(np.float32(1.0), t, out=t)
        np.multiply(X, t, out=Y)
        return
    np.multiply(X, np.float32(_INV_SQRT2), out=t)
    self._erf(t, t)
    np.add(t, np.float32(1.0), out=t)
    np.multiply(t, np.float32(0.5), out=t)
    np.multiply(X, t, out=Y)


@kernel(FAMILY, "x dy dx:out", check=same_size,
        c="qr_gelu_bwd_f32(x, dy, dx, n, approximate:bool)",
        examples=[dict(x=(7, 33), dy=(7, 33), dx=(7, 33), approximate=False),
                  dict(x=(7, 33), dy=(7, 33), dx=(7, 33), approximate=True)], tol=FLOAT)
def gelu_bwd(self, x: Tensor, dy: Tensor, dx: Tensor, approximate: bool = False) -> None:
    """dx = dy * d/dx gelu(x)."""
    DX = dx.w
    X, DY = _in(x, dx.shape), _in(dy, dx.shape)
    cdf = self.scratch("gelu_cdf", dx.shape)
    pdf = self.scratch("gelu_pdf", dx.shape)
    if approximate:   # d/dx x s(2u) = s + x s (1 - s) 2u', s = 1 / (1 + exp(-2u))
        np.multiply(X, X, out=pdf)
        np.multiply(pdf, np.float32(0.044715), out=pdf)          # pdf holds 0.044715 x^2
        np.add(pdf, np.float32(1.0), out=cdf)
        np.multiply(cdf, X, out=cdf)
        np.multiply(cdf, np.float32(-2.0 * _SQRT_2_OVER_PI), out=cdf)
        with np.errstate(over="ignore"):
            np.exp(cdf, out=cdf)
        np.add(cdf, np.float32(1.0), out=cdf)
        np.divide(np.float32(1.0), cdf, out=cdf)                 # cdf holds s
        np.multiply(pdf, np.float32(3.0), out=pdf)
        np.add(pdf, np.float32(1.0), out=pdf)
        np.multiply(pdf, np.float32(2.0 * _SQRT_2_OVER_PI), out=pdf)   # pdf holds 2u'
        u = self.scratch("gelu_u", dx.shape)
        np.subtract(np.float32(1.0), cdf, out=u)
        np.multiply(u, cdf, out=u)
        np.multiply(u, pdf, out=u)
        np.multiply(u, X, out=u)
        np.add(cdf, u, out=cdf)
        np.multiply(DY, cdf, out=DX)
        return
    np.multiply(X, np.float32(_INV_SQRT2), out=cdf)
    self._erf(cdf, cdf)
    np.add(cdf, np.float32(1.0), out=cdf)
    np.multiply(cdf, np.float32(0.5), out=cdf)                 # Phi(x)
    np.multiply(X, X, out=pdf)
    np.multiply(pdf, np.float32(-0.5), out=pdf)
    np.exp(pdf, out=pdf)
    np.multiply(pdf, np.float32(1.0 / math.sqrt(2.0 * math.pi)), out=pdf)  # phi(x)
    np.multiply(pdf, X, out=pdf)
    np.add(cdf, pdf, out=cdf)
    np.multiply(DY, cdf, out=DX)


@kernel(FAMILY, "x y:out", check=same_size, c="qr_sigmoid_f32(x, y, n)", examples=_X,
        tol=FLOAT)
def sigmoid(self, x: Tensor, y: Tensor) -> None:
    """y = 1 / (1 + exp(-x)), stable for large |x|."""
    Y = y.w
    np.negative(_in(x, y.shape), out=Y)
    np.exp(Y, out=Y)
    np.add(Y, np.float32(1.0), out=Y)
    np.reciprocal(Y, out=Y)


@kernel(FAMILY, "y dy dx:out", check=same_size, c="qr_sigmoid_bwd_f32(y, dy, dx, n)",
        examples=_YD, tol=EXACT)
def sigmoid_bwd(self, y: Tensor, dy: Tensor, dx: Tensor) -> None:
    """dx = dy * y * (1 - y)."""
    DX = dx.w
    Y, t = _in(y, dx.shape), self.scratch("sigmoid", dx.shape)
    np.subtract(np.float32(1.0), Y, out=t)
    np.multiply(t, Y, out=t)
    np.multiply(_in(dy, dx.shape), t, out=DX)


@kernel(FAMILY, "x y:out", check=same_size, c="qr_silu_f32(x, y, n)", replay=True,
        examples=_X, tol=FLOAT)
def silu(self, x: Tensor, y: Tensor) -> None:
    """y = x * sigmoid(x)."""
    Y = y.w
    X, s = _in(x, y.shape), self.scratch("silu", y.shape)
    np.negative(X, out=s)
    np.exp(s, out=s)
    np.add(s, np.float32(1.0), out=s)
    np.divide(X, s, out=Y)


@kernel(FAMILY, "x dy dx:out", check=same_size, c="qr_silu_bwd_f32(x, dy, dx, n)",
        examples=_XD, tol=FLOAT)
def silu_bwd(self, x: Tensor, dy: Tensor, dx: Tensor) -> None:
    """dx = dy * s * (1 + x * (1 - s)), s = sigmoid(x)."""
    DX = dx.w
    X = _in(x, dx.shape)
    s = self.scratch("silu", dx.shape)
    t = self.scratch("silu_t", dx.shape)
    np.negative(X, out=s)
    np.exp(s, out=s)
    np.add(s, np.float32(1.0), out=s)
    np.reciprocal(s, out=s)
    np.subtract(np.float32(1.0), s, out=t)
    np.multiply(t, X, out=t)
    np.add(t, np.float32(1.0), out=t)
    np.multiply(t, s, out=t)
    np.multiply(_in(dy, dx.shape), t, out=DX)


@kernel(FAMILY, "x y:out", check=same_size, c="qr_tanh_f32(x, y, n)", examples=_X, tol=FLOAT)
def tanh(self, x: Tensor, y: Tensor) -> None:
    """y = tanh(x)."""
    Y = y.w
    np.tanh(_in(x, y.shape), out=Y)


@kernel(FAMILY, "y dy dx:out", check=same_size, c="qr_tanh_bwd_f32(y, dy, dx, n)",
        examples=_YD, tol=EXACT)
def tanh_bwd(self, y: Tensor, dy: Tensor, dx: Tensor) -> None:
    """dx = dy * (1 - y^2)."""
    DX = dx.w
    Y, t = _in(y, dx.shape), self.scratch("tanh", dx.shape)
    np.multiply(Y, Y, out=t)
    np.subtract(np.float32(1.0), t, out=t)
    np.multiply(_in(dy, dx.shape), t, out=DX)
