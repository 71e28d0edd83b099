"""qorus-layers-cnn: convolutional layers over NCHW tensors, PyTorch's layouts and names.

``Conv2d``, ``MaxPool2d``, ``AvgPool2d``, ``GlobalAvgPool2d``, ``BatchNorm2d`` and ``Flatten``
register under the namespace ``cnn``; their kernels (im2col + GEMM convolution, pooling,
channel statistics) live in qorus-core, in C with NumPy twins.
"""

from .batchnorm import BatchNorm2d
from .conv import Conv2d
from .pooling import AvgPool2d, Flatten, GlobalAvgPool2d, MaxPool2d

__all__ = ["AvgPool2d", "BatchNorm2d", "Conv2d", "Flatten", "GlobalAvgPool2d", "MaxPool2d"]
__version__ = "0.1.0"
