"""Fake third-party plugins for the registry tests: the source of a plugin module that
registers one layer (the tests write it into a package of a fake or pip-installed
distribution)."""

from __future__ import annotations


def layer_plugin(cls: str, doc: str) -> str:
    """The source of a plugin module whose ``qorus_register_layers`` registers one layer
    class ``cls`` (an identity ``Layer`` documented by ``doc``)."""
    return f'''
from qorus_core.hookspecs import hookimpl
from qorus_core.layer import Layer


class {cls}(Layer):
    """{doc}"""


@hookimpl
def qorus_register_layers(register):
    register({cls})
'''
