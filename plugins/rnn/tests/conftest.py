"""Let the tests import the package from ``src/`` even before ``pip install -e .``; the entry
point tests need the installed distribution and skip without it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("qorus_layers_rnn") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
