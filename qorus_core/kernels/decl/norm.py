"""Row-wise kernels (csrc/norm.c, vec_impl.h): softmax, LayerNorm, RMSNorm and their backward.

Each row is the last dimension of its tensor; mean, rstd are one value per row.
"""

from __future__ import annotations

import numpy as np

from ...tensor import Tensor
from .spec import Fit, kernel, same_rows

FAMILY = "norm"


def _fits_x(like: str, per_col: str, per_row: str) -> Fit:
    """The check of a row-wise kernel over x [rows, n]: each of ``like`` (names) shaped as
    x (its size and last dimension), ``per_col`` of n values, ``per_row`` of rows."""
    slash = lambda names: "/".join(names.split())  # noqa: E731
    return Fit({"rows": "x.rows", "n": "x.cols"},
               {like: "{t}.size == x.size and {t}.cols == n", per_col: "{t}.size == n",
                per_row: "{t}.size == rows"},
               f"do not fit: {slash(like)} like x, {slash(per_col)} of {{n}}, "
               f"{slash(per_row)} of {{rows}}")


def _rstd(self, key: str, X: np.ndarray, rs: np.ndarray, eps: float) -> None:
    """rs [rows, 1] = 1 / sqrt(mean(X^2) + eps) per row (X centred, for LayerNorm)."""
    t = self.scratch(key, X.shape)
    np.multiply(X, X, out=t)
    np.mean(t, axis=1, keepdims=True, out=rs)
    np.add(rs, np.float32(eps), out=rs)
    np.sqrt(rs, out=rs)
    np.reciprocal(rs, out=rs)


@kernel(FAMILY, "x y:out", check=same_rows, c="qr_softmax_f32(x, y, rows, n)",
        examples=[dict(x=(5, 16), y=(5, 16)), dict(x=(2, 3, 40), y=(6, 40))])
def softmax(self, x: Tensor, y: Tensor) -> None:
    """y[r, :] = softmax(x[r, :]) over the last dimension."""
    X, Y = self._m(x), self._mw(y)
    mx = self.scratch("softmax_r", (x.rows, 1))
    np.max(X, axis=1, keepdims=True, out=mx)
    np.subtract(X, mx, out=Y)
    np.exp(Y, out=Y)
    np.sum(Y, axis=1, keepdims=True, out=mx)
    np.divide(Y, mx, out=Y)


@kernel(FAMILY, "y dy dx:out", check=same_rows, c="qr_softmax_bwd_f32(y, dy, dx, rows, n)",
        examples=[dict(y=((5, 16), 0.0, 0.2), dy=(5, 16), dx=(5, 16))])
def softmax_bwd(self, y: Tensor, dy: Tensor, dx: Tensor) -> None:
    """dx = y * (dy - sum(dy * y)) row-wise."""
    Y, DY, DX = self._m(y), self._m(dy), self._mw(dx)
    t = self.scratch("softmax_t", Y.shape)
    s = self.scratch("softmax_r", (y.rows, 1))
    np.multiply(DY, Y, out=t)
    np.sum(t, axis=1, keepdims=True, out=s)
    np.subtract(DY, s, out=t)
    np.multiply(t, Y, out=DX)


# ----------------------------------------------------------------------------- layernorm
_LN = dict(x=(5, 16), gamma=(16,), beta=(16,), y=(5, 16), mean=(5,), rstd=(5,), eps=1e-5)


@kernel(FAMILY, "x gamma? beta? y:out mean:out rstd:out",
        check=_fits_x("y", "gamma beta", "mean rstd"),
        c="qr_layernorm_f32(x, gamma, beta, y, mean, rstd, rows, n, eps:f32)", replay=True,
        examples=[_LN, {**_LN, "gamma": None, "beta": None}, {**_LN, "beta": None},
                  {**_LN, "gamma": None, "x": (3, 2, 300), "y": (6, 300), "mean": (6,),
                   "rstd": (6,), "beta": (300,)}])
def layernorm(self, x: Tensor, gamma: Tensor | None, beta: Tensor | None, y: Tensor,
              mean: Tensor, rstd: Tensor, eps: float) -> None:
    """y = (x - mean) * rstd * gamma + beta per row; saves mean and rstd (rows,). gamma /
    beta None: 1 / 0 (no affine; PyTorch's elementwise_affine=False, bias=False)."""
    X, Y = self._m(x), self._mw(y)
    mu = mean.w.reshape(-1, 1)
    rs = rstd.w.reshape(-1, 1)
    np.mean(X, axis=1, keepdims=True, out=mu)
    np.subtract(X, mu, out=Y)
    _rstd(self, "ln_t", Y, rs, eps)
    np.multiply(Y, rs, out=Y)
    if gamma is not None:
        np.multiply(Y, gamma.a.reshape(-1), out=Y)
    if beta is not None:
        np.add(Y, beta.a.reshape(-1), out=Y)


_LNB = dict(x=(5, 16), gamma=(16,), mean=(5,), rstd=((5,), 0.5, 2.0), dy=(5, 16), dx=(5, 16),
            dgamma=(16,), dbeta=(16,))


