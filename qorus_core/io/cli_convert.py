"""``qorus convert``: its parser setup and run, registered by the core plugin
(``builtin_plugin.py``); this module does not import the CLI."""

from __future__ import annotations

from .convert import _run as run
from .convert import _setup as setup

__all__ = ["run", "setup"]
