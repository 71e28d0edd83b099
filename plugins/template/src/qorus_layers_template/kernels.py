"""The template plugin's kernels: PReLU forward and backward, each a single pass.

Declared exactly as core declares its own (``declare_kernel``): the operands with their roles,
one check shared by both kernel sets, the C call (the symbols live in this plugin's own
library, ``csrc/tpl_kernels.c``, built by its ``pip install``), the examples the derived tests
run, and the NumPy implementation, which is the reference and the fallback. ``plugin.py``
registers them; a layer then calls ``ctx.k.tpl.prelu(...)`` on either kernel set.
"""

from __future__ import annotations

import os

import numpy as np

from qorus_core.kernels import declare_kernel, sizes_error

FAMILY = "tpl"
#: this plugin's library (absent when it was installed without a C compiler: NumPy serves)
LIBRARY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_lib", "libqorus_tpl.so")
_EXAMPLE = dict(x=(6, 10), weight=((10,), -0.5, 0.5))


def check_prelu(kernel: str, x, weight, y):
    """(rows, d) of a PReLU call, or KernelError naming the shapes: x and its output have the
    same size, weight one slope per feature (x's last dimension)."""
    if y.size != x.size or y.cols != x.cols or weight.size != x.cols:
        raise sizes_error(kernel, "must be x [rows, d], weight [d] and an output like x",
                          x=x, weight=weight, y=y)
    return x.rows, x.cols


@declare_kernel(FAMILY, "x weight y:out", check=check_prelu, dims="rows d",
                c="tpl_prelu_f32(x, weight, y, rows, d)", examples=[dict(_EXAMPLE, y=(6, 10))])
def prelu(self, x, weight, y) -> None:
    """y = x where x > 0, else weight * x (weight: one slope per feature, broadcast over
    rows). x, y: [rows, d] (y may alias x); weight: [d]."""
    xm, ym = x.a.reshape(x.rows, x.cols), y.w.reshape(y.rows, y.cols)
    pos = self.scratch("tpl_pos", xm.shape, np.bool_)
    np.greater(xm, 0, out=pos)
    xs = self.scratch("tpl_x", xm.shape)
    np.copyto(xs, xm)                              # y may alias x: keep x
    np.multiply(xs, weight.a.reshape(-1), out=ym)
    np.copyto(ym, xs, where=pos)


def check_prelu_bwd(kernel: str, x, weight, dy, dx, dweight):
    """(rows, d) of a PReLU backward, or KernelError naming the shapes."""
    ok = dy.size == x.size and dy.cols == x.cols and weight.size == x.cols
    ok = ok and (dx is None or (dx.size == x.size and dx.cols == x.cols))
    ok = ok and (dweight is None or dweight.size == x.cols)
    if not ok:
        raise sizes_error(kernel, "must be x, dy, dx [rows, d] and weight, dweight [d]",
                          x=x, weight=weight, dy=dy, dx=dx, dweight=dweight)
    return x.rows, x.cols


@declare_kernel(FAMILY, "x weight dy dx:out? dweight:inout?", check=check_prelu_bwd,
                dims="rows d", c="tpl_prelu_bwd_f32(x, weight, dy, dx, dweight, rows, d)",
                examples=[dict(_EXAMPLE, dy=(6, 10), dx=(6, 10), dweight=(10,)),
                          dict(_EXAMPLE, dy=(6, 10), dx=None, dweight=(10,)),
                          dict(_EXAMPLE, dy=(6, 10), dx=(6, 10), dweight=None)])
def prelu_bwd(self, x, weight, dy, dx, dweight) -> None:
    """dx = dy where x > 0, else weight * dy (written; None: not wanted);
    dweight[j] += sum over rows of dy * x where x <= 0 (added into; None: not wanted).
    x, dy, dx: [rows, d] (dx may alias dy); weight, dweight: [d]."""
    xm, gm = x.a.reshape(x.rows, x.cols), dy.a.reshape(dy.rows, dy.cols)
    # every output view first: a read-only one is refused before anything is written
    dm = None if dx is None else dx.w.reshape(dx.rows, dx.cols)
    dw = None if dweight is None else dweight.w.reshape(-1)
    pos = self.scratch("tpl_pos", xm.shape, np.bool_)
    np.greater(xm, 0, out=pos)
    if dw is not None:
        t = self.scratch("tpl_t", xm.shape)
        np.multiply(gm, xm, out=t)
        np.copyto(t, 0.0, where=pos)
        s = self.scratch("tpl_s", (x.cols,))
        np.sum(t, axis=0, out=s)
        np.add(dw, s, out=dw)
    if dm is not None:
        g = self.scratch("tpl_g", xm.shape)
        np.copyto(g, gm)                           # dx may alias dy: keep dy
        np.multiply(g, weight.a.reshape(-1), out=dm)
        np.copyto(dm, g, where=pos)


KERNELS = (prelu, prelu_bwd)
