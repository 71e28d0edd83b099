"""Kernels over padded batches of sequences (csrc/fused.c, the "fused" family): the masked
mean over time that sentence encoders pool with. x [B, T, d]; ``pad`` int32 [B, T], nonzero
where the position is padding (a bool input of the graph), or None for no padding.
"""

from __future__ import annotations

import numpy as np

from ...errors import KernelError
from ...tensor import Tensor
from .fused import FAMILY
from .spec import kernel


def check_masked_mean(kernel: str, x: Tensor, pad: Tensor | None, y: Tensor,
                      dy: Tensor | None = None) -> tuple[int, int, int]:
    """(B, T, d) of x [B, T, d], pad [B, T] (or None) and y [B, d] (dy like y), or
    KernelError naming the shapes."""
    if len(x.shape) != 3:
        raise KernelError(f"{kernel}: x {x.shape} must be [B, T, d]")
    B, T, d = (int(n) for n in x.shape)
    if y.size != B * d or (dy is not None and dy.size != B * d):
        raise KernelError(f"{kernel}: the pooled {'dy' if dy is not None else 'y'} must hold "
                          f"[{B}, {d}] for x {x.shape}, got {(dy if dy is not None else y).shape}")
    if pad is not None and (pad.dtype != "i32" or pad.size != B * T):
        raise KernelError(f"{kernel}: pad {pad.shape} ({pad.dtype}) must be int32 [{B}, {T}]")
    return B, T, d


def _keep(pad: Tensor | None, B: int, T: int) -> np.ndarray:
    return np.ones((B, T), bool) if pad is None else pad.a.reshape(B, T) == 0


_PAD = lambda shape: lambda rng: (rng.random(shape) < 0.4).astype(np.int32)  # noqa: E731
_ALL = lambda shape: lambda rng: np.ones(shape, np.int32)  # noqa: E731   every position padding
_EX = [dict(x=(3, 5, 7), pad=_PAD((3, 5)), y=(3, 7)), dict(x=(2, 4, 3), pad=None, y=(2, 3)),
       dict(x=(2, 3, 4), pad=_ALL((2, 3)), y=(2, 4))]
_BAD = [("pad .* must be int32", dict(x=(3, 5, 7), pad=((3, 4), 0, 2), y=(3, 7))),
        ("must hold", dict(x=(3, 5, 7), pad=None, y=(3, 6)))]


@kernel(FAMILY, "x pad:i32? y:out", check=lambda k, x, pad, y: check_masked_mean(k, x, pad, y),
        dims="B T d", c="qr_masked_mean_f32(x, pad, y, B, T, d)", examples=_EX, bad=_BAD)
def masked_mean(self, x: Tensor, pad: Tensor | None, y: Tensor) -> None:
    """y [B, d] = the mean of x [B, T, d] over the positions pad leaves in (0 for a row of
    padding only: sentence-transformers' mean pooling)."""
    B, T, d = check_masked_mean("masked_mean", x, pad, y)
    Y = y.w.reshape(B, d)
    keep = _keep(pad, B, T)
    X = x.a.reshape(B, T, d)
    for b in range(B):
        n = int(keep[b].sum())
        Y[b] = X[b][keep[b]].sum(axis=0) / np.float32(n) if n else 0.0


_EXB = [dict(dy=(3, 7), pad=_PAD((3, 5)), dx=(3, 5, 7)), dict(dy=(2, 3), pad=None, dx=(2, 4, 3)),
        dict(dy=(2, 4), pad=_ALL((2, 3)), dx=(2, 3, 4))]


@kernel(FAMILY, "dy pad:i32? dx:out",
        check=lambda k, dy, pad, dx: check_masked_mean(k, dx, pad, dy, dy), dims="B T d",
        c="qr_masked_mean_bwd_f32(dy, pad, dx, B, T, d)", examples=_EXB,
        bad=[("pad .* must be int32", dict(dy=(3, 7), pad=((3, 4), 0, 2), dx=(3, 5, 7)))])
def masked_mean_bwd(self, dy: Tensor, pad: Tensor | None, dx: Tensor) -> None:
    """dx [B, T, d] (written) = dy[b] / n_b at the positions kept, 0 at padding."""
    B, T, d = check_masked_mean("masked_mean_bwd", dx, pad, dy, dy)
    DX = dx.w.reshape(B, T, d)
    keep = _keep(pad, B, T)
    n = keep.sum(axis=1).astype(np.float32)
    DX[:] = np.where(keep[:, :, None], dy.a.reshape(B, 1, d) / np.maximum(n, 1)[:, None, None],
                     np.float32(0.0))
