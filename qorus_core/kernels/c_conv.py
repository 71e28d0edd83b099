"""C bindings of the convolution, pooling and BatchNorm2d kernels (``csrc/conv.c``): a mixin
of ``CKernels``.

Same methods and signatures as ``numpy_conv.NumpyConvKernels`` (the reference, with the
docstrings and shapes). Every argument is checked here before the C call, with the shape
helpers the NumPy twins use (so both raise the same ``KernelError``); a non-float32 operand
goes to the NumPy fallback, as does every kernel when the library predates conv.c.
"""

from __future__ import annotations

from ctypes import c_float, c_int, c_int64, c_void_p

from ..errors import KernelError
from ..tensor import Tensor
from .c_fused import _f32, _p, _rc  # the helpers the C mixins share
from .numpy_conv import NumpyConvKernels, _bad_argmax, bn_dims, check_batchnorm, conv_dims, pool_dims

__all__ = ["CConvKernels", "CONV_SIGNATURES"]

_P, _I64, _I, _F = c_void_p, c_int64, c_int, c_float

CONV_SIGNATURES = {
    "qr_conv2d_f32": (_I, [_P] * 4 + [_I64] * 14),
    "qr_conv2d_bwd_f32": (_I, [_P] * 6 + [_I64] * 14),
    "qr_maxpool2d_f32": (_I, [_P] * 3 + [_I64] * 10),
    "qr_maxpool2d_bwd_f32": (_I, [_P] * 3 + [_I64] * 6),
    "qr_avgpool2d_f32": (_I, [_P] * 2 + [_I64] * 10),
    "qr_avgpool2d_bwd_f32": (_I, [_P] * 2 + [_I64] * 10),
    "qr_batchnorm2d_f32": (_I, [_P] * 8 + [_I64] * 3 + [_F, _F, _I]),
    "qr_batchnorm2d_bwd_f32": (_I, [_P] * 8 + [_I64] * 3),
}


