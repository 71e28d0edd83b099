"""What a network declares, without memory: its parameters' names and shapes.

A loader that maps external weights (GGUF, safetensors) onto a network asks here instead of
tracing the graph itself, so plugins need no access to ``qorus_core.graph``.
"""

from __future__ import annotations

from .errors import ConfigError
from .graph import Graph
from .layer import Layer
from .tensor import Spec


def param_shapes(net: Layer, input_spec: Spec) -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape, in declaration order, for ``net`` fed ``input_spec``: one
    inference trace of the layers' ``build`` (nothing allocated). Tied aliases are left out
    (they share their target's memory); ConfigError or ShapeError when the network cannot be built."""
    if not isinstance(net, Layer):
        raise ConfigError(f"param_shapes: {net!r} is not a qorus Layer")
    if not isinstance(input_spec, Spec):
        raise ConfigError(f"param_shapes: input_spec must be a qorus_core.Spec, got "
                          f"{type(input_spec).__name__} {input_spec!r}")
    g = Graph(train=False)
    g.trace(net, input_spec)
    return {p.name: tuple(p.shape) for p in g.params()}
