"""GroupNorm over x [B, C, *] (csrc/groupnorm.c), PyTorch's nn.GroupNorm, with its backward.

The C channels split into G groups of C/G; each (image, group) block of C/G * HW values is
normalised by its own mean and (biased) variance, then scaled and shifted per channel. The
statistics mean, rstd are [B, G]: saved by the forward for the backward.
"""

from __future__ import annotations

import numbers

import numpy as np

from ...errors import KernelError
from ...tensor import Tensor
from .conv import FAMILY
from .spec import kernel


def gn_dims(kernel: str, x: Tensor, groups: int, like: list[Tensor | None],
            per_channel: list[Tensor | None], per_group: list[Tensor | None]
            ) -> tuple[int, int, int, int]:
    """(B, C, HW, G) of x [B, C, *spatial] with C a multiple of ``groups``; each of ``like``
    the size of x, ``per_channel`` C values, ``per_group`` B * G."""
    if len(x.shape) < 2 or isinstance(groups, bool) or not isinstance(groups, numbers.Integral) \
            or groups < 1 or x.shape[1] % groups:
        raise KernelError(f"{kernel}: x {x.shape} must be [B, C, ...] with C a multiple of "
                          f"num_groups={groups!r}")
    B, C = x.shape[0], x.shape[1]
    HW = x.size // (B * C) if B * C else 1
    if B * C and x.size == 0:
        raise KernelError(f"{kernel}: x {x.shape} has empty planes")
    bad = [t.shape for t in like if t is not None and t.size != x.size]
    bad += [t.shape for t in per_channel if t is not None and t.size != C]
    bad += [t.shape for t in per_group if t is not None and t.size != B * groups]
    if bad:
        raise KernelError(f"{kernel}: x {x.shape}, num_groups {groups}: operands {bad} do not "
                          f"fit (like x, {C} per channel or {B * groups} per image and group)")
    return B, C, max(HW, 1), int(groups)


def check_groupnorm(kernel: str, x, weight, bias, y, mean, rstd, num_groups, eps):
    """The dimensions of a GroupNorm forward; eps must be positive."""
    d = gn_dims(kernel, x, num_groups, [y], [weight, bias], [mean, rstd])
    if not eps > 0:
        raise KernelError(f"{kernel}: eps={eps} must be > 0")
    return d


def check_groupnorm_bwd(kernel: str, x, weight, mean, rstd, dy, dx, dweight, dbias, num_groups):
    """The dimensions of a GroupNorm backward, or KernelError."""
    return gn_dims(kernel, x, num_groups, [dy, dx], [weight, dweight, dbias], [mean, rstd])


_EX = dict(x=(3, 6, 4, 5), weight=(6,), bias=(6,), y=(3, 6, 4, 5), mean=(3, 2), rstd=(3, 2),
           num_groups=2, eps=1e-5)
_BWD = dict(x=(3, 6, 4, 5), weight=(6,), mean=(3, 2), rstd=((3, 2), 0.5, 2.0), dy=(3, 6, 4, 5),
            dx=(3, 6, 4, 5), dweight=(6,), dbias=(6,), num_groups=2)


@kernel(FAMILY, "x weight? bias? y:out mean:out rstd:out", check=check_groupnorm,
        dims="B C HW G", c="qr_groupnorm_f32(x, weight, bias, y, mean, rstd, B, C, HW, G, "
                           "eps:f32)", tol=(1e-5, 1e-5),
        examples=[_EX, {**_EX, "weight": None, "bias": None, "num_groups": 6, "mean": (3, 6),
                        "rstd": (3, 6)},
                  {**_EX, "x": (2, 4), "y": (2, 4), "mean": (2, 1), "rstd": (2, 1),
                   "weight": (4,), "bias": (4,), "num_groups": 1}],
        bad=[("C a multiple of num_groups=4", dict(num_groups=4)),
             ("eps=0.0 must be > 0", dict(eps=0.0))])
