"""Which tests need an oracle, so `tox -e parity` runs only those (the `c` env ran the rest).

An *oracle test file* names one of the oracles (PyTorch, transformers, tokenizers, gguf,
safetensors, sentencepiece) or one of the real model files (SmolLM2, Gemma 3) anywhere in its
text; reading the text, not a hand-kept list, means a new test file that imports torch is
picked up without anyone remembering to. With ``QORUS_ORACLE_TESTS_ONLY=1`` (set by the parity
env) every test outside those files is deselected.

The selection is guarded both ways, so it cannot hide a test:
- everywhere: a test that skips because an oracle or a model file is missing, in a file the
  selection would not pick (the oracle came in through a helper module, say), fails and says
  so: the parity env would never run it;
- in the parity env: a test that skips because an oracle or a model file is missing fails,
  since that env exists to provide them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ORACLE_NAMES = ("torch", "transformers", "tokenizers", "gguf", "safetensors", "sentencepiece",
                "smollm2", "gemma3")
_NAMED_IN_TEXT = re.compile(r"\b(" + "|".join(ORACLE_NAMES) + r")", re.IGNORECASE)
# The reasons an oracle's absence gives: pytest.importorskip's, and the model files' markers
# (tests/smollm2.py, tests/gemma3_file.py)
_ORACLE_SKIP = re.compile(
    r"could not import '(" + "|".join(ORACLE_NAMES[:6]) + r")[.']"
    r"|SmolLM2 GGUF not found|Gemma 3 270M GGUF not found")

ONLY_ENV = "QORUS_ORACLE_TESTS_ONLY"


class OracleGate:
    """The pytest plugin: the selection and its two guards."""

    def __init__(self, only: bool) -> None:
        self.only = only
        self._by_file: dict[Path, bool] = {}

    def is_oracle_file(self, path: Path) -> bool:
        if path not in self._by_file:
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                text = ""
            self._by_file[path] = bool(_NAMED_IN_TEXT.search(text))
        return self._by_file[path]

    def pytest_collection_modifyitems(self, config, items) -> None:
        if not self.only:
            return
        keep = [item for item in items if self.is_oracle_file(Path(item.path))]
        drop = [item for item in items if not self.is_oracle_file(Path(item.path))]
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if not report.skipped or not isinstance(report.longrepr, tuple):
            return
        reason = str(report.longrepr[2])
        if not _ORACLE_SKIP.search(reason):
            return
        if self.only:
            why = "the parity env provides every oracle and model file, yet this test skipped"
        elif not self.is_oracle_file(Path(item.path)):
            why = (f"{item.path.name} names no oracle ({', '.join(ORACLE_NAMES)}), so "
                   f"tox -e parity would never run this test; name the oracle in the file")
        else:
            return
        report.outcome = "failed"
        report.longrepr = f"{why}: {reason}"

    @pytest.hookimpl(hookwrapper=True)
    def pytest_make_collect_report(self, collector):
        # a module-level importorskip skips the whole file at collection
        outcome = yield
        report = outcome.get_result()
        if not (report.skipped and isinstance(report.longrepr, tuple)):
            return
        reason = str(report.longrepr[2])
        if not _ORACLE_SKIP.search(reason):
            return
        path = Path(str(collector.path))
        if self.only:
            why = "the parity env provides every oracle and model file, yet this file skipped"
        elif path.suffix == ".py" and not self.is_oracle_file(path):
            why = f"{path.name} names no oracle, so tox -e parity would never run it"
        else:
            return
        report.outcome = "failed"
        report.longrepr = f"{why}: {reason}"


def register(config) -> None:
    config.pluginmanager.register(OracleGate(os.environ.get(ONLY_ENV) == "1"), "qorus-oracle-gate")
