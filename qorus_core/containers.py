"""Containers: composites that wire child layers. Their backward is derived by the graph.

Children given as dicts resolve through ``layer_from_dict``, which follows the caller's
``allow_import`` choice (a ``module:Class`` child is refused unless the top-level call, e.g.
``Model.from_config(..., allow_import=True)``, opted in); Layer objects pass through as they
are, registered or not."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .layer import Composite, Layer, layer_from_dict, layer_to_dict


class Sequential(Composite):
    """Runs its layers one after another; parameters are named ``<index>.<name>``."""

    def __init__(self, layers: Iterable[Layer | dict[str, Any]] = ()) -> None:
        self.layers = [layer_from_dict(l) for l in layers]

    def build(self, x, b):
        """Each layer applied to the previous one's output; child ``i``'s parameters are named
        ``i.<name>``."""
        for i, layer in enumerate(self.layers):
            x = b.call(layer, x, str(i))
        return x

    def get_config(self) -> dict[str, Any]:
        """``{"layers": [each layer's dict]}``."""
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
        """``x + block(x)``; the block's parameters are named ``block.<name>``."""
        return b.add(x, b.call(self.block, x, "block"))

    def get_config(self) -> dict[str, Any]:
        """``{"block": the block's dict}``."""
        return {"block": layer_to_dict(self.block)}
