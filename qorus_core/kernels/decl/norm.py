"""Row-wise kernels (csrc/norm.c, vec_impl.h): softmax, LayerNorm, RMSNorm and their backward.

Each row is the last dimension of its tensor; mean, rstd are one value per row.
"""

from __future__ import annotations

import numpy as np

from ...tensor import Tensor
from .spec import kernel, same_rows, sizes_error

FAMILY = "norm"


@kernel(FAMILY, "x y:out", check=same_rows, c="qr_softmax_f32(x, y, rows, n)",
        examples=[dict(x=(5, 16), y=(5, 16)), dict(x=(2, 3, 40), y=(6, 40))])
def softmax(self, x: Tensor, y: Tensor) -> None:
    """y[r, :] = softmax(x[r, :]) over the last dimension."""
    X, Y = self._m(x), self._mw(y)
    mx = self._scratch("softmax_r", (x.rows, 1))
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
    t = self._scratch("softmax_t", Y.shape)
    s = self._scratch("softmax_r", (y.rows, 1))
    np.multiply(DY, Y, out=t)
    np.sum(t, axis=1, keepdims=True, out=s)
    np.subtract(DY, s, out=t)
    np.multiply(t, Y, out=DX)


# ----------------------------------------------------------------------------- layernorm
def check_layernorm(kernel: str, x: Tensor, gamma: Tensor, beta: Tensor, y: Tensor,
                    mean: Tensor, rstd: Tensor, eps) -> tuple[int, int]:
    n, r = x.cols, x.rows
    if y.size != x.size or y.cols != n or gamma.size != n or beta.size != n \
            or mean.size != r or rstd.size != r:
        raise sizes_error(kernel, f"do not fit: y like x, gamma/beta of {n}, mean/rstd of {r}",
                          x=x, y=y, gamma=gamma, beta=beta, mean=mean, rstd=rstd)
    return r, n


_LN = dict(x=(5, 16), gamma=(16,), beta=(16,), y=(5, 16), mean=(5,), rstd=(5,), eps=1e-5)


@kernel(FAMILY, "x gamma beta y:out mean:out rstd:out", check=check_layernorm, dims="rows n",
        c="qr_layernorm_f32(x, gamma, beta, y, mean, rstd, rows, n, eps:f32)", replay=True,
        examples=[_LN])
def layernorm(self, x: Tensor, gamma: Tensor, beta: Tensor, y: Tensor, mean: Tensor,
              rstd: Tensor, eps: float) -> None:
    """y = (x - mean) * rstd * gamma + beta per row; saves mean and rstd (rows,)."""
    X, Y = self._m(x), self._mw(y)
    mu = mean.w.reshape(-1, 1)
    rs = rstd.w.reshape(-1, 1)
    np.mean(X, axis=1, keepdims=True, out=mu)
    np.subtract(X, mu, out=Y)
    t = self._scratch("ln_t", Y.shape)
    np.multiply(Y, Y, out=t)
    np.mean(t, axis=1, keepdims=True, out=rs)
    np.add(rs, np.float32(eps), out=rs)
    np.sqrt(rs, out=rs)
    np.reciprocal(rs, out=rs)
    np.multiply(Y, rs, out=Y)
    np.multiply(Y, gamma.a.reshape(-1), out=Y)
    np.add(Y, beta.a.reshape(-1), out=Y)


def check_layernorm_bwd(kernel: str, x: Tensor, gamma: Tensor, mean: Tensor, rstd: Tensor,
                        dy: Tensor, dx: Tensor | None, dgamma: Tensor,
                        dbeta: Tensor) -> tuple[int, int]:
    n, r = x.cols, x.rows
    if dy.size != x.size or dy.cols != n or gamma.size != n or dgamma.size != n \
            or dbeta.size != n or mean.size != r or rstd.size != r \
            or (dx is not None and (dx.size != x.size or dx.cols != n)):
        raise sizes_error(kernel, f"do not fit: dy/dx like x, gamma/dgamma/dbeta of {n}, "
                          f"mean/rstd of {r}", x=x, dy=dy, dx=dx, gamma=gamma, dgamma=dgamma,
                          dbeta=dbeta, mean=mean, rstd=rstd)
    return r, n


_LNB = dict(x=(5, 16), gamma=(16,), mean=(5,), rstd=((5,), 0.5, 2.0), dy=(5, 16), dx=(5, 16),
            dgamma=(16,), dbeta=(16,))


@kernel(FAMILY, "x gamma mean rstd dy dx:out? dgamma:inout dbeta:inout",
        check=check_layernorm_bwd, dims="rows n",
        c="qr_layernorm_bwd_f32(x, gamma, mean, rstd, dy, dx, dgamma, dbeta, rows, n)",
        examples=[_LNB, {**_LNB, "dx": None}], tol=(1e-5, 1e-5))