@kernel(FAMILY, "x gamma? mean rstd dy dx:out? dgamma:inout? dbeta:inout?",
        check=_fits_x("dy dx", "gamma dgamma dbeta", "mean rstd"),
        c="qr_layernorm_bwd_f32(x, gamma, mean, rstd, dy, dx, dgamma, dbeta, rows, n)",
        examples=[_LNB, {**_LNB, "dx": None},
                  {**_LNB, "gamma": None, "dgamma": None, "dbeta": None},
                  {**_LNB, "dbeta": None}], tol=(1e-5, 1e-5))
def layernorm_bwd(self, x: Tensor, gamma: Tensor | None, mean: Tensor, rstd: Tensor,
                  dy: Tensor, dx: Tensor | None, dgamma: Tensor | None,
                  dbeta: Tensor | None) -> None:
    """LayerNorm backward: dx written (if given); dgamma, dbeta accumulated (+=) where given.
    gamma None: 1 (no affine)."""
    X, DY = self._m(x), self._m(dy)
    DX = None if dx is None else self._mw(dx)       # every output's .w first: a read-only
    dg = None if dgamma is None else dgamma.w.reshape(-1)   # one is refused before any write
    db = None if dbeta is None else dbeta.w.reshape(-1)
    mu = mean.a.reshape(-1, 1)
    rs = rstd.a.reshape(-1, 1)
    xhat = self.scratch("ln_xhat", X.shape)
    g = self.scratch("ln_g", X.shape)
    col = self.scratch("ln_col", (x.cols,))
    r = self.scratch("ln_r", (x.rows, 1))
    np.subtract(X, mu, out=xhat)
    np.multiply(xhat, rs, out=xhat)
    if dg is not None:
        np.multiply(DY, xhat, out=g)
        np.sum(g, axis=0, out=col)
        np.add(dg, col, out=dg)
    if db is not None:
        np.sum(DY, axis=0, out=col)
        np.add(db, col, out=db)
    if DX is None:
        return
    if gamma is None:
        np.copyto(g, DY)
    else:
        np.multiply(DY, gamma.a.reshape(-1), out=g)      # g = dxhat
    # dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
    np.mean(g, axis=1, keepdims=True, out=r)
    np.subtract(g, r, out=DX)
    np.multiply(g, xhat, out=g)
    np.mean(g, axis=1, keepdims=True, out=r)
    np.multiply(xhat, r, out=xhat)
    np.subtract(DX, xhat, out=DX)
    np.multiply(DX, rs, out=DX)


# ----------------------------------------------------------------------------- rmsnorm
@kernel(FAMILY, "x weight y:out rstd:out", check=_fits_x("y", "weight", "rstd"),
        c="qr_rmsnorm_f32(x, weight, y, rstd, rows, n, eps:f32)", replay=True,
        examples=[dict(x=(5, 16), weight=(16,), y=(5, 16), rstd=(5,), eps=1e-6)])
def rmsnorm(self, x: Tensor, weight: Tensor, y: Tensor, rstd: Tensor, eps: float) -> None:
    """y = x * rstd * weight per row, rstd = 1/sqrt(mean(x^2) + eps) saved (rows,)."""
    X, Y = self._m(x), self._mw(y)
    rs = rstd.w.reshape(-1, 1)
    _rstd(self, "rms_t", X, rs, eps)
    np.multiply(X, rs, out=Y)
    np.multiply(Y, weight.a.reshape(-1), out=Y)


_RMB = dict(x=(5, 16), weight=(16,), rstd=((5,), 0.5, 2.0), dy=(5, 16), dx=(5, 16),
            dweight=(16,))


@kernel(FAMILY, "x weight rstd dy dx:out? dweight:inout",
        check=_fits_x("dy dx", "weight dweight", "rstd"),
        c="qr_rmsnorm_bwd_f32(x, weight, rstd, dy, dx, dweight, rows, n)",
        examples=[_RMB, {**_RMB, "dx": None}], tol=(1e-5, 1e-5))
def rmsnorm_bwd(self, x: Tensor, weight: Tensor, rstd: Tensor, dy: Tensor, dx: Tensor | None,
                dweight: Tensor) -> None:
    """RMSNorm backward: dx written (if given); dweight accumulated (+=)."""
    X, DY = self._m(x), self._m(dy)
    DX, dw = None if dx is None else self._mw(dx), dweight.w.reshape(-1)
    rs = rstd.a.reshape(-1, 1)
    xhat = self.scratch("rms_xhat", X.shape)
    g = self.scratch("rms_g", X.shape)
    col = self.scratch("rms_col", (x.cols,))
    r = self.scratch("rms_r", (x.rows, 1))
    np.multiply(X, rs, out=xhat)
    np.multiply(DY, xhat, out=g)
    np.sum(g, axis=0, out=col)
    np.add(dw, col, out=dw)
    if DX is None:
        return
    np.multiply(DY, weight.a.reshape(-1), out=g)         # g = d xhat
    np.multiply(g, xhat, out=DX)
    np.mean(DX, axis=1, keepdims=True, out=r)
    np.multiply(xhat, r, out=xhat)
    np.subtract(g, xhat, out=DX)
    np.multiply(DX, rs, out=DX)
