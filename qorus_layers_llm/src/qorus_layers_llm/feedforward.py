"""FeedForward: GPT-2's MLP, proj(act(fc(x))), from the ``mlp`` plugin's layers by name."""

from __future__ import annotations

from typing import Any

from qorus_core import Composite, Layer, layer_from_dict
from qorus_core.errors import ShapeError
from qorus_core.validate import boolean, choice, maybe, positive_int

#: activation name -> the registered layer that computes it
ACTIVATIONS: dict[str, dict[str, Any]] = {
    "gelu": {"type": "mlp.GELU"},
    "gelu_tanh": {"type": "mlp.GELU", "approximate": "tanh"},
    "relu": {"type": "mlp.ReLU"},
}


class FeedForward(Composite):
    """d_model -> d_ff -> d_model with an activation between; params ``fc.weight`` (d_ff, d),
    ``fc.bias``, ``proj.weight`` (d, d_ff), ``proj.bias`` (PyTorch's Linear layout)."""

    def __init__(self, d_model: int, d_ff: int | None = None, activation: str = "gelu",
                 bias: bool = True) -> None:
        name = "llm.FeedForward"
        self.d_model = positive_int(d_model, "d_model", name)
        d_ff = maybe(positive_int, d_ff, "d_ff", name)
        self.d_ff = 4 * self.d_model if d_ff is None else d_ff
        self.activation = choice(activation, "activation", name, sorted(ACTIVATIONS))
        self.bias = boolean(bias, "bias", name)

    def children(self) -> tuple[Layer, Layer, Layer]:
        """The fc, activation and proj layers (looked up in the registry)."""
        return (layer_from_dict({"type": "mlp.Linear", "in_features": self.d_model,
                                 "out_features": self.d_ff, "bias": self.bias}),
                layer_from_dict(ACTIVATIONS[self.activation]),
                layer_from_dict({"type": "mlp.Linear", "in_features": self.d_ff,
                                 "out_features": self.d_model, "bias": self.bias}))

    def build(self, x, b):
        """``proj(act(fc(x)))`` over the last dimension."""
        if x.shape[-1] != self.d_model:
            raise ShapeError(f"{b.path or 'FeedForward'}: expected last dimension {self.d_model}, "
                             f"got {x.shape}")
        fc, act, proj = self.children()
        return b.call(proj, b.call(act, b.call(fc, x, "fc"), "act"), "proj")
