"""Core's own items and commands, registered under the namespace ``core`` through the ordinary hooks.

Going through the same mechanism as third-party plugins keeps one code path for naming,
listing and failure reporting. Imports are inside the hooks so loading the registry stays cheap.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from .hookspecs import Register, hookimpl


@hookimpl
def qorus_register_layers(register: Register) -> None:
    """Core's layers: ``core.Sequential``, ``core.Residual``, ``core.Functional`` and the graph ops
    (``core.Add``, ``core.Concat``, ...)."""
    from .containers import Residual, Sequential
    from .functional import Functional

    register(Sequential)
    register(Residual)
    register(Functional)
    from .ops import OPS

    for name, cls in OPS.items():
        register(cls, name)


@hookimpl
def qorus_register_losses(register: Register) -> None:
    """Core's losses under their short names (``core.CrossEntropy``, ``core.MSE``, ...)."""
    from .train.losses import LOSSES

    for name, cls in LOSSES.items():
        register(cls, name)


@hookimpl
def qorus_register_optimizers(register: Register) -> None:
    """Core's optimizers: ``core.SGD``, ``core.Adam``, ``core.AdamW``."""
    from .train.optimizers import OPTIMIZERS

    for name, cls in OPTIMIZERS.items():
        register(cls, name)


@hookimpl
def qorus_register_commands(add_command: Any) -> None:
    """``qorus train``, ``qorus bench`` and ``qorus convert``, added like any plugin's commands
    (the modules that hold them never import ``qorus_core.cli``). One that cannot be imported
    is reported on stderr and left out; the others still work."""
    for name, help, load in _CORE_COMMANDS:
        try:
            setup, run = load()
        except Exception as exc:  # one broken command must not take the others down
            print(f"qorus: command {name!r} unavailable: {type(exc).__name__}: {exc}",
                  file=sys.stderr)
            continue
        add_command(name, help, setup, run)


def _train() -> tuple[Any, Any]:
    from .train.cli_train import _run, _setup

    return _setup, _run


def _bench() -> tuple[Any, Any]:
    from .kernels.bench_cli import run, setup

    return setup, run


def _kernels() -> tuple[Any, Any]:
    from .kernels.listing import run, setup

    return setup, run


def _convert() -> tuple[Any, Any]:
    from .io.cli_convert import run, setup

    return setup, run


#: (name, help, loader of (setup_parser, run)): imported when ``qorus`` builds its parser.
_CORE_COMMANDS: tuple[tuple[str, str, Callable[[], tuple[Any, Any]]], ...] = (
    ("train", "train a model from a TOML config", _train),
    ("bench", "benchmarks: `qorus bench kernels`", _bench),
    ("convert", "convert safetensors, GGUF or a Hugging Face decoder directory to a GGUF of "
                "another type", _convert),
    ("kernels", "list the kernels: family, C tiers on this CPU, what each computes", _kernels),
)


@hookimpl
def qorus_register_callbacks(register: Register) -> None:
    """Core's training callbacks (``core.EarlyStopping``, ``core.ModelCheckpoint``, ...)."""
    from .train.callbacks import CALLBACKS

    for name, cls in CALLBACKS.items():
        register(cls, name)
