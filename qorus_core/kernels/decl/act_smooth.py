"""Smooth exp-based activations of PyTorch's set and their backward (csrc/act_ext.c,
act_ext_impl.h): softplus (with PyTorch's beta and linear threshold) and mish, elementwise over
any shape, from x.

Formulas that do not cancel: softplus(z) = max(z, 0) + log1p(exp(-|z|)) (z = beta x), and
tanh(softplus(x)) = n / (n + 2), n = e (e + 2), e = exp(min(x, 20)), which also gives mish's
derivative without 1 - tanh^2. The C log1p is a series (csrc/act_ext.h, within 2 ulp), NumPy's
``np.log1p``; the C exp differs from NumPy's in the last bits: float tolerance.
"""

from __future__ import annotations

import numpy as np

from ...tensor import Tensor
from .act import _in
from .act_piecewise import with_edges
from .spec import FLOAT, kernel, same_size

FAMILY = "act"
_S = (7, 33)
_X = dict(x=_S, y=_S)
_XE = dict(x=with_edges(_S), y=_S)
_XD = dict(x=_S, dy=_S, dx=_S)
_XDE = dict(x=with_edges(_S), dy=_S, dx=_S)
_MISH_CLAMP = np.float32(20.0)   # tanh(softplus(x)) rounds to 1 from ~9 on; e^2x stays finite


@kernel(FAMILY, "x y:out", check=same_size,
        c="qr_softplus_f32(x, y, n, beta:f32, threshold:f32)", tol=FLOAT,
        examples=[_X, _XE, {**_XE, "beta": 2.0, "threshold": 5.0},
                  {**_XE, "beta": 0.5, "threshold": 30.0}])
def softplus(self, x: Tensor, y: Tensor, beta: float = 1.0, threshold: float = 20.0) -> None:
    """y = beta x > threshold ? x : log(1 + exp(beta x)) / beta."""
    b, thr = np.float32(beta), np.float32(threshold)
    Y = y.w
    X = _in(x, y.shape)
    z, t = self.scratch("softplus_z", y.shape), self.scratch("softplus_t", y.shape)
    m = self.scratch("softplus_m", y.shape, np.bool_)
    with np.errstate(over="ignore"):
        np.multiply(X, b, out=z)
    np.greater(z, thr, out=m)
    np.logical_not(m, out=m)                 # where the log form is taken (NaN included)
    np.abs(z, out=t)
    np.negative(t, out=t)
    np.exp(t, out=t)
    np.log1p(t, out=t)
    np.maximum(z, np.float32(0.0), out=z)
    np.add(z, t, out=t)
    np.copyto(Y, X)                          # y may be x
    np.divide(t, b, out=Y, where=m)


@kernel(FAMILY, "x dy dx:out", check=same_size,
        c="qr_softplus_bwd_f32(x, dy, dx, n, beta:f32, threshold:f32)", tol=FLOAT,
        examples=[_XD, _XDE, {**_XDE, "beta": 2.0, "threshold": 5.0}])
def softplus_bwd(self, x: Tensor, dy: Tensor, dx: Tensor, beta: float = 1.0,
                 threshold: float = 20.0) -> None:
    """dx = beta x > threshold ? dy : dy * e / (e + 1), e = exp(beta x)."""
    b, thr = np.float32(beta), np.float32(threshold)
    DX = dx.w
    z, e = self.scratch("softplus_z", dx.shape), self.scratch("softplus_t", dx.shape)
    m = self.scratch("softplus_m", dx.shape, np.bool_)
    with np.errstate(over="ignore", invalid="ignore"):   # inf / inf where dy is taken
        np.multiply(_in(x, dx.shape), b, out=z)
        np.greater(z, thr, out=m)
        np.logical_not(m, out=m)
        np.exp(z, out=e)
        np.add(e, np.float32(1.0), out=z)
        np.divide(e, z, out=e)
    np.copyto(DX, _in(dy, dx.shape))         # dx may be dy
    np.multiply(DX, e, out=DX, where=m)


@kernel(FAMILY, "x y:out", check=same_size, c="qr_mish_f32(x, y, n)", tol=FLOAT,
        examples=[_X, _XE])
def mish(self, x: Tensor, y: Tensor) -> None:
    """y = x * tanh(softplus(x)) = x * n / (n + 2), n = e (e + 2), e = exp(min(x, 20))."""
    Y = y.w
    X = _in(x, y.shape)
    e, n = self.scratch("mish_e", y.shape), self.scratch("mish_n", y.shape)
    np.minimum(X, _MISH_CLAMP, out=e)
    np.exp(e, out=e)
    np.add(e, np.float32(2.0), out=n)
    np.multiply(e, n, out=n)
    np.add(n, np.float32(2.0), out=e)
    np.divide(n, e, out=n)
    np.multiply(X, n, out=Y)


@kernel(FAMILY, "x dy dx:out", check=same_size, c="qr_mish_bwd_f32(x, dy, dx, n)", tol=FLOAT,
        examples=[_XD, _XDE])
def mish_bwd(self, x: Tensor, dy: Tensor, dx: Tensor) -> None:
    """dx = dy * (t + xc * 4 e (e + 1) / d^2), t = n / d, d = n + 2, xc = min(x, 20)
    (= dy * (t + x sigmoid(x) (1 - t^2)), t = tanh(softplus(x)))."""
    DX = dx.w
    shape = dx.shape
    xc, e = self.scratch("mish_x", shape), self.scratch("mish_e", shape)
    n, d, q = self.scratch("mish_n", shape), self.scratch("mish_d", shape), \
        self.scratch("mish_q", shape)
    np.minimum(_in(x, shape), _MISH_CLAMP, out=xc)
    np.exp(xc, out=e)
    np.add(e, np.float32(2.0), out=n)
    np.multiply(e, n, out=n)                 # n
    np.add(n, np.float32(2.0), out=d)        # d
    np.add(e, np.float32(1.0), out=q)
    np.multiply(e, np.float32(4.0), out=e)
    np.multiply(e, q, out=q)                 # 4 e (e + 1)
    np.divide(n, d, out=n)                   # t
    np.multiply(d, d, out=d)
    np.divide(q, d, out=q)
    np.multiply(xc, q, out=q)
    np.add(n, q, out=q)
    np.multiply(_in(dy, shape), q, out=DX)
