"""Entry point of the ``tpl`` plugin (see pyproject.toml): registers ``tpl.<ClassName>``."""

from __future__ import annotations

from qorus_core import hookimpl

from .blocks import ResidualMLP
from .prelu import PReLU

LAYERS = (PReLU, ResidualMLP)


@hookimpl
def qorus_register_layers(register) -> None:
    """Called once, when Qorus first loads plugins; never per step."""
    for cls in LAYERS:
        register(cls)
