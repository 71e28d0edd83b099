"""Conv2d: 2-D cross-correlation over NCHW, PyTorch's nn.Conv2d layout, names and init."""

from __future__ import annotations

from ._convnd import ConvNd, out_size

__all__ = ["Conv2d", "out_size"]


class Conv2d(ConvNd):
    """2-D convolution [B, C, H, W] -> [B, out_channels, Ho, Wo] (PyTorch's nn.Conv2d):
    padding an int, a pair, "valid" (0) or "same" (stride 1: the output keeps H x W)."""

    rank = 2
