"""Nearest and bilinear upsampling of NCHW planes (csrc/upsample.c), PyTorch's
F.interpolate, with the backward.

Both sets map each output index to its source indices and weights in float32 with
PyTorch's formulas (see upsample.c), and evaluate a bilinear output as PyTorch's CPU kernel:
along the width first, then the height.
"""

from __future__ import annotations

import numpy as np

from ...errors import KernelError
from ...tensor import Tensor
from .conv import FAMILY
from .spec import EXACT, kernel

MODES = ("nearest", "bilinear")
_DIMS = "B C H W Ho Wo m"


def check_upsample2d(kernel: str, x: Tensor, y: Tensor, mode: str, align_corners: bool,
                     scale_h: float, scale_w: float) -> tuple[int, ...]:
    """(B, C, H, W, Ho, Wo, mode index) of x [B,C,H,W] and y [B,C,Ho,Wo] (for the backward:
    dx and dy)."""
    if len(x.shape) != 4 or len(y.shape) != 4 or x.shape[:2] != y.shape[:2] or 0 in x.shape[2:] \
            or 0 in y.shape[2:]:
        raise KernelError(f"{kernel}: x {x.shape} and y {y.shape} must be [B,C,H,W] and "
                          "[B,C,Ho,Wo], planes not empty")
    if mode not in MODES:
        raise KernelError(f"{kernel}: mode={mode!r} must be one of {MODES}")
    if align_corners and mode == "nearest":
        raise KernelError(f"{kernel}: align_corners is for mode='bilinear' only")
    if not (scale_h >= 0 and scale_w >= 0):
        raise KernelError(f"{kernel}: scale_h={scale_h}, scale_w={scale_w} must be >= 0 "
                          "(0: from the sizes)")
    return (*x.shape, *y.shape[2:], MODES.index(mode))


def check_upsample2d_bwd(kernel: str, dy, dx, mode, align_corners, scale_h, scale_w):
    """The dimensions of an upsample's backward (dx in x's place)."""
    return check_upsample2d(kernel, dx, dy, mode, align_corners, scale_h, scale_w)


def axis_map(n: int, out: int, mode: str, align: bool, scale: float):
    """(i0, i1, l0, l1) of one axis: source indices [out] int64 and weights [out] float32,
    PyTorch's (upsample.c's) float32 arithmetic."""
    f = np.float32
    o = np.arange(out, dtype=f)
    if mode == "bilinear" and align:
        ratio = f(n - 1) / f(out - 1) if out > 1 else f(0)
    else:
        ratio = f(1.0 / scale) if scale > 0 else f(n) / f(out)
    l1 = np.zeros(out, f)
    if n == out:
        i0 = np.arange(out)
    elif mode == "nearest":
        i0 = np.minimum(np.floor(o * ratio).astype(np.int64), n - 1)
    else:
        src = ratio * o if align else ratio * (o + f(0.5)) - f(0.5)
        src = np.maximum(src, f(0))
        i0 = np.minimum(np.floor(src).astype(np.int64), n - 1)
        l1 = np.clip(src - i0.astype(f), f(0), f(1)).astype(f)
    i1 = np.where((i0 < n - 1) & (mode == "bilinear") & (n != out), i0 + 1, i0)
    return i0, i1, (f(1) - l1).astype(f), l1


def _maps(self, d: tuple[int, ...], mode, align, scale_h, scale_w):
    B, C, H, W, Ho, Wo, _ = d
    key = ("upsample", H, W, Ho, Wo, mode, bool(align), float(scale_h), float(scale_w))
    return self._kept(key, lambda: (axis_map(H, Ho, mode, align, scale_h),
                                    axis_map(W, Wo, mode, align, scale_w)))


_C_ARGS = "B, C, H, W, Ho, Wo, m:int, align_corners:bool, scale_h:f64, scale_w:f64"
_EX = [dict(x=(2, 3, 4, 5), y=(2, 3, 8, 10)),
       dict(x=(2, 3, 4, 5), y=(2, 3, 7, 6), scale_h=1.75, scale_w=1.3),
       dict(x=(2, 3, 4, 5), y=(2, 3, 9, 7), mode="bilinear"),
       dict(x=(1, 2, 3, 4), y=(1, 2, 6, 9), mode="bilinear", align_corners=True),
       dict(x=(1, 2, 3, 4), y=(1, 2, 3, 10), mode="bilinear", scale_h=1.0, scale_w=2.5)]
