"""Entry point of the ``rnn`` plugin (see pyproject.toml): registers ``rnn.<ClassName>``."""

from __future__ import annotations

from qorus_core import hookimpl

from .cells import GRU, LSTM, RNN

LAYERS = (RNN, LSTM, GRU)


@hookimpl
def qorus_register_layers(register) -> None:
    """Called once, when Qorus first loads plugins; never per step."""
    for cls in LAYERS:
        register(cls)
