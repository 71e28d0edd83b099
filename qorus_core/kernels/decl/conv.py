"""Convolution, pooling and BatchNorm2d (csrc/conv.c), each with its backward.

Tensors are NCHW. ``stride``, ``padding``, ``dilation`` and ``kernel`` are ``(h, w)`` pairs of
ints. The NumPy implementations take temporaries from the per-shape scratch cache (im2col
buffers, padded copies), so after a warm-up call nothing allocates.
"""

from __future__ import annotations

import operator

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ...errors import KernelError
from ...tensor import Tensor
from .spec import EXACT, c_error, kernel

FAMILY = "conv"

Pair = tuple[int, int]


def out_size(n: int, k: int, stride: int, pad: int, dilation: int = 1) -> int:
    """Output length of a window sweep (PyTorch's floor rule); <= 0 when nothing fits."""
    return (n + 2 * pad - dilation * (k - 1) - 1) // stride + 1


def _pair(kernel: str, name: str, v, lo: int) -> Pair:
    try:
        a, b = (int(v[0]), int(v[1]))
    except (TypeError, ValueError, IndexError):
        raise KernelError(f"{kernel}: {name}={v!r} must be a pair of ints") from None
    if a < lo or b < lo:
        raise KernelError(f"{kernel}: {name}={v!r} must be >= {lo}")
    return a, b


def _rank4(kernel: str, name: str, t: Tensor) -> tuple[int, int, int, int]:
    if len(t.shape) != 4:
        raise KernelError(f"{kernel}: {name} {t.shape} must be 4-D (NCHW)")
    return t.shape  # type: ignore[return-value]


def conv_dims(kernel: str, x: Tensor, w: Tensor, out: Tensor, stride, padding, dilation,
              groups: int, bias: Tensor | None = None) -> tuple[int, ...]:
    """(B, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw, G, Ho, Wo) after checking x [B,C,H,W],
    w [K, C/G, R, S], out [B,K,Ho,Wo] (y, or dy for the backward) and bias [K]."""
    B, C, H, W = _rank4(kernel, "x", x)
    K, Cg, R, S = _rank4(kernel, "w", w)
    sh, sw = _pair(kernel, "stride", stride, 1)
    ph, pw = _pair(kernel, "padding", padding, 0)
    dh, dw = _pair(kernel, "dilation", dilation, 1)
    G = operator.index(groups)      # an int: a fraction is refused, not truncated
    if G < 1 or C % G or K % G or Cg * G != C:
        raise KernelError(f"{kernel}: x {x.shape} and w {w.shape} do not fit groups={groups}: "
                          "w must be [K, C/groups, R, S] with C and K multiples of groups")
    Ho, Wo = out_size(H, R, sh, ph, dh), out_size(W, S, sw, pw, dw)
    if Ho < 1 or Wo < 1:
        raise KernelError(f"{kernel}: kernel {(R, S)} (dilation {(dh, dw)}) does not fit input "
                          f"{(H, W)} padded by {(ph, pw)}")
    if out.shape != (B, K, Ho, Wo):
        raise KernelError(f"{kernel}: output {out.shape} must be {(B, K, Ho, Wo)} for x {x.shape}, "
                          f"w {w.shape}, stride {(sh, sw)}, padding {(ph, pw)}, dilation {(dh, dw)}")
    if bias is not None and bias.size != K:
        raise KernelError(f"{kernel}: bias {bias.shape} must have {K} values")
    return B, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw, G, Ho, Wo


