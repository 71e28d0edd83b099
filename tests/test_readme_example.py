"""The README's layer-package example runs and passes the gradient check."""

from __future__ import annotations

from pathlib import Path

from qorus_core import Sequential
from qorus_core.testing import check_gradients


def test_readme_layer_example():
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = text.index("from qorus_core import Composite")
    code = text[start:text.index("```", start)]
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)
    registered = []
    ns["qorus_register_layers"](registered.append)
    assert [c.__name__ for c in registered] == ["Square", "FeedForward"]
    net = Sequential([ns["Square"](), ns["FeedForward"](8)])
    assert check_gradients(net, (4,)).checked > 0


def test_readme_functional_example(capsys):
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = text.index("import numpy as np\nfrom qorus_core import Input")
    code = text[start:text.index("```", start)]
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)
    assert set(ns["out"]) == {"score", "diff"} and ns["out"]["score"].shape == (256, 3)
    assert "val_score_accuracy" in ns["trainer"].history[-1]
    assert "core.Concat" in capsys.readouterr().out