def groupnorm(self, x: Tensor, weight: Tensor | None, bias: Tensor | None, y: Tensor,
              mean: Tensor, rstd: Tensor, num_groups: int, eps: float = 1e-5) -> None:
    """GroupNorm of x[B,C,*]: per image b and group g (channels g C/G .. (g+1) C/G), mean[b,g]
    and rstd[b,g] = 1/sqrt(var + eps) of its C/G * HW values (biased variance) are saved, and
    y = (x - mean) * rstd * weight[c] + bias[c] (weight, bias None: 1 and 0, affine=False)."""
    B, C, HW, G = check_groupnorm("groupnorm", x, weight, bias, y, mean, rstd, num_groups, eps)
    Y, M, R = y.w, mean.w, rstd.w                     # every output writable, before any write
    if B == 0:
        return
    xv = x.a.reshape(B, G, C // G * HW)
    m, r = M.reshape(B, G, 1), R.reshape(B, G, 1)
    np.mean(xv, axis=2, keepdims=True, out=m)
    diff = self.scratch("gn_diff", xv.shape)
    np.subtract(xv, m, out=diff)
    np.multiply(diff, diff, out=diff)
    np.mean(diff, axis=2, keepdims=True, out=r)
    np.add(r, np.float32(eps), out=r)
    np.sqrt(r, out=r)
    np.reciprocal(r, out=r)
    a = self.scratch("gn_a", (B, G, C // G))          # a = rstd * weight, per (b, c)
    np.copyto(a, r)
    if weight is not None:
        np.multiply(a, weight.a.reshape(1, G, C // G), out=a)
    sft = self.scratch("gn_s", (B, G, C // G))        # shift = bias - mean * a
    np.multiply(a, m, out=sft)
    np.negative(sft, out=sft)
    if bias is not None:
        np.add(sft, bias.a.reshape(1, G, C // G), out=sft)
    xc, yc = x.a.reshape(B, C, HW), Y.reshape(B, C, HW)
    np.multiply(xc, a.reshape(B, C, 1), out=yc)
    np.add(yc, sft.reshape(B, C, 1), out=yc)


@kernel(FAMILY, "x weight? mean rstd dy dx:out? dweight:inout? dbias:inout?",
        check=check_groupnorm_bwd, dims="B C HW G",
        c="qr_groupnorm_bwd_f32(x, weight, mean, rstd, dy, dx, dweight, dbias, B, C, HW, G)",
        tol=(1e-4, 1e-5),
        examples=[_BWD, {**_BWD, "weight": None, "dweight": None, "dbias": None},
                  {**_BWD, "dx": None},
                  {**_BWD, "num_groups": 3, "mean": (3, 3), "rstd": ((3, 3), 0.5, 2.0)}])
def groupnorm_bwd(self, x: Tensor, weight: Tensor | None, mean: Tensor, rstd: Tensor,
                  dy: Tensor, dx: Tensor | None, dweight: Tensor | None, dbias: Tensor | None,
                  num_groups: int) -> None:
    """GroupNorm backward from ``groupnorm``'s mean, rstd [B,G]: dx (None: not wanted)
    = rstd (g dy - mean(g dy) - xhat mean(g dy xhat)) over each (image, group) block, g =
    weight[c] (None: 1), xhat = (x - mean) rstd; dweight[C] += sum dy xhat, dbias[C] += sum
    dy over the batch and the spatial dims (None: not kept)."""
    B, C, HW, G = check_groupnorm_bwd("groupnorm_bwd", x, weight, mean, rstd, dy, dx, dweight,
                                      dbias, num_groups)
    DX, DW, DB = (None if t is None else t.w for t in (dx, dweight, dbias))
    if B == 0:
        return
    Cg = C // G
    xv, dyv = x.a.reshape(B, C, HW), dy.a.reshape(B, C, HW)
    m, r = mean.a.reshape(B, G, 1), rstd.a.reshape(B, G, 1)
    t = self.scratch("gnb_t", (B, C, HW))
    sdy = self.scratch("gnb_sdy", (B, C))             # sum dy per (b, c)
    sdyx = self.scratch("gnb_sdyx", (B, C))           # sum dy (x - mean) per (b, c)
    np.sum(dyv, axis=2, out=sdy)
    xm = self.scratch("gnb_xm", (B, G, Cg * HW))
    np.subtract(xv.reshape(B, G, Cg * HW), m, out=xm)
    np.multiply(dyv, xm.reshape(B, C, HW), out=t)
    np.sum(t, axis=2, out=sdyx)
    c = self.scratch("gnb_c", (B, C))
    if DW is not None:                                # sum over b of rstd * sdyx
        np.multiply(sdyx.reshape(B, G, Cg), r, out=c.reshape(B, G, Cg))
        s = self.scratch("gnb_s", (C,))
        np.sum(c, axis=0, out=s)
        np.add(DW.reshape(C), s, out=DW.reshape(C))
    if DB is not None:
        s = self.scratch("gnb_s", (C,))
        np.sum(sdy, axis=0, out=s)
        np.add(DB.reshape(C), s, out=DB.reshape(C))
    if DX is None:
        return
    wc = None if weight is None else weight.a.reshape(1, G, Cg)
    g = self.scratch("gnb_g", (B, G, Cg))              # k1 = rstd * weight
    np.copyto(g, r)
    if wc is not None:
        np.multiply(g, wc, out=g)
    n = np.float32(Cg * HW)
    cv = c.reshape(B, G, Cg)
    k2 = self.scratch("gnb_k2", (B, G, 1))            # -rstd^3 sum(w dy (x - m)) / n
    k3 = self.scratch("gnb_k3", (B, G, 1))            # -rstd sum(w dy) / n
    for k, src in ((k2, sdyx), (k3, sdy)):
        if wc is None:
            np.copyto(cv, src.reshape(B, G, Cg))
        else:
            np.multiply(src.reshape(B, G, Cg), wc, out=cv)
        np.sum(cv, axis=2, keepdims=True, out=k)
        np.multiply(k, r, out=k)
        np.divide(k, -n, out=k)
    np.multiply(k2, r, out=k2)
    np.multiply(k2, r, out=k2)
    dxv = DX.reshape(B, C, HW)
    np.multiply(dyv, g.reshape(B, C, 1), out=dxv)
    np.multiply(xm, k2, out=xm)
    np.add(xm, k3, out=xm)
    np.add(dxv, xm.reshape(B, C, HW), out=dxv)
