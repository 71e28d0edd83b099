"""Adaptive average and max pooling of NCHW planes (csrc/pool_adaptive.c), PyTorch's
nn.AdaptiveAvgPool2d / nn.AdaptiveMaxPool2d, with the average's backward (the max's is
``maxpool2d_bwd`` over the argmax it saves).

Output row o of Ho pools input rows [floor(o H / Ho), ceil((o + 1) H / Ho)), likewise the
columns: windows of varying size that may overlap, and cover the input exactly once when Ho
divides H.
"""

from __future__ import annotations

import numpy as np

from ...errors import KernelError
from ...tensor import Tensor
from .conv import FAMILY
from .spec import EXACT, kernel


def window(o: int, out: int, n: int) -> tuple[int, int]:
    """[start, end) of adaptive window ``o`` of ``out`` over ``n`` positions."""
    return o * n // out, -(-(o + 1) * n // out)


def check_adaptive(kernel: str, x: Tensor, y: Tensor) -> tuple[int, int, int, int, int, int]:
    """(B, C, H, W, Ho, Wo) of x [B,C,H,W] and y [B,C,Ho,Wo], planes not empty (for the
    backward: dx and dy)."""
    if len(x.shape) != 4 or len(y.shape) != 4 or x.shape[:2] != y.shape[:2] or \
            0 in x.shape[2:] or 0 in y.shape[2:]:
        raise KernelError(f"{kernel}: x {x.shape} and y {y.shape} must be [B,C,H,W] and "
                          "[B,C,Ho,Wo], planes not empty")
    return (*x.shape, *y.shape[2:])  # type: ignore[return-value]


def check_adaptive_bwd(kernel: str, dy: Tensor, dx: Tensor):
    """The dimensions of an adaptive pool's backward (dx in x's place)."""
    return check_adaptive(kernel, dx, dy)


def check_adaptive_max(kernel: str, x: Tensor, y: Tensor, argmax: Tensor):
    """The dimensions of an adaptive max pool; argmax int32, shaped like y."""
    d = check_adaptive(kernel, x, y)
    if argmax.dtype != "i32" or argmax.shape != y.shape:
        raise KernelError(f"{kernel}: argmax {argmax.shape} ({argmax.dtype}) must be int32 "
                          f"like y {y.shape}")
    return d


def _axis(n: int, out: int):
    """The windows of one axis as gathers: (idx [k, out], valid [k, out]) of each output's
    k-th position (clipped to its last; valid inside the window), (rev [k', n], rvalid) of
    each input's k'-th output (the windows holding it), and size [out]."""
    se = np.array([window(o, out, n) for o in range(out)])
    k = int((se[:, 1] - se[:, 0]).max())
    idx = se[:, 0][None, :] + np.arange(k)[:, None]
    holders = [[o for o in range(out) if se[o, 0] <= i < se[o, 1]] for i in range(n)]
    kr = max(len(h) for h in holders)
    rev = np.array([[h[min(j, len(h) - 1)] for h in holders] for j in range(kr)])
    rvalid = np.array([[j < len(h) for h in holders] for j in range(kr)])
    return (np.minimum(idx, se[:, 1][None, :] - 1), idx < se[:, 1][None, :], rev, rvalid,
            se[:, 1] - se[:, 0])


def _avg_geo(self, H: int, W: int, Ho: int, Wo: int):
    """The cached gathers of both axes (``_axis``) and inv [Ho, Wo] = 1 / window size."""
    def make():
        h, w = _axis(H, Ho), _axis(W, Wo)
        inv = (1.0 / (h[4][:, None] * w[4][None, :])).astype(np.float32)
        return h, w, inv
    return self._kept(("adaptive_avg", H, W, Ho, Wo), make)


def _gather_sum(self, key: str, src: np.ndarray, idx: np.ndarray, valid: np.ndarray,
                axis: int, out: np.ndarray) -> None:
    """out = sum over j of src taken at idx[j] along ``axis`` (2 or 3) where valid[j]: only
    the positions summed are read, so a NaN or an inf stays in its windows."""
    tmp = self.scratch(key, out.shape)
    out.fill(0)
    for j in range(idx.shape[0]):
        np.take(src, idx[j], axis=axis, out=tmp)
        np.add(out, tmp, out=out, where=valid[j][:, None] if axis == 2 else valid[j])


_EX = [dict(x=(2, 3, 7, 5), y=(2, 3, 3, 2)), dict(x=(1, 2, 4, 6), y=(1, 2, 4, 3)),
       dict(x=(2, 1, 3, 2), y=(2, 1, 5, 4)), dict(x=(2, 3, 1, 9), y=(2, 3, 1, 4))]


@kernel(FAMILY, "x y:out", check=check_adaptive, dims="B C H W Ho Wo",
        c="qr_adaptive_avgpool2d_f32(x, y, B, C, H, W, Ho, Wo)", tol=(1e-5, 1e-6), examples=_EX)