class CConvKernels:
    """Conv2d, pooling and BatchNorm2d of the C set (mixed into ``CKernels``; needs
    ``self.fallback`` and ``self._conv``, the functions of ``CONV_SIGNATURES`` the library
    has, bound at load)."""

    # ----------------------------------------------------------------- conv2d
    def conv2d(self, x: Tensor, w: Tensor, bias: Tensor | None, y: Tensor, stride=(1, 1),
               padding=(0, 0), dilation=(1, 1), groups: int = 1) -> None:
        fn = self._conv.get("conv2d")
        if fn is None or not _f32(x, w, bias, y):
            return self.fallback.conv2d(x, w, bias, y, stride, padding, dilation, groups)
        B, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw, G, _, _ = conv_dims(
            "conv2d", x, w, y, stride, padding, dilation, groups, bias)
        _rc("conv2d", fn(x.p, w.p, _p(bias), y.p, B, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw, G))

    def conv2d_bwd(self, x: Tensor, w: Tensor, dy: Tensor, dx: Tensor | None, dw: Tensor,
                   db: Tensor | None, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
                   groups: int = 1) -> None:
        fn = self._conv.get("conv2d_bwd")
        if fn is None or not _f32(x, w, dy, dx, dw, db):
            return self.fallback.conv2d_bwd(x, w, dy, dx, dw, db, stride, padding, dilation,
                                            groups)
        B, C, H, W, K, R, S, sh, sw, ph, pw, dh, ddw, G, _, _ = conv_dims(
            "conv2d_bwd", x, w, dy, stride, padding, dilation, groups, db)
        if dw.shape != w.shape or (dx is not None and dx.shape != x.shape):
            raise KernelError(f"conv2d_bwd: dw {dw.shape} must be like w {w.shape}, dx "
                              f"{None if dx is None else dx.shape} like x {x.shape}")
        _rc("conv2d_bwd", fn(x.p, w.p, dy.p, _p(dx), dw.p, _p(db), B, C, H, W, K, R, S, sh, sw,
                             ph, pw, dh, ddw, G))

    # ----------------------------------------------------------------- pooling
    def maxpool2d(self, x: Tensor, y: Tensor, argmax: Tensor, kernel, stride,
                  padding=(0, 0)) -> None:
        fn = self._conv.get("maxpool2d")
        if fn is None or not _f32(x, y):
            return self.fallback.maxpool2d(x, y, argmax, kernel, stride, padding)
        B, C, H, W, R, S, sh, sw, ph, pw, _, _ = pool_dims("maxpool2d", x, y, kernel, stride,
                                                           padding)
        if argmax.dtype != "i32" or argmax.size != y.size:
            raise KernelError(f"maxpool2d: argmax {argmax.shape} ({argmax.dtype}) must be int32 "
                              f"like y {y.shape}")
        _rc("maxpool2d", fn(x.p, y.p, argmax.p, B, C, H, W, R, S, sh, sw, ph, pw))

    def maxpool2d_bwd(self, dy: Tensor, argmax: Tensor, dx: Tensor) -> None:
        fn = self._conv.get("maxpool2d_bwd")
        if fn is None or not _f32(dy, dx):
            return self.fallback.maxpool2d_bwd(dy, argmax, dx)
        if len(dx.shape) != 4 or argmax.dtype != "i32" or argmax.size != dy.size or \
                dy.size % max(dx.shape[0] * dx.shape[1], 1) or dy.shape[:2] != dx.shape[:2]:
            raise KernelError(f"maxpool2d_bwd: dy {dy.shape}, argmax {argmax.shape} "
                              f"({argmax.dtype}) and dx {dx.shape} do not fit")
        B, C, H, W = dx.shape
        hwo = dy.size // (B * C) if B * C else 1
        rc = fn(dy.p, argmax.p, dx.p, B, C, H, W, hwo, 1)
        if rc == -2:
            raise _bad_argmax("maxpool2d_bwd", argmax.a, H * W)
        _rc("maxpool2d_bwd", rc)

    def avgpool2d(self, x: Tensor, y: Tensor, kernel, stride, padding=(0, 0)) -> None:
        fn = self._conv.get("avgpool2d")
        if fn is None or not _f32(x, y):
            return self.fallback.avgpool2d(x, y, kernel, stride, padding)
        B, C, H, W, R, S, sh, sw, ph, pw, _, _ = pool_dims("avgpool2d", x, y, kernel, stride,
                                                           padding)
        _rc("avgpool2d", fn(x.p, y.p, B, C, H, W, R, S, sh, sw, ph, pw))

    def avgpool2d_bwd(self, dy: Tensor, dx: Tensor, kernel, stride, padding=(0, 0)) -> None:
        fn = self._conv.get("avgpool2d_bwd")
        if fn is None or not _f32(dy, dx):
            return self.fallback.avgpool2d_bwd(dy, dx, kernel, stride, padding)
        B, C, H, W, R, S, sh, sw, ph, pw, _, _ = pool_dims("avgpool2d_bwd", dx, dy, kernel,
                                                           stride, padding)
        _rc("avgpool2d_bwd", fn(dy.p, dx.p, B, C, H, W, R, S, sh, sw, ph, pw))

    # ----------------------------------------------------------------- batchnorm
    def batchnorm2d(self, x: Tensor, weight: Tensor, bias: Tensor, y: Tensor, mean: Tensor,
                    rstd: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
                    eps: float = 1e-5, momentum: float = 0.1, train: bool = True) -> None:
        fn = self._conv.get("batchnorm2d")
        if fn is None or not _f32(x, weight, bias, y, mean, rstd, running_mean, running_var):
            return self.fallback.batchnorm2d(x, weight, bias, y, mean, rstd, running_mean,
                                             running_var, eps, momentum, train)
        B, C, HW = check_batchnorm(x, weight, bias, y, mean, rstd, running_mean, running_var,
                                   eps, momentum, train)
        _rc("batchnorm2d", fn(x.p, weight.p, bias.p, y.p, mean.p, rstd.p, _p(running_mean),
                              _p(running_var), B, C, max(HW, 1), eps, momentum,
                              1 if train else 0))

    def batchnorm2d_bwd(self, x: Tensor, weight: Tensor, mean: Tensor, rstd: Tensor, dy: Tensor,
                        dx: Tensor | None, dweight: Tensor, dbias: Tensor) -> None:
        fn = self._conv.get("batchnorm2d_bwd")
        if fn is None or not _f32(x, weight, mean, rstd, dy, dx, dweight, dbias):
            return self.fallback.batchnorm2d_bwd(x, weight, mean, rstd, dy, dx, dweight, dbias)
        B, C, HW = bn_dims("batchnorm2d_bwd", x, [dy, dx], [weight, mean, rstd, dweight, dbias])
        _rc("batchnorm2d_bwd", fn(x.p, weight.p, mean.p, rstd.p, dy.p, _p(dx), dweight.p,
                                  dbias.p, B, C, max(HW, 1)))


for _name in (n[3:-4] for n in CONV_SIGNATURES):   # the reference's docs
    getattr(CConvKernels, _name).__doc__ = getattr(NumpyConvKernels, _name).__doc__
