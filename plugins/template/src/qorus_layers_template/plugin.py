"""Entry point of the ``tpl`` plugin (see pyproject.toml): registers ``tpl.<ClassName>`` layers
and the ``tpl.<name>`` kernels (``k.tpl.prelu`` on both kernel sets)."""

from __future__ import annotations

from qorus_core import hookimpl

from .blocks import ResidualMLP
from .kernels import KERNELS, LIBRARY
from .prelu import PReLU

LAYERS = (PReLU, ResidualMLP)


@hookimpl
def qorus_register_layers(register) -> None:
    """Called once, when Qorus first loads plugins; never per step."""
    for cls in LAYERS:
        register(cls)


@hookimpl
def qorus_register_kernels(register) -> None:
    """The kernels, with this plugin's own C library (absent: they run in NumPy)."""
    for k in KERNELS:
        register(k, library=LIBRARY)