def adaptive_avgpool2d(self, x: Tensor, y: Tensor) -> None:
    """y[B,C,Ho,Wo] = the mean of x[B,C,H,W] over each adaptive window (rows
    [floor(o H / Ho), ceil((o + 1) H / Ho)), likewise the columns), PyTorch's
    AdaptiveAvgPool2d; Ho, Wo from y's shape."""
    B, C, H, W, Ho, Wo = check_adaptive("adaptive_avgpool2d", x, y)
    h, w, inv = _avg_geo(self, H, W, Ho, Wo)
    Y, t = y.w, self.scratch("aap_t", (B, C, Ho, W))
    _gather_sum(self, "aap_r", x.a, h[0], h[1], 2, t)    # the rows' sums, then the columns'
    _gather_sum(self, "aap_c", t, w[0], w[1], 3, Y)
    np.multiply(Y, inv, out=Y)


@kernel(FAMILY, "dy dx:out", check=check_adaptive_bwd, dims="B C H W Ho Wo",
        c="qr_adaptive_avgpool2d_bwd_f32(dy, dx, B, C, H, W, Ho, Wo)", tol=(1e-5, 1e-6),
        examples=[dict(dy=e["y"], dx=e["x"]) for e in _EX])
def adaptive_avgpool2d_bwd(self, dy: Tensor, dx: Tensor) -> None:
    """dx[B,C,H,W] (written) = the sum over the adaptive windows holding each input of
    dy[B,C,Ho,Wo] / the window's size."""
    B, C, H, W, Ho, Wo = check_adaptive_bwd("adaptive_avgpool2d_bwd", dy, dx)
    h, w, inv = _avg_geo(self, H, W, Ho, Wo)
    DX, g = dx.w, self.scratch("aapb_g", (B, C, Ho, Wo))
    np.multiply(dy.a, inv, out=g)
    u = self.scratch("aapb_u", (B, C, Ho, W))
    _gather_sum(self, "aapb_c", g, w[2], w[3], 3, u)     # each input's windows, by column
    _gather_sum(self, "aapb_r", u, h[2], h[3], 2, DX)    # then by row


def _max_geo(self, H: int, W: int, Ho: int, Wo: int):
    """rows[kh, Ho], cols[kw, Wo]: the r-th position of each window (clipped to its last);
    valid[kh, kw, Ho, Wo]: that position is inside the window; pos: its plane index h W + w;
    first[Ho, Wo]: each window's first position."""
    def axis(n, out):
        se = np.array([window(o, out, n) for o in range(out)])
        k = int((se[:, 1] - se[:, 0]).max())
        idx = se[:, 0][None, :] + np.arange(k)[:, None]                # [k, out]
        return np.minimum(idx, se[:, 1][None, :] - 1), idx < se[:, 1][None, :]

    def make():
        rows, rv = axis(H, Ho)
        cols, cv = axis(W, Wo)
        valid = rv[:, None, :, None] & cv[None, :, None, :]
        pos = (rows[:, None, :, None] * W + cols[None, :, None, :]).astype(np.int32)
        return rows, cols, valid, pos, pos[0, 0].copy()
    return self._kept(("adaptive_max", H, W, Ho, Wo), make)


@kernel(FAMILY, "x y:out argmax:out:i32", check=check_adaptive_max, dims="B C H W Ho Wo",
        c="qr_adaptive_maxpool2d_f32(x, y, argmax, B, C, H, W, Ho, Wo)", tol=EXACT,
        examples=[dict(x=e["x"], y=e["y"], argmax=(e["y"], 0, 1)) for e in _EX])
def adaptive_maxpool2d(self, x: Tensor, y: Tensor, argmax: Tensor) -> None:
    """y[B,C,Ho,Wo] = the max of x[B,C,H,W] over each adaptive window (``adaptive_avgpool2d``'s
    windows); argmax[B,C,Ho,Wo] int32 = h * W + w of the first maximum in the plane, as
    PyTorch (a NaN wins: the last NaN of the window); its backward is ``maxpool2d_bwd``."""
    B, C, H, W, Ho, Wo = check_adaptive_max("adaptive_maxpool2d", x, y, argmax)
    rows, cols, valid, pos, first = _max_geo(self, H, W, Ho, Wo)
    m, idx = y.w, argmax.w
    m.fill(-np.inf)
    np.copyto(idx, first)
    tr = self.scratch("amp_r", (B, C, Ho, W))
    cand = self.scratch("amp_c", (B, C, Ho, Wo))
    t = self.scratch("amp_t", (B, C, Ho, Wo), np.bool_)
    u = self.scratch("amp_u", (B, C, Ho, Wo), np.bool_)
    for r in range(rows.shape[0]):
        np.take(x.a, rows[r], axis=2, out=tr)
        for s in range(cols.shape[0]):
            np.take(tr, cols[s], axis=3, out=cand)
            np.greater(cand, m, out=t)
            np.isnan(cand, out=u)
            np.logical_or(t, u, out=t)
            np.logical_and(t, valid[r, s], out=t)
            np.copyto(m, cand, where=t)
            np.copyto(idx, pos[r, s], where=t)
