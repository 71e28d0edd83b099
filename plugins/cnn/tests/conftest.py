"""Let the tests import the package from ``src/`` even before ``pip install -e plugins/cnn``;
the entry point and ``qorus layers`` tests need the installed distribution and skip without it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("qorus_layers_cnn") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import pytest  # noqa: E402

from qorus_core.kernels import c_status  # noqa: E402


@pytest.fixture(params=["numpy"] + (["c"] if c_status()[0] else []))
def kernels(request) -> str:
    """Each test using this runs once per available kernel set."""
    return request.param
