"""Entry point of the ``cnn`` plugin (see pyproject.toml): registers ``cnn.<ClassName>``."""

from __future__ import annotations

from qorus_core import hookimpl

from .batchnorm import BatchNorm2d
from .conv import Conv2d
from .pooling import AvgPool2d, Flatten, GlobalAvgPool2d, MaxPool2d

LAYERS = (Conv2d, MaxPool2d, AvgPool2d, GlobalAvgPool2d, BatchNorm2d, Flatten)


@hookimpl
def qorus_register_layers(register) -> None:
    """Called once, when Qorus first loads plugins; never per step."""
    for cls in LAYERS:
        register(cls)
