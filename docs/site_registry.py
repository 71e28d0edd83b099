"""The plugin registry the generated pages describe: core and the first-party plugins only.

Entry-point autoloading is off, and each first-party plugin is added explicitly
(``Registry.add_plugin``), so the pages are the same whether or not the packages are
installed (the docs env only puts their sources on ``PYTHONPATH``) and a developer's own
plugins never leak into them. Imported by the ``gen_*.py`` scripts.
"""

from __future__ import annotations

import importlib
from functools import cache

#: namespace -> (plugin module, distribution), as in each package's pyproject.toml
FIRST_PARTY = {
    "mlp": ("qorus_layers_mlp.plugin", "qorus-layers-mlp"),
    "llm": ("qorus_layers_llm.plugin", "qorus-layers-llm"),
    "cnn": ("qorus_layers_cnn.plugin", "qorus-layers-cnn"),
    "rnn": ("qorus_layers_rnn.plugin", "qorus-layers-rnn"),
    "tpl": ("qorus_layers_template.plugin", "qorus-layers-template"),
}


@cache
def registry():
    """The default registry, replaced by one holding core and the first-party plugins."""
    from qorus_core.registry import Registry, reset_registry

    reg = Registry(autoload=False, strict=True)
    for namespace, (module, _dist) in FIRST_PARTY.items():
        reg.add_plugin(namespace, importlib.import_module(module))
    reset_registry(reg)
    return reg
