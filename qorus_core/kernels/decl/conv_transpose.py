"""Transposed convolution (csrc/conv.c), PyTorch's ConvTranspose2d, with its backward.

A transposed convolution is the input gradient of the convolution from its output y
[B, Cout, Ho, Wo] to its input x [B, Cin, H, W], so both sets run the convolution's own
code: the forward is conv2d_bwd's input-gradient path, the backward conv2d's forward (dx)
and conv2d_bwd's weight-gradient path (dw) with x and dy in swapped roles. The output size
is y's: any Ho that this convolution maps back onto H (``output_padding`` in [0, stride)).
"""

from __future__ import annotations

import numpy as np

from ...errors import KernelError
from ...tensor import Tensor
from .conv import FAMILY, Pair, conv_dims, conv_forward, conv_input_grad, conv_weight_grad, im2col
from .spec import kernel

_DIMS = "B Cout Ho Wo Cin R S sh sw ph pw dh ddw G H W"


def convt_dims(kernel: str, x: Tensor, w: Tensor, y: Tensor, stride, padding, dilation,
               groups: int, bias: Tensor | None = None) -> tuple[int, ...]:
    """The geometry (``conv_dims``) of the convolution y [B,Cout,Ho,Wo] -> x [B,Cin,H,W]
    with w [Cin, Cout/groups, R, S] that this transposes; bias [Cout]."""
    for name, t in (("x", x), ("w", w), ("y", y)):
        if len(t.shape) != 4:
            raise KernelError(f"{kernel}: {name} {t.shape} must be 4-D (NCHW)")
    try:
        d = conv_dims(kernel, y, w, x, stride, padding, dilation, groups)
    except KernelError as exc:
        raise KernelError(f"{kernel}: x {x.shape}, w {w.shape} and y {y.shape} do not fit a "
                          f"transposed convolution of stride {tuple(stride)}, padding "
                          f"{tuple(padding)}, dilation {tuple(dilation)}, groups {groups} "
                          "(w [Cin, Cout/groups, R, S], y [B, Cout, Ho, Wo], Ho = (H - 1) "
                          "stride - 2 padding + dilation (R - 1) + 1 + output_padding, "
                          f"0 <= output_padding < stride): {exc}") from None
    if bias is not None and bias.size != d[1]:
        raise KernelError(f"{kernel}: bias {bias.shape} must have {d[1]} values")
    return d


def check_conv_transpose2d(kernel: str, x, w, bias, y, stride, padding, dilation, groups):
    """The dimensions of a transposed convolution, or KernelError."""
    return convt_dims(kernel, x, w, y, stride, padding, dilation, groups, bias)


def check_conv_transpose2d_bwd(kernel: str, x, w, dy, dx, dw, db, stride, padding, dilation,
                               groups):
    """The dimensions of a transposed convolution's backward; dw shaped like w, dx like x."""
    d = convt_dims(kernel, x, w, dy, stride, padding, dilation, groups, db)
    if dw.shape != w.shape or (dx is not None and dx.shape != x.shape):
        raise KernelError(f"{kernel}: dw {dw.shape} must be like w {w.shape}, dx "
                          f"{None if dx is None else dx.shape} like x {x.shape}")
    return d


_ARGS = "B, Cin, H, W, Cout, Ho, Wo, R, S, sh, sw, ph, pw, dh, ddw, G"
_EX = [dict(x=(2, 4, 3, 4), w=(4, 3, 3, 2), bias=(3,), y=(2, 3, 6, 5), stride=(2, 1),
            padding=(1, 0)),                                # output_padding (1, 0)
       dict(x=(1, 4, 3, 3), w=(4, 2, 3, 3), bias=None, y=(1, 4, 6, 9), stride=(2, 3),
            padding=(1, 2), dilation=(1, 2), groups=2),
       dict(x=(2, 3, 4, 5), w=(3, 2, 1, 1), bias=(2,), y=(2, 2, 4, 5))]   # 1x1: no col2im
_EXB = [{**e, "dy": e["y"], "dx": e["x"], "dw": e["w"], "db": e["bias"]} for e in _EX]
_EXB[1] = {**_EXB[1], "dx": None}
for _e in _EXB:
    _e.pop("y"), _e.pop("bias")


@kernel(FAMILY, "x w bias? y:out", check=check_conv_transpose2d, dims=_DIMS,
        c=f"qr_conv_transpose2d_f32(x, w, bias, y, {_ARGS})", tol=(1e-4, 1e-5), examples=_EX,
        bad=[("do not fit a transposed convolution", dict(y=(2, 3, 8, 5))),
             ("groups", dict(groups=3)), ("must be 4-D", dict(x=(2, 4, 3)))])
def conv_transpose2d(self, x: Tensor, w: Tensor, bias: Tensor | None, y: Tensor,
                     stride: Pair = (1, 1), padding: Pair = (0, 0), dilation: Pair = (1, 1),
                     groups: int = 1) -> None:
    """y[B,Cout,Ho,Wo] = conv_transpose(x[B,Cin,H,W], w[Cin,Cout/G,R,S]) + bias[Cout] (None:
    no bias), PyTorch's ConvTranspose2d: Ho = (H - 1) sh - 2 ph + dh (R - 1) + 1 +
    output_padding, the output padding (in [0, sh)) read from y's shape."""
    d = convt_dims("conv_transpose2d", x, w, y, stride, padding, dilation, groups, bias)
    B, Cout, Ho, Wo = d[:4]
    Y = y.w
    conv_input_grad(self, w.a, x.a, d, Y)
    if bias is not None:
        yv = Y.reshape(B, Cout, Ho * Wo)
        np.add(yv, bias.a.reshape(Cout, 1), out=yv)


@kernel(FAMILY, "x w dy dx:out? dw:inout db:inout?", check=check_conv_transpose2d_bwd,
        dims=_DIMS, c=f"qr_conv_transpose2d_bwd_f32(x, w, dy, dx, dw, db, {_ARGS})",
        tol=(1e-4, 1e-4), examples=_EXB)
def conv_transpose2d_bwd(self, x: Tensor, w: Tensor, dy: Tensor, dx: Tensor | None,
                         dw: Tensor, db: Tensor | None, stride: Pair = (1, 1),
                         padding: Pair = (0, 0), dilation: Pair = (1, 1),
                         groups: int = 1) -> None:
    """ConvTranspose2d backward from dy[B,Cout,Ho,Wo]: dx[B,Cin,H,W] = conv2d(dy, w) written
    (None: not wanted); dw[Cin,Cout/G,R,S] += the sum over images of x @ im2col(dy)^T and
    db[Cout] (None: no bias) += the sums of dy over batch and plane."""
    d = convt_dims("conv_transpose2d_bwd", x, w, dy, stride, padding, dilation, groups, db)
    B, Cout, Ho, Wo = d[:4]
    DX, DW, DB = (None if dx is None else dx.w), dw.w, (None if db is None else db.w)
    col = im2col(self, dy.a, d)
    if DX is not None:
        conv_forward(self, col, w.a, d, DX)
    conv_weight_grad(self, col, x.a, d, DW)
    if DB is not None:
        s = self.scratch("convt_db", (Cout,))
        np.sum(dy.a.reshape(B, Cout, Ho * Wo), axis=(0, 2), out=s)
        np.add(DB, s, out=DB)
