"""Conv1d: 1-D cross-correlation over [B, C, L], PyTorch's nn.Conv1d layout, names and init."""

from __future__ import annotations

from ._convnd import ConvNd


class Conv1d(ConvNd):
    """1-D convolution [B, C, L] -> [B, out_channels, Lo] (PyTorch's nn.Conv1d): weight
    [out, in/groups, k]; padding an int, "valid" or "same" (stride 1). It runs on the 2-D
    kernels as a convolution of height 1 (views, no copy)."""

    rank = 1