def layernorm_bwd(self, x: Tensor, gamma: Tensor, mean: Tensor, rstd: Tensor, dy: Tensor,
                  dx: Tensor | None, dgamma: Tensor, dbeta: Tensor) -> None:
    """LayerNorm backward: dx written (if given); dgamma, dbeta accumulated (+=)."""
    X, DY = self._m(x), self._m(dy)
    DX, dg, db = None if dx is None else self._mw(dx), dgamma.w.reshape(-1), dbeta.w.reshape(-1)
    mu = mean.a.reshape(-1, 1)
    rs = rstd.a.reshape(-1, 1)
    xhat = self._scratch("ln_xhat", X.shape)
    g = self._scratch("ln_g", X.shape)
    col = self._scratch("ln_col", (x.cols,))
    r = self._scratch("ln_r", (x.rows, 1))
    np.subtract(X, mu, out=xhat)
    np.multiply(xhat, rs, out=xhat)
    np.multiply(DY, xhat, out=g)
    np.sum(g, axis=0, out=col)
    np.add(dg, col, out=dg)
    np.sum(DY, axis=0, out=col)
    np.add(db, col, out=db)
    if DX is None:
        return
    np.multiply(DY, gamma.a.reshape(-1), out=g)          # g = dxhat
    # dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
    np.mean(g, axis=1, keepdims=True, out=r)
    np.subtract(g, r, out=DX)
    np.multiply(g, xhat, out=g)
    np.mean(g, axis=1, keepdims=True, out=r)
    np.multiply(xhat, r, out=xhat)
    np.subtract(DX, xhat, out=DX)
    np.multiply(DX, rs, out=DX)


# ----------------------------------------------------------------------------- rmsnorm
def check_rmsnorm(kernel: str, x: Tensor, weight: Tensor, y: Tensor, rstd: Tensor,
                  eps) -> tuple[int, int]:
    n, r = x.cols, x.rows
    if y.size != x.size or y.cols != n or weight.size != n or rstd.size != r:
        raise sizes_error(kernel, f"do not fit: y like x, weight of {n}, rstd of {r}", x=x, y=y,
                          weight=weight, rstd=rstd)
    return r, n


@kernel(FAMILY, "x weight y:out rstd:out", check=check_rmsnorm, dims="rows n",
        c="qr_rmsnorm_f32(x, weight, y, rstd, rows, n, eps:f32)", replay=True,
        examples=[dict(x=(5, 16), weight=(16,), y=(5, 16), rstd=(5,), eps=1e-6)])
def rmsnorm(self, x: Tensor, weight: Tensor, y: Tensor, rstd: Tensor, eps: float) -> None:
    """y = x * rstd * weight per row, rstd = 1/sqrt(mean(x^2) + eps) saved (rows,)."""
    X, Y = self._m(x), self._mw(y)
    rs = rstd.w.reshape(-1, 1)
    t = self._scratch("rms_t", X.shape)
    np.multiply(X, X, out=t)
    np.mean(t, axis=1, keepdims=True, out=rs)
    np.add(rs, np.float32(eps), out=rs)
    np.sqrt(rs, out=rs)
    np.reciprocal(rs, out=rs)
    np.multiply(X, rs, out=Y)
    np.multiply(Y, weight.a.reshape(-1), out=Y)


def check_rmsnorm_bwd(kernel: str, x: Tensor, weight: Tensor, rstd: Tensor, dy: Tensor,
                      dx: Tensor | None, dweight: Tensor) -> tuple[int, int]:
    n, r = x.cols, x.rows
    if dy.size != x.size or dy.cols != n or weight.size != n or dweight.size != n \
            or rstd.size != r or (dx is not None and (dx.size != x.size or dx.cols != n)):
        raise sizes_error(kernel, f"do not fit: dy/dx like x, weight/dweight of {n}, rstd "
                          f"of {r}", x=x, dy=dy, dx=dx, weight=weight, dweight=dweight,
                          rstd=rstd)
    return r, n


_RMB = dict(x=(5, 16), weight=(16,), rstd=((5,), 0.5, 2.0), dy=(5, 16), dx=(5, 16),
            dweight=(16,))


@kernel(FAMILY, "x weight rstd dy dx:out? dweight:inout", check=check_rmsnorm_bwd,
        dims="rows n", c="qr_rmsnorm_bwd_f32(x, weight, rstd, dy, dx, dweight, rows, n)",
        examples=[_RMB, {**_RMB, "dx": None}], tol=(1e-5, 1e-5))
def rmsnorm_bwd(self, x: Tensor, weight: Tensor, rstd: Tensor, dy: Tensor, dx: Tensor | None,
                dweight: Tensor) -> None:
    """RMSNorm backward: dx written (if given); dweight accumulated (+=)."""
    X, DY = self._m(x), self._m(dy)
    DX, dw = None if dx is None else self._mw(dx), dweight.w.reshape(-1)
    rs = rstd.a.reshape(-1, 1)
    xhat = self._scratch("rms_xhat", X.shape)
    g = self._scratch("rms_g", X.shape)
    col = self._scratch("rms_col", (x.cols,))
    r = self._scratch("rms_r", (x.rows, 1))
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
