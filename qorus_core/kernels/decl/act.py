"""Activations and their backward (csrc/act.c, vec_impl.h): elementwise over any shape.

The NumPy implementations follow the portable C kernels' float32 operation order; the
exp-based ones (GELU, sigmoid, SiLU, tanh) differ in the last bits (the C exp is a
polynomial). The exact (erf) GELU and its backward on the AVX2 / AVX-512 tiers take another
formula, FMA and a piecewise-polynomial erf (csrc/qr_math.h, qr_erf_tab8/16: within 0.85 ulp
of erf on every float), so they are held to a stated bound instead: gelu / gelu_bwd of the C
set within 4 ulp + 1.7e-7 / 8.1e-8 of their NumPy twins (``GELU_TOL``, ``GELU_BWD_TOL``, the
kernel table's tol), every tier and the twins within ``GELU_BOUND`` of float64 (2 ulp for
x >= 0).
"""

from __future__ import annotations

import math

import numpy as np

from ...tensor import Tensor
from .spec import EXACT, FLOAT, kernel, same_size

FAMILY = "act"
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
#: Accuracy of the exact GELU against float64 (x Phi(x), Phi(x) + x phi(x)), every tier; ulp
#: is that of the float64 value, and for x < 0 the 1 + erf(x / sqrt 2) of the formula (the
#: NumPy twin's and torch's too) cancels, which the second term allows for:
#:   gelu:      |err| <= 2 ulp for x >= 0;  <= 1 ulp + 3.1e-8 |x| (SIMD) / 4.8e-8 |x| (portable,
#:              NumPy) for x < 0;  exactly -0 / x from |x| = 5.57 on (erf = -1 / 1)
#:   gelu_bwd:  |err| <= 2 ulp for x >= 0;  <= 6.6e-8 (SIMD) / 7.6e-8 (portable, NumPy)
#:              absolute for x < 0
#: measured on every float for the C lanes (a harness over qr_math.h, see
#: tests/test_gelu_accuracy.py, which holds each tier the CPU has and the NumPy set to it).
GELU_BOUND = {"gelu": dict(ulp=2.0, neg_x={"simd": 3.1e-8, "portable": 4.8e-8}),
              "gelu_bwd": dict(ulp=2.0, neg_abs={"simd": 6.6e-8, "portable": 7.6e-8})}
#: tol (rtol, atol) of the C set against the NumPy twin: the SIMD tiers' exact GELU within
#: 4 ulp (4.8e-7 relative) + 1.7e-7 of it for |x| <= 10 (forward; backward 8.1e-8), the two
#: bounds above added; the tanh forms (the same formula on both sets) within the same rtol
#: (forward) and 1e-6 / 6.7e-7 (backward: 1 - tanh^2 cancels, scaled by ~x^3)
GELU_TOL = (5e-7, 2.5e-7)
GELU_BWD_TOL = (1e-6, 1e-6)
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
                               dict(x=(7, 33), y=(7, 33), approximate=True)], tol=GELU_TOL)
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
                  dict(x=(7, 33), dy=(7, 33), dx=(7, 33), approximate=True)], tol=GELU_BWD_TOL)
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
