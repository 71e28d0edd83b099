"""Entry point of the ``cnn`` plugin (see pyproject.toml): registers ``cnn.<ClassName>``."""

from __future__ import annotations

from qorus_core import hookimpl

from .adaptive import AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveMaxPool1d, AdaptiveMaxPool2d
from .batchnorm import BatchNorm1d, BatchNorm2d
from .conv import Conv2d
from .conv1d import Conv1d
from .conv_transpose import ConvTranspose1d, ConvTranspose2d
from .groupnorm import GroupNorm
from .pooling import AvgPool1d, AvgPool2d, Flatten, GlobalAvgPool2d, MaxPool1d, MaxPool2d
from .upsample import Upsample

LAYERS = (Conv2d, Conv1d, ConvTranspose2d, ConvTranspose1d, MaxPool2d, MaxPool1d, AvgPool2d,
          AvgPool1d, AdaptiveAvgPool2d, AdaptiveAvgPool1d, AdaptiveMaxPool2d, AdaptiveMaxPool1d,
          GlobalAvgPool2d, BatchNorm2d, BatchNorm1d, GroupNorm, Upsample, Flatten)


@hookimpl
def qorus_register_layers(register) -> None:
    """Called once, when Qorus first loads plugins; never per step."""
    for cls in LAYERS:
        register(cls)
