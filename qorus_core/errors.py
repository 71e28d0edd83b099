"""One exception hierarchy: every error Qorus raises on bad input is a QorusError."""

from __future__ import annotations


class QorusError(Exception):
    """Base of every error Qorus raises for bad input, files or configuration."""


class ShapeError(QorusError, ValueError):
    """A tensor has the wrong shape or dtype (names the layer, position and both shapes)."""


class ConfigError(QorusError, ValueError):
    """A model, layer or training configuration is invalid or names something unknown."""


class RegistryError(QorusError):
    """A plugin failed to load, a name clashes, or a name is not registered."""


class KernelError(QorusError):
    """A kernel was called with arguments it cannot take, or a backend is unavailable."""


class CheckpointError(QorusError):
    """A checkpoint or weights file is missing, truncated, corrupt or does not fit the model."""


class GGUFError(CheckpointError):
    """A GGUF file is truncated, corrupt, or uses a version, type or layout Qorus cannot read."""


class DataError(QorusError):
    """A data set file is missing, malformed, or does not fit the model."""


class NumericsError(QorusError, FloatingPointError):
    """Training produced a non-finite value (NaN or inf loss)."""


def prefixed(exc: QorusError, where: str) -> QorusError:
    """``exc`` again (same class) with ``where: `` in front of its message, so an error raised
    deep in a layer names the file or section it came from; ``exc`` itself if its class cannot
    be made from one message."""
    try:
        return type(exc)(f"{where}: {exc}")
    except Exception:  # noqa: BLE001 - a subclass with another signature
        return exc