def pool_out(n: int, k: int, stride: int, pad: int, dilation: int = 1,
             ceil_mode: bool = False) -> int:
    """Output length of a pooling sweep, PyTorch's rule: the floor (or with ``ceil_mode`` the
    ceiling) of (n + 2 pad - dilation (k - 1) - 1) / stride, plus one; with ``ceil_mode``
    the last window must start inside the input or its left padding. <= 0: nothing fits."""
    o = (n + 2 * pad - dilation * (k - 1) - 1 + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and o > 0 and (o - 1) * stride >= n + pad:
        o -= 1
    return o


def empty_window(n: int, k: int, stride: int, pad: int, dilation: int, out: int) -> int | None:
    """The first output of a sweep whose dilated window holds no input position (only a
    window starting in the padding can miss the input), or None."""
    for o in range(min(out, -(-pad // stride))):
        a = o * stride - pad                     # < 0: r0, the first offset at or past 0
        r0 = -(a // dilation)
        if r0 >= k or a + r0 * dilation >= n:
            return o
    return None


def pool_dims(kernel: str, x: Tensor, out: Tensor, size, stride, padding, dilation=(1, 1),
              ceil_mode: bool = False) -> tuple[int, ...]:
    """(B, C, H, W, R, S, sh, sw, ph, pw, dh, dw, Ho, Wo) after checking x [B,C,H,W], that
    every window holds an input position and that ``out`` holds B*C*Ho*Wo values (its shape
    may be [B,C,Ho,Wo] or, for global pooling, [B,C])."""
    B, C, H, W = _rank4(kernel, "x", x)
    R, S = _pair(kernel, "kernel", size, 1)
    sh, sw = _pair(kernel, "stride", stride, 1)
    ph, pw = _pair(kernel, "padding", padding, 0)
    dh, dw = _pair(kernel, "dilation", dilation, 1)
    if ph > R // 2 or pw > S // 2:
        raise KernelError(f"{kernel}: padding {(ph, pw)} must be at most half the kernel {(R, S)}")
    Ho, Wo = pool_out(H, R, sh, ph, dh, ceil_mode), pool_out(W, S, sw, pw, dw, ceil_mode)
    if Ho < 1 or Wo < 1:
        raise KernelError(f"{kernel}: kernel {(R, S)} (dilation {(dh, dw)}) does not fit input "
                          f"{(H, W)} padded by {(ph, pw)}")
    if (dh > 1 and empty_window(H, R, sh, ph, dh, Ho) is not None) or \
            (dw > 1 and empty_window(W, S, sw, pw, dw, Wo) is not None):
        raise KernelError(f"{kernel}: a window of kernel {(R, S)}, dilation {(dh, dw)} holds "
                          f"padding only for input {(H, W)} padded by {(ph, pw)}")
    if out.size != B * C * Ho * Wo or out.shape[:2] != (B, C):
        raise KernelError(f"{kernel}: output {out.shape} must be {(B, C, Ho, Wo)} for x {x.shape}, "
                          f"kernel {(R, S)}, stride {(sh, sw)}, padding {(ph, pw)}, dilation "
                          f"{(dh, dw)}, ceil_mode {bool(ceil_mode)}")
    return B, C, H, W, R, S, sh, sw, ph, pw, dh, dw, Ho, Wo


def bn_dims(kernel: str, x: Tensor, like: list[Tensor | None], per_channel: list[Tensor | None]
            ) -> tuple[int, int, int]:
    """(B, C, HW) of x [B, C, *spatial]; each of ``like`` the size of x, ``per_channel`` C."""
    if len(x.shape) < 2:
        raise KernelError(f"{kernel}: x {x.shape} must be [B, C, ...]")
    B, C = x.shape[0], x.shape[1]
    HW = x.size // (B * C) if B * C else 0
    bad = [t.shape for t in like if t is not None and t.size != x.size]
    bad += [t.shape for t in per_channel if t is not None and t.size != C]
    if bad:
        raise KernelError(f"{kernel}: x {x.shape}: operands {bad} do not fit (like x, or one value "
                          f"per channel: {C})")
    return B, C, HW


def check_batchnorm(x: Tensor, weight: Tensor, bias: Tensor, y: Tensor, mean: Tensor,
                    rstd: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
                    eps: float, momentum: float, train: bool) -> tuple[int, int, int]:
    """``bn_dims`` plus the scalar and running-statistics rules of ``batchnorm2d`` (both
    kernel sets raise the same KernelError); returns (B, C, HW)."""
    B, C, HW = bn_dims("batchnorm2d", x, [y], [weight, bias, mean, rstd, running_mean,
                                               running_var])
    if not eps > 0 or not 0.0 <= momentum <= 1.0:
        raise KernelError(f"batchnorm2d: eps={eps} must be > 0, momentum={momentum} in [0, 1]")
    if (running_mean is None) != (running_var is None) or (not train and running_mean is None):
        raise KernelError("batchnorm2d: running_mean and running_var go together, and eval "
                          "needs them")
    if train and B * HW < 1:
        raise KernelError(f"batchnorm2d: x {x.shape} is empty")
    return B, C, HW


def _bad_argmax(kernel: str, am: np.ndarray, hw: int) -> KernelError:
    return KernelError(f"{kernel}: argmax index outside [0, {hw}) (min {int(am.min())}, "
                       f"max {int(am.max())}): not written by maxpool2d for this shape")


# ----------------------------------------------------------------------------- checks
_CONV_DIMS = "B C H W K R S sh sw ph pw dh ddw G Ho Wo"
_POOL_DIMS = "B C H W R S sh sw ph pw dh ddw Ho Wo"


def check_conv2d(kernel: str, x, w, bias, y, stride, padding, dilation, groups):
    """The dimensions of a conv2d call (``conv_dims``), or KernelError."""
    return conv_dims(kernel, x, w, y, stride, padding, dilation, groups, bias)


def check_conv2d_bwd(kernel: str, x, w, dy, dx, dw, db, stride, padding, dilation, groups):
    """The dimensions of a conv2d backward; dw must be shaped like w and dx like x."""
    d = conv_dims(kernel, x, w, dy, stride, padding, dilation, groups, db)
    if dw.shape != w.shape or (dx is not None and dx.shape != x.shape):
        raise KernelError(f"{kernel}: dw {dw.shape} must be like w {w.shape}, dx "
                          f"{None if dx is None else dx.shape} like x {x.shape}")
    return d


def check_maxpool2d(name: str, x, y, argmax, size, stride, padding, dilation, ceil_mode):
    """The dimensions of a max pool; argmax must be int32, one entry per output."""
    d = pool_dims(name, x, y, size, stride, padding, dilation, ceil_mode)
    if argmax.dtype != "i32" or argmax.size != y.size:
        raise KernelError(f"{name}: argmax {argmax.shape} ({argmax.dtype}) must be int32 "
                          f"like y {y.shape}")
    return d


def check_maxpool2d_bwd(kernel: str, dy, argmax, dx) -> tuple[int, int, int, int, int]:
    """(B, C, H, W, Ho*Wo) of dx [B,C,H,W] and dy, argmax [B,C,Ho,Wo]."""
    if len(dx.shape) != 4 or argmax.dtype != "i32" or argmax.size != dy.size or \
            dy.size % max(dx.shape[0] * dx.shape[1], 1) or dy.shape[:2] != dx.shape[:2]:
        raise KernelError(f"{kernel}: dy {dy.shape}, argmax {argmax.shape} ({argmax.dtype}) "
                          f"and dx {dx.shape} do not fit")
    B, C, H, W = dx.shape
    return B, C, H, W, dy.size // (B * C) if B * C else 1


def _argmax_error(kernel: str, rc: int, dy, argmax, dx) -> KernelError:
    if rc == -2:
        return _bad_argmax(kernel, argmax.a, dx.shape[2] * dx.shape[3])
    return c_error(kernel, rc)


def check_avgpool2d(name: str, x, y, size, stride, padding, ceil_mode, count_include_pad):
    """The dimensions of an average pool, or KernelError."""
    return pool_dims(name, x, y, size, stride, padding, (1, 1), ceil_mode)


def check_avgpool2d_bwd(name: str, dy, dx, size, stride, padding, ceil_mode,
                        count_include_pad):
    """The dimensions of an average pool's backward (dx in x's place)."""
    return pool_dims(name, dx, dy, size, stride, padding, (1, 1), ceil_mode)


def check_batchnorm2d(kernel: str, x, weight, bias, y, mean, rstd, running_mean, running_var,
                      eps, momentum, train):
    """The dimensions of a BatchNorm2d forward (``check_batchnorm``), or KernelError."""
    return check_batchnorm(x, weight, bias, y, mean, rstd, running_mean, running_var, eps,
                           momentum, train)


def check_batchnorm2d_bwd(kernel: str, x, weight, mean, rstd, dy, dx, dweight, dbias):
    """The dimensions of a BatchNorm2d backward, or KernelError."""
    return bn_dims(kernel, x, [dy, dx], [weight, mean, rstd, dweight, dbias])


# the running statistics: written in training, read in eval (then they may be read-only)
_RUN = "(None if {0} is None else {0}.wp if train else {0}.p):ptr"

_CONV = [dict(x=(2, 3, 7, 6), w=(4, 3, 3, 2), bias=(4,), y=(2, 4, 4, 5), stride=(2, 1),
              padding=(1, 0)),
         dict(x=(1, 4, 6, 6), w=(6, 2, 3, 3), bias=None, y=(1, 6, 2, 2), padding=(1, 1),
              dilation=(2, 2), stride=(2, 2), groups=2)]
_CONVB = [{**_CONV[0], "dy": (2, 4, 4, 5), "dx": (2, 3, 7, 6), "dw": (4, 3, 3, 2), "db": (4,)},
          {**_CONV[1], "dy": (1, 6, 2, 2), "dx": None, "dw": (6, 2, 3, 3), "db": None}]
for _e in _CONVB:
    _e.pop("y"), _e.pop("bias")
_BN = dict(x=(4, 3, 5, 2), weight=(3,), bias=(3,), y=(4, 3, 5, 2), mean=(3,), rstd=(3,),
           running_mean=(3,), running_var=((3,), 0.5, 2.0), eps=1e-5, momentum=0.1, train=True)


# ----------------------------------------------------------------------------- helpers

def _padded(self, key: str, x: np.ndarray, ph: int, pw: int) -> np.ndarray:
    """x [B,C,H,W] copied into a cached zero-bordered [B,C,H+2ph,W+2pw] buffer."""
    B, C, H, W = x.shape
    xp = self.scratch(key, (B, C, H + 2 * ph, W + 2 * pw))
    if ph or pw:                                 # the border zeroed on every call
        xp[:, :, :ph].fill(0)
        xp[:, :, ph + H:].fill(0)
        xp[:, :, :, :pw].fill(0)
        xp[:, :, :, pw + W:].fill(0)
    np.copyto(xp[:, :, ph:ph + H, pw:pw + W], x)
    return xp


def im2col(self, x: np.ndarray, d: tuple[int, ...]) -> np.ndarray:
    """col [B, C, R, S, Ho, Wo]: col[b, c, r, s, i, j] = xpad[b, c, i sh + r dh, j sw + s dw]."""
    B, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw, G, Ho, Wo = d
    xp = _padded(self, "conv_xp", x, ph, pw)
    s0, s1, s2, s3 = xp.strides
    win = as_strided(xp, (B, C, R, S, Ho, Wo), (s0, s1, dh * s2, dw * s3, sh * s2, sw * s3),
                     writeable=False)
    col = self.scratch("conv_col", (B, C, R, S, Ho, Wo))
    np.copyto(col, win)
    return col


def _pool_extent(d: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(B, C, Hp, Wp): the padded planes every window of geometry ``d`` (``pool_dims``) fits,
    ceil_mode's last windows too, x placed at (ph, pw)."""
    B, C, H, W, R, S, sh, sw, ph, pw, dh, dw, Ho, Wo = d
    return (B, C, max(ph + H, (Ho - 1) * sh + (R - 1) * dh + 1),
            max(pw + W, (Wo - 1) * sw + (S - 1) * dw + 1))


def _pool_padded(self, key: str, x: np.ndarray, d: tuple[int, ...], zero: bool) -> np.ndarray:
    """x [B,C,H,W] copied at (ph, pw) into a cached ``_pool_extent`` buffer; the border
    zeroed on every call when ``zero`` (else left as it is: masked by the caller)."""
    H, W, ph, pw = d[2], d[3], d[8], d[9]
    xp = self.scratch(key, _pool_extent(d))
    if zero:
        xp[:, :, :ph].fill(0)
        xp[:, :, ph + H:].fill(0)
        xp[:, :, :, :pw].fill(0)
        xp[:, :, :, pw + W:].fill(0)
    np.copyto(xp[:, :, ph:ph + H, pw:pw + W], x)
    return xp


def _maxpool_geo(self, d: tuple[int, ...]):
    """first[Ho,Wo]: the first in-bounds position of each window (h*W + w);
    valid[r,s,Ho,Wo]: window offset (r, s) lies inside the input; pos: its index."""
    B, C, H, W, R, S, sh, sw, ph, pw, dh, dw, Ho, Wo = d

    def make():
        h = np.arange(Ho)[:, None] * sh - ph + np.arange(R)[None, :] * dh   # [Ho, R]
        w = np.arange(Wo)[:, None] * sw - pw + np.arange(S)[None, :] * dw   # [Wo, S]
        hv, wv = (h >= 0) & (h < H), (w >= 0) & (w < W)
        valid = hv.T[:, None, :, None] & wv.T[None, :, None, :]          # [R, S, Ho, Wo]
        pos = (h.T[:, None, :, None] * W + w.T[None, :, None, :]).astype(np.int32)
        h0 = h[np.arange(Ho), np.argmax(hv, axis=1)]                      # first valid row
        w0 = w[np.arange(Wo), np.argmax(wv, axis=1)]
        return (h0[:, None] * W + w0[None, :]).astype(np.int32), valid, pos
    return self._kept(("maxpool", *d[2:]), make)


def _avgpool_inv(self, d: tuple[int, ...], include_pad: bool) -> np.ndarray:
    """[Ho, Wo] float32: 1 / the divisor of each window, PyTorch's: its size clipped to the
    padded input (count_include_pad) or its number of input positions."""
    B, C, H, W, R, S, sh, sw, ph, pw, dh, dw, Ho, Wo = d

    def axis(n, k, st, p, out):
        a = np.arange(out) * st - p
        e = np.minimum(a + k, n + p)
        return e - a if include_pad else np.minimum(e, n) - np.maximum(a, 0)

    def make():
        div = axis(H, R, sh, ph, Ho)[:, None] * axis(W, S, sw, pw, Wo)[None, :]
        return (1.0 / div).astype(np.float32)
    return self._kept(("avgpool_inv", *d[2:], bool(include_pad)), make)


@kernel(FAMILY, "x w bias? y:out", check=check_conv2d, dims=_CONV_DIMS,
        c="qr_conv2d_f32(x, w, bias, y, B, C, H, W, K, R, S, sh, sw, ph, pw, dh, ddw, G)",
        tol=(1e-4, 1e-5), examples=_CONV,
        bad=[("groups", dict(groups=3)), ("must be 4-D", dict(x=(2, 3, 7)))])
def conv2d(self, x: Tensor, w: Tensor, bias: Tensor | None, y: Tensor, stride: Pair = (1, 1),
           padding: Pair = (0, 0), dilation: Pair = (1, 1), groups: int = 1) -> None:
    """y[B,K,Ho,Wo] = conv(x[B,C,H,W], w[K,C/G,R,S]) + bias[K] (None: no bias), PyTorch's
    Conv2d: zero padding, Ho = (H + 2 ph - dh (R - 1) - 1) // sh + 1."""
    d = conv_dims("conv2d", x, w, y, stride, padding, dilation, groups, bias)
    B, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw, G, Ho, Wo = d
    Y = y.w
    conv_forward(self, im2col(self, x.a, d), w.a, d, Y)
    if bias is not None:
        yv = Y.reshape(B, K, Ho * Wo)
        np.add(yv, bias.a.reshape(K, 1), out=yv)


@kernel(FAMILY, "x w dy dx:out? dw:inout db:inout?", check=check_conv2d_bwd, dims=_CONV_DIMS,
        c="qr_conv2d_bwd_f32(x, w, dy, dx, dw, db, B, C, H, W, K, R, S, sh, sw, ph, pw, dh, ddw, "
          "G)", tol=(1e-4, 1e-4), examples=_CONVB)
def conv2d_bwd(self, x: Tensor, w: Tensor, dy: Tensor, dx: Tensor | None, dw: Tensor,
               db: Tensor | None, stride: Pair = (1, 1), padding: Pair = (0, 0),
               dilation: Pair = (1, 1), groups: int = 1) -> None:
    """Conv2d backward: dx[B,C,H,W] written (None: not wanted); dw[K,C/G,R,S] and db[K]
    (None: no bias) accumulated (+=) from dy[B,K,Ho,Wo]."""
    d = conv_dims("conv2d_bwd", x, w, dy, stride, padding, dilation, groups, db)
    B, K, HWo = d[0], d[4], d[14] * d[15]
    DX, DB = (None if dx is None else dx.w), (None if db is None else db.w)
    conv_weight_grad(self, im2col(self, x.a, d), dy.a, d, dw.w)
    if DB is not None:
        s = self.scratch("conv_db", (K,))
        np.sum(dy.a.reshape(B, K, HWo), axis=(0, 2), out=s)
        np.add(DB, s, out=DB)
    if DX is not None:
        conv_input_grad(self, w.a, dy.a, d, DX)


def conv_forward(self, col: np.ndarray, w: np.ndarray, d: tuple[int, ...],
                 y: np.ndarray) -> None:
    """y[B,K,Ho,Wo] = w @ col per group, col the input's ``im2col`` for the convolution of
    geometry ``d`` (``conv_dims``); written, no bias."""
    B, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw, G, Ho, Wo = d
    col = col.reshape(B, G, C // G * R * S, Ho * Wo)
    np.matmul(w.reshape(G, K // G, -1), col, out=y.reshape(B, G, K // G, Ho * Wo))


def conv_weight_grad(self, col: np.ndarray, dy: np.ndarray, d: tuple[int, ...],
                     dw: np.ndarray) -> None:
    """dw[K,C/G,R,S] += sum over images of dy @ col^T, col the input's ``im2col``."""
    B, C, H, W, K, R, S, sh, sw, ph, pw, dh, ddw, G, Ho, Wo = d
    Kg, CRS, HWo = K // G, C // G * R * S, Ho * Wo
    part = self.scratch("conv_dw_part", (B, G, Kg, CRS))
    np.matmul(dy.reshape(B, G, Kg, HWo), col.reshape(B, G, CRS, HWo).transpose(0, 1, 3, 2),
              out=part)
    tot = self.scratch("conv_dw_sum", (G, Kg, CRS))
    np.sum(part, axis=0, out=tot)
    dwv = dw.reshape(G, Kg, CRS)
    np.add(dwv, tot, out=dwv)


def conv_input_grad(self, w: np.ndarray, dy: np.ndarray, d: tuple[int, ...],
                    dx: np.ndarray) -> None:
    """dx[B,C,H,W] = col2im(w^T @ dy) of the convolution of geometry ``d`` (``conv_dims``),
    written: the input gradient of conv2d, and the forward of the transposed convolution."""
    B, C, H, W, K, R, S, sh, sw, ph, pw, dh, ddw, G, Ho, Wo = d
    Kg, CRS, HWo = K // G, C // G * R * S, Ho * Wo
    dcol = self.scratch("conv_dcol", (B, G, CRS, HWo))
    np.matmul(w.reshape(G, Kg, CRS).transpose(0, 2, 1), dy.reshape(B, G, Kg, HWo), out=dcol)
    d6 = dcol.reshape(B, C, R, S, Ho, Wo)
    dxp = self.scratch("conv_dxp", (B, C, H + 2 * ph, W + 2 * pw))
    dxp.fill(0)
    for r in range(R):
        for s_ in range(S):
            dst = dxp[:, :, r * dh:r * dh + sh * (Ho - 1) + 1:sh,
                      s_ * ddw:s_ * ddw + sw * (Wo - 1) + 1:sw]
            np.add(dst, d6[:, :, r, s_], out=dst)
    np.copyto(dx.reshape(B, C, H, W), dxp[:, :, ph:ph + H, pw:pw + W])


@kernel(FAMILY, "x y:out argmax:out:i32", check=check_maxpool2d, dims=_POOL_DIMS,
        c="qr_maxpool2d_f32(x, y, argmax, B, C, H, W, R, S, sh, sw, ph, pw, dh, ddw, "
          "ceil_mode:bool)", tol=EXACT,
        examples=[dict(x=(2, 3, 7, 6), y=(2, 3, 4, 3), argmax=((2, 3, 4, 3), 0, 1), kernel=(3, 2),
                       stride=(2, 2), padding=(1, 0)),
                  dict(x=(2, 3, 7, 6), y=(2, 3, 3, 3), argmax=((2, 3, 3, 3), 0, 1), kernel=(3, 2),
                       stride=(2, 2), padding=(1, 1), dilation=(2, 3), ceil_mode=True)],
        bad=[("padding .* must be at most half the kernel", dict(padding=(2, 0))),
             ("holds padding only", dict(x=(2, 3, 2, 6), y=(2, 3, 1, 3), kernel=(2, 2),
                                         stride=(1, 2), padding=(1, 0), dilation=(3, 1)))])
def maxpool2d(self, x: Tensor, y: Tensor, argmax: Tensor, kernel: Pair, stride: Pair,
              padding: Pair = (0, 0), dilation: Pair = (1, 1), ceil_mode: bool = False) -> None:
    """y[B,C,Ho,Wo] = max of each R x S window (dilated by ``dilation``) of x[B,C,H,W]
    (padding never wins); argmax[B,C,Ho,Wo] int32 = h * W + w of the first maximum in the
    plane, as PyTorch (a NaN wins; the last NaN of the window). Padding at most half the
    kernel; ``ceil_mode``: PyTorch's ceiling rule for Ho, Wo (``pool_out``)."""
    d = pool_dims("maxpool2d", x, y, kernel, stride, padding, dilation, ceil_mode)
    B, C, H, W, R, S, sh, sw, ph, pw, dh, dw, Ho, Wo = d
    first, valid, pos = _maxpool_geo(self, d)
    xp = _pool_padded(self, "mp_xp", x.a, d, zero=False)     # border: masked by valid
    m = y.w.reshape(B, C, Ho, Wo)
    idx = argmax.w.reshape(B, C, Ho, Wo)
    m.fill(-np.inf)
    np.copyto(idx, first)
    t = self.scratch("mp_t", (B, C, Ho, Wo), np.bool_)
    u = self.scratch("mp_u", (B, C, Ho, Wo), np.bool_)
    for r in range(R):
        for s in range(S):
            cand = xp[:, :, r * dh:r * dh + sh * (Ho - 1) + 1:sh,
                      s * dw:s * dw + sw * (Wo - 1) + 1:sw]
            np.greater(cand, m, out=t)
            np.isnan(cand, out=u)
            np.logical_or(t, u, out=t)
            np.logical_and(t, valid[r, s], out=t)
            np.copyto(m, cand, where=t)
            np.copyto(idx, pos[r, s], where=t)


@kernel(FAMILY, "dy argmax:i32 dx:out", check=check_maxpool2d_bwd, dims="B C H W hwo",
        c="qr_maxpool2d_bwd_f32(dy, argmax, dx, B, C, H, W, hwo, 1:i64)", on_error=_argmax_error,
        tol=EXACT, examples=[dict(dy=(2, 3, 3, 3), argmax=((2, 3, 3, 3), 0, 42), dx=(2, 3, 7, 6))],
        bad=[(r"argmax index outside \[0, 42\)", dict(argmax=((2, 3, 3, 3), 42, 43)))])
def maxpool2d_bwd(self, dy: Tensor, argmax: Tensor, dx: Tensor) -> None:
    """dx[B,C,H,W] = 0, then dx[b, c, argmax] += dy[b, c] (argmax from ``maxpool2d``)."""
    B, C, H, W = dx.shape
    planes, hw, DX = B * C, H * W, dx.w
    am = argmax.a.reshape(planes, -1)
    if am.size and (am.min() < 0 or am.max() >= hw):
        raise _bad_argmax("maxpool2d_bwd", am, hw)
    flat = self.scratch("mp_flat", am.shape, np.intp)
    base = self._kept(("mp_base", planes, hw), lambda: (np.arange(planes) * hw)[:, None])
    np.add(am, base, out=flat)
    DX.fill(0)
    np.add.at(DX.reshape(-1), flat.reshape(-1), dy.a.reshape(-1))


_AVG_C = "B, C, H, W, R, S, sh, sw, ph, pw, ceil_mode:bool, count_include_pad:bool"
_AVG = [dict(x=(2, 3, 7, 6), y=(2, 3, 4, 3), kernel=(3, 2), stride=(2, 2), padding=(1, 0)),
        dict(x=(2, 3, 4, 4), y=(2, 3), kernel=(4, 4), stride=(1, 1)),
        dict(x=(2, 3, 7, 6), y=(2, 3, 4, 4), kernel=(3, 2), stride=(2, 2), padding=(1, 1),
             ceil_mode=True, count_include_pad=False),
        dict(x=(1, 2, 5, 3), y=(1, 2, 3, 1), kernel=(2, 4), stride=(2, 2), ceil_mode=True)]


@kernel(FAMILY, "x y:out", check=check_avgpool2d, dims=_POOL_DIMS,
        c=f"qr_avgpool2d_f32(x, y, {_AVG_C})", tol=(1e-5, 1e-6), examples=_AVG)
def avgpool2d(self, x: Tensor, y: Tensor, kernel: Pair, stride: Pair,
              padding: Pair = (0, 0), ceil_mode: bool = False,
              count_include_pad: bool = True) -> None:
    """y[B,C,Ho,Wo] = mean of each R x S window of x[B,C,H,W]; the divisor PyTorch's: the
    window clipped to the padded input (``count_include_pad``) or its input positions only;
    ``ceil_mode`` as ``maxpool2d``. y may be [B,C] when Ho = Wo = 1."""
    d = pool_dims("avgpool2d", x, y, kernel, stride, padding, (1, 1), ceil_mode)
    B, C, H, W, R, S, sh, sw, ph, pw, _, _, Ho, Wo = d
    acc = y.w.reshape(B, C, Ho, Wo)
    xp = _pool_padded(self, "ap_xp", x.a, d, zero=True)
    acc.fill(0)
    for r in range(R):
        for s in range(S):
            np.add(acc, xp[:, :, r:r + sh * (Ho - 1) + 1:sh, s:s + sw * (Wo - 1) + 1:sw], out=acc)
    np.multiply(acc, _avgpool_inv(self, d, count_include_pad), out=acc)


@kernel(FAMILY, "dy dx:out", check=check_avgpool2d_bwd, dims=_POOL_DIMS,
        c=f"qr_avgpool2d_bwd_f32(dy, dx, {_AVG_C})", tol=(1e-5, 1e-6),
        examples=[{"dy": e["y"], "dx": e["x"], **{k: v for k, v in e.items() if k not in "xy"}}
                  for e in _AVG[::2]])
def avgpool2d_bwd(self, dy: Tensor, dx: Tensor, kernel: Pair, stride: Pair,
                  padding: Pair = (0, 0), ceil_mode: bool = False,
                  count_include_pad: bool = True) -> None:
    """dx[B,C,H,W] = sum over the windows holding each input of dy / the window's divisor
    (``avgpool2d``'s arguments)."""
    d = pool_dims("avgpool2d_bwd", dx, dy, kernel, stride, padding, (1, 1), ceil_mode)
    B, C, H, W, R, S, sh, sw, ph, pw, _, _, Ho, Wo = d
    DX = dx.w
    g = self.scratch("ap_g", (B, C, Ho, Wo))
    np.multiply(dy.a.reshape(B, C, Ho, Wo), _avgpool_inv(self, d, count_include_pad), out=g)
    dxp = self.scratch("ap_dxp", _pool_extent(d))
    dxp.fill(0)
    for r in range(R):
        for s in range(S):
            dst = dxp[:, :, r:r + sh * (Ho - 1) + 1:sh, s:s + sw * (Wo - 1) + 1:sw]
            np.add(dst, g, out=dst)
    np.copyto(DX, dxp[:, :, ph:ph + H, pw:pw + W])


@kernel(FAMILY, "x weight? bias? y:out mean:out rstd:out running_mean:inout? running_var:inout?",
        check=check_batchnorm2d, dims="B C HW",
        c="qr_batchnorm2d_f32(x, weight, bias, y, mean, rstd, " + _RUN.format("running_mean") + ", "
          + _RUN.format("running_var") + ", B, C, max(HW, 1):i64, eps:f32, momentum:f32, "
          "train:bool)", tol=(1e-5, 1e-5),
        examples=[_BN, {**_BN, "train": False, "running_var": ((3,), 0.5, 2.0)},
                  {**_BN, "running_mean": None, "running_var": None, "momentum": 0.5},
                  {**_BN, "weight": None, "bias": None},
                  {**_BN, "x": (5, 3), "y": (5, 3), "bias": None}],
        bad=[("eps=0.0 must be > 0", dict(eps=0.0)),
             ("running_mean and running_var go together", dict(running_var=None))])
def batchnorm2d(self, x: Tensor, weight: Tensor | None, bias: Tensor | None, y: Tensor,
                mean: Tensor, rstd: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
                eps: float = 1e-5, momentum: float = 0.1, train: bool = True) -> None:
    """BatchNorm over x[B,C,*] per channel: y = (x - mean) * rstd * weight[C] + bias[C]
    (weight, bias None: 1 and 0, PyTorch's affine=False; x [B,C] has one value a channel).
    train: mean[C], rstd[C] = 1/sqrt(var + eps) of the batch (biased var over B and the
    spatial dims) are saved and running_mean/var[C] (None: not kept) updated as PyTorch
    (r = (1 - momentum) r + momentum * stat, the variance unbiased). Eval: the running
    statistics are used (and written to mean/rstd)."""
    B, C, HW = check_batchnorm(x, weight, bias, y, mean, rstd, running_mean, running_var,
                               eps, momentum, train)
    xv, yv = x.a.reshape(B, C, HW), y.w.reshape(B, C, HW)
    m, r = mean.w.reshape(C), rstd.w.reshape(C)
    if train and running_mean is not None:     # updated below
        rm, rv = running_mean.w.reshape(C), running_var.w.reshape(C)
    if train:
        n = B * HW
        diff = self.scratch("bn_diff", (B, C, HW))
        np.mean(xv, axis=(0, 2), out=m)
        np.subtract(xv, m.reshape(1, C, 1), out=diff)
        np.multiply(diff, diff, out=diff)
        var = self.scratch("bn_var", (C,))
        np.mean(diff, axis=(0, 2), out=var)
        np.add(var, np.float32(eps), out=r)
        np.sqrt(r, out=r)
        np.reciprocal(r, out=r)
        if running_mean is not None:
            mom = np.float32(momentum)
            t = self.scratch("bn_t", (C,))
            np.multiply(rm, np.float32(1.0) - mom, out=rm)
            np.multiply(m, mom, out=t)
            np.add(rm, t, out=rm)
            np.multiply(var, np.float32(mom * (n / (n - 1) if n > 1 else 1.0)), out=t)
            np.multiply(rv, np.float32(1.0) - mom, out=rv)
            np.add(rv, t, out=rv)
    else:
        np.copyto(m, running_mean.a.reshape(C))
        np.add(running_var.a.reshape(C), np.float32(eps), out=r)
        np.sqrt(r, out=r)
        np.reciprocal(r, out=r)
    a = self.scratch("bn_a", (C,))
    sft = self.scratch("bn_s", (C,))
    if weight is None:
        np.copyto(a, r)
    else:
        np.multiply(r, weight.a.reshape(C), out=a)
    np.multiply(m, a, out=sft)
    if bias is None:
        np.negative(sft, out=sft)
    else:
        np.subtract(bias.a.reshape(C), sft, out=sft)
    np.multiply(xv, a.reshape(1, C, 1), out=yv)
    np.add(yv, sft.reshape(1, C, 1), out=yv)


@kernel(FAMILY, "x weight? mean rstd dy dx:out? dweight:inout? dbias:inout?",
        check=check_batchnorm2d_bwd, dims="B C HW",
        c="qr_batchnorm2d_bwd_f32(x, weight, mean, rstd, dy, dx, dweight, dbias, B, C, "
          "max(HW, 1):i64)", tol=(1e-4, 1e-5),
        examples=[dict(x=(4, 3, 5, 2), weight=(3,), mean=(3,), rstd=((3,), 0.5, 2.0),
                       dy=(4, 3, 5, 2), dx=(4, 3, 5, 2), dweight=(3,), dbias=(3,)),
                  dict(x=(6, 3), weight=None, mean=(3,), rstd=((3,), 0.5, 2.0), dy=(6, 3),
                       dx=(6, 3), dweight=None, dbias=None)])
def batchnorm2d_bwd(self, x: Tensor, weight: Tensor | None, mean: Tensor, rstd: Tensor,
                    dy: Tensor, dx: Tensor | None, dweight: Tensor | None,
                    dbias: Tensor | None) -> None:
    """Backward of the batch-statistics BatchNorm: dx (None: not wanted) = w rstd (dy
    - mean(dy) - xhat mean(dy xhat)) per channel, xhat = (x - mean) rstd; dweight[C] +=
    sum dy xhat, dbias[C] += sum dy (sums over B and the spatial dims); weight None: 1, and
    dweight, dbias None: not kept (affine=False)."""
    B, C, HW = bn_dims("batchnorm2d_bwd", x, [dy, dx], [weight, mean, rstd, dweight, dbias])
    n = B * HW
    dwt = None if dweight is None else dweight.w.reshape(C)
    dbs = None if dbias is None else dbias.w.reshape(C)
    dxv = None if dx is None else dx.w.reshape(B, C, HW)
    xv, dyv = x.a.reshape(B, C, HW), dy.a.reshape(B, C, HW)
    m, r = mean.a.reshape(1, C, 1), rstd.a.reshape(C)
    xm = self.scratch("bnb_xm", (B, C, HW))
    np.subtract(xv, m, out=xm)
    sdy = self.scratch("bnb_sdy", (C,))
    sdx = self.scratch("bnb_sdx", (C,))
    np.sum(dyv, axis=(0, 2), out=sdy)
    t = self.scratch("bnb_t", (B, C, HW))
    np.multiply(dyv, xm, out=t)
    np.sum(t, axis=(0, 2), out=sdx)
    if dwt is not None:
        c = self.scratch("bnb_c", (C,))
        np.multiply(sdx, r, out=c)
        np.add(dwt, c, out=dwt)
    if dbs is not None:
        np.add(dbs, sdy, out=dbs)
    if dxv is None:
        return
    k1 = self.scratch("bnb_k1", (C,))
    if weight is None:
        np.copyto(k1, r)                              # k1 = g r
    else:
        np.multiply(weight.a.reshape(C), r, out=k1)
    k2 = self.scratch("bnb_k2", (C,))
    np.multiply(k1, r, out=k2)
    np.multiply(k2, r, out=k2)
    np.multiply(k2, sdx, out=k2)
    np.multiply(k2, np.float32(-1.0 / n), out=k2)     # k2 = -g r^3 sum(dy (x - m)) / n
    k3 = self.scratch("bnb_k3", (C,))
    np.multiply(k1, sdy, out=k3)
    np.multiply(k3, np.float32(-1.0 / n), out=k3)     # k3 = -g r sum(dy) / n
    np.multiply(dyv, k1.reshape(1, C, 1), out=dxv)
    np.multiply(xm, k2.reshape(1, C, 1), out=t)
    np.add(dxv, t, out=dxv)
    np.add(dxv, k3.reshape(1, C, 1), out=dxv)

