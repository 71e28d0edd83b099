"""qorus-layers-cnn: convolutional layers over NCL / NCHW tensors, PyTorch's layouts and names.

Convolutions (``Conv1d``, ``Conv2d``, ``ConvTranspose1d``, ``ConvTranspose2d``), pooling
(``MaxPool1d``, ``MaxPool2d``, ``AvgPool1d``, ``AvgPool2d``, ``AdaptiveAvgPool1d``,
``AdaptiveAvgPool2d``, ``AdaptiveMaxPool1d``, ``AdaptiveMaxPool2d``, ``GlobalAvgPool2d``),
normalisation (``BatchNorm1d``, ``BatchNorm2d``, ``GroupNorm``), ``Upsample`` and
``Flatten`` register under the namespace ``cnn``; their kernels (im2col + GEMM convolution,
pooling, channel and group statistics, interpolation) live in qorus-core, in C with NumPy
twins.
"""

from .adaptive import AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveMaxPool1d, AdaptiveMaxPool2d
from .batchnorm import BatchNorm1d, BatchNorm2d
from .conv import Conv2d
from .conv1d import Conv1d
from .conv_transpose import ConvTranspose1d, ConvTranspose2d
from .groupnorm import GroupNorm
from .pooling import AvgPool1d, AvgPool2d, Flatten, GlobalAvgPool2d, MaxPool1d, MaxPool2d
from .upsample import Upsample

__all__ = ["AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d",
           "AvgPool1d", "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Conv1d", "Conv2d",
           "ConvTranspose1d", "ConvTranspose2d", "Flatten", "GlobalAvgPool2d", "GroupNorm",
           "MaxPool1d", "MaxPool2d", "Upsample"]
__version__ = "0.1.0"