_BAD = [("mode='bicubic' must be one of", dict(mode="bicubic")),
        ("align_corners is for mode='bilinear' only", dict(align_corners=True)),
        ("must be >= 0", dict(scale_h=-1.0))]


@kernel(FAMILY, "x y:out", check=check_upsample2d, dims=_DIMS,
        c=f"qr_upsample2d_f32(x, y, {_C_ARGS})", tol=(1e-6, 1e-6), examples=_EX, bad=_BAD)
def upsample2d(self, x: Tensor, y: Tensor, mode: str = "nearest", align_corners: bool = False,
               scale_h: float = 0.0, scale_w: float = 0.0) -> None:
    """y[B,C,Ho,Wo] = x[B,C,H,W] upsampled (or resized) by ``mode`` "nearest" or
    "bilinear", PyTorch's F.interpolate: scale_h, scale_w the scale factors given (0: none,
    the ratio H / Ho then); align_corners for bilinear only."""
    d = check_upsample2d("upsample2d", x, y, mode, align_corners, scale_h, scale_w)
    B, C, H, W, Ho, Wo, _ = d
    (h0, h1, lh0, lh1), (w0, w1, lw0, lw1) = _maps(self, d, mode, align_corners, scale_h,
                                                   scale_w)
    Y = y.w
    t = self.scratch("up_t", (B, C, H, Wo))
    np.take(x.a, w0, axis=3, out=t, mode="clip")
    if mode == "nearest":
        np.take(t, h0, axis=2, out=Y, mode="clip")
        return
    u = self.scratch("up_u", (B, C, H, Wo))
    np.multiply(t, lw0, out=t)
    np.take(x.a, w1, axis=3, out=u, mode="clip")
    np.multiply(u, lw1, out=u)
    np.add(t, u, out=t)                             # along the width, then the height
    v = self.scratch("up_v", (B, C, Ho, Wo))
    np.take(t, h0, axis=2, out=Y, mode="clip")
    np.multiply(Y, lh0[:, None], out=Y)
    np.take(t, h1, axis=2, out=v, mode="clip")
    np.multiply(v, lh1[:, None], out=v)
    np.add(Y, v, out=Y)


@kernel(FAMILY, "dy dx:out", check=check_upsample2d_bwd, dims=_DIMS,
        c=f"qr_upsample2d_bwd_f32(dy, dx, {_C_ARGS})", tol=(1e-5, 1e-6),
        examples=[{"dy": e["y"], "dx": e["x"], **{k: v for k, v in e.items() if k not in "xy"}}
                  for e in _EX])
def upsample2d_bwd(self, dy: Tensor, dx: Tensor, mode: str = "nearest",
                   align_corners: bool = False, scale_h: float = 0.0,
                   scale_w: float = 0.0) -> None:
    """dx[B,C,H,W] (written) = the sum, over the outputs each input position feeds, of
    dy[B,C,Ho,Wo] times its interpolation weight (``upsample2d``'s arguments)."""
    d = check_upsample2d_bwd("upsample2d_bwd", dy, dx, mode, align_corners, scale_h, scale_w)
    B, C, H, W, Ho, Wo, _ = d
    (h0, h1, lh0, lh1), (w0, w1, lw0, lw1) = _maps(self, d, mode, align_corners, scale_h,
                                                   scale_w)
    DX = dx.w
    t = self.scratch("upb_t", (B, C, H, Wo))
    t.fill(0)
    rows = (slice(None), slice(None))
    if mode == "nearest":
        np.add.at(t, rows + (h0,), dy.a)
        DX.fill(0)
        np.add.at(DX, rows + (slice(None), w0), t)
        return
    g = self.scratch("upb_g", (B, C, Ho, Wo))
    for idx, lam in ((h0, lh0), (h1, lh1)):
        np.multiply(dy.a, lam[:, None], out=g)
        np.add.at(t, rows + (idx,), g)
    u = self.scratch("upb_u", (B, C, H, Wo))
    DX.fill(0)
    for idx, lam in ((w0, lw0), (w1, lw1)):
        np.multiply(t, lam, out=u)
        np.add.at(DX, rows + (slice(None), idx), u)


_ = EXACT  # nearest is exact on both sets; the table's tol covers bilinear's sums
