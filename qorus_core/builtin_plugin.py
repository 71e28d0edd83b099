"""Core's own items, registered under the namespace ``core`` through the ordinary hooks.

Going through the same mechanism as third-party plugins keeps one code path for naming,
listing and failure reporting. Imports are inside the hooks so loading the registry stays cheap.
"""

from __future__ import annotations

from .hookspecs import Register, hookimpl


@hookimpl
def qorus_register_layers(register: Register) -> None:
    from .containers import Residual, Sequential

    register(Sequential)
    register(Residual)


@hookimpl
def qorus_register_losses(register: Register) -> None:
    from .train.losses import LOSSES

    for name, cls in LOSSES.items():
        register(cls, name)


@hookimpl
def qorus_register_optimizers(register: Register) -> None:
    from .train.optimizers import OPTIMIZERS

    for name, cls in OPTIMIZERS.items():
        register(cls, name)
