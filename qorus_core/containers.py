"""Containers: composites that wire child layers. Their backward is derived by the graph.

Children given as dicts resolve through ``layer_from_dict``, which follows the caller's
``allow_import`` choice (a ``module:Class`` child is refused unless the top-level call, e.g.
``Model.from_config(..., allow_import=True)``, opted in); Layer objects pass through as they
are, registered or not."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .layer import Composite, Layer, layer_from_dict, layer_to_dict
from .tensor import Spec


class Sequential(Composite):
    """Runs its layers one after another; parameters are named ``<index>.<name>``."""

    def __init__(self, layers: Iterable[Layer | dict[str, Any]] = ()) -> None:
        self.layers = [layer_from_dict(l) for l in layers]

    def build(self, x, b):
        for i, layer in enumerate(self.layers):
            x = b.call(layer, x, str(i))
        return x

    def get_config(self) -> dict[str, Any]:
        return {"layers": [layer_to_dict(l) for l in self.layers]}

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i: int) -> Layer:
        return self.layers[i]


class Residual(Composite):
    """y = x + block(x); ``block`` must keep the shape. Parameters: ``block.<...>``."""

    def __init__(self, block: Layer | dict[str, Any]) -> None:
        self.block = layer_from_dict(block)

    def build(self, x, b):
        return b.add(x, b.call(self.block, x, "block"))

    def get_config(self) -> dict[str, Any]:
        return {"block": layer_to_dict(self.block)}


class Add(Layer):
    """y = x + other: the graph's two-input op behind ``LayerBuilder.add`` (not registered)."""

    replayable = True   # inference forward: kernel calls only

    def build(self, x: tuple[Spec, Spec], b) -> Spec:
        return x[0]

    def forward(self, x, ctx):
        ctx.k.add(x, ctx.other, ctx.y)
        return ctx.y

    def backward(self, dy, ctx):
        if ctx.dx is not None:
            ctx.k.copy(dy, ctx.dx)
        if ctx.dother is not None:
            ctx.k.copy(dy, ctx.dother)
        return ctx.dx
