"""``qorus convert``: importing this module adds the subcommand (see qorus_core.cli)."""

from __future__ import annotations

from ..cli import add_command
from .convert import _run, _setup

add_command("convert", "convert safetensors or GGUF weights to a GGUF of another type", _setup, _run)
