"""What a plan of a recurrent layer holds: the optional inputs checked, the parameters and
state buffers (PyTorch's names and order), and the saved and scratch buffers.

Buffers (T steps, B rows, H hidden, G gates, D directions, L layers); saved ones live from
forward to backward, scratch ones within one call:

- ``xt`` [T, B, in]: the input, time-major; ``gates_l{l}[_reverse]`` [T, B, G*H]: the gate
  activations; ``hs_l{l}`` (LSTM: and ``cs_l{l}``) [D*(T+1), B, H]: the states (layout in
  ``views``); GRU: ``hn_l{l}[_reverse]`` [T, B, H] = ``W_hn h + b_hn``;
- ``in_l{l}`` [T, B, D*H]: layer l's input when it cannot read layer l-1's states in place
  (two directions, lengths, or dropout); ``top``: the same for y;
- ``mask`` [T, B, H]: valid positions (lengths); ``stack`` [2T, B, H]: both directions'
  masked outputs before they are concatenated; ``drop`` [L-1, T, B, D*H]: dropout masks;
- ``h0t`` / ``c0t`` [L*D, B, H]: an h0 / c0 input, time-major;
- backward: ``dgates`` (GRU: and ``dhg``) [T, B, G*H]; ``dhs`` / ``dcs`` [L*D, B, H]: the
  state gradients of every direction; ``dseq_a`` / ``dseq_b`` [T, B, D*H]: output gradients
  (two, alternating between layers); ``gsplit`` [2T, B, H]: them split by direction;
  ``dlast`` [2, B, H]; ``keep`` / ``keepc`` [B, H]: a state gradient kept across the cell.
"""

from __future__ import annotations

from typing import Any

from qorus_core import Spec
from qorus_core.errors import ConfigError, ShapeError
from qorus_core.init import Initializer


def check_optional_inputs(layer: Any, where: str, B: int, h0: Spec | None, c0: Spec | None,
                          lengths: Spec | None) -> None:
    """h0 / c0 float32 [B, L*D, H], lengths int32 [B] (or [B, 1]); no state input when
    stateful (the state buffers carry it). ``where`` names the layer in a ConfigError."""
    LD, H = layer.num_layers * layer.num_directions, layer.hidden_size
    for label, s in (("h0", h0), ("c0", c0)):
        if s is not None and (s.shape != (B, LD, H) or s.dtype != "f32"):
            raise ShapeError(f"{label} must be float32 [batch, num_layers * num_directions, "
                             f"hidden_size] = [{B}, {LD}, {H}] (PyTorch's {label[0]}_0 "
                             f"transposed to batch first), got {s.dtype} {s.shape}")
    if lengths is not None and (lengths.shape not in ((B,), (B, 1)) or lengths.dtype != "i32"):
        raise ShapeError(f"lengths must be int32 [{B}] (one length per sequence), got "
                         f"{lengths.dtype} {lengths.shape}")
    if layer.stateful and (h0 is not None or c0 is not None):
        raise ConfigError(f"{where}: stateful carries its state in the h0/c0 buffers; an "
                          "h0/c0 input would replace it")


def declare_params(layer: Any, b: Any, B: int, n_in: int, init: Initializer) -> None:
    """Per layer, the forward then the reverse direction's weights and biases (PyTorch's
    order); the state buffers h0, h_n (c0, c_n) [L*D, B, H]."""
    H, L, D = layer.hidden_size, layer.num_layers, layer.num_directions
    GH = layer.GATES * H
    for l in range(L):
        for sfx in ("", "_reverse")[:D]:
            b.param(f"weight_ih_l{l}{sfx}", (GH, n_in if l == 0 else D * H), init)
            b.param(f"weight_hh_l{l}{sfx}", (GH, H), init)
            if layer.bias:
                b.param(f"bias_ih_l{l}{sfx}", (GH,), init)
                b.param(f"bias_hh_l{l}{sfx}", (GH,), init)
    for s in ("h0", "h_n") + (("c0", "c_n") if layer.HAS_CELL else ()):
        b.state(s, (L * D, B, H), persistent=False)


def declare_buffers(layer: Any, b: Any, B: int, T: int, n_in: int, h0: bool, c0: bool,
                    lengths: bool) -> None:
    """The saved and scratch buffers listed in the module docstring that this plan needs."""
    H, L, D, G = layer.hidden_size, layer.num_layers, layer.num_directions, layer.GATES
    GH, DH, LD, cell = G * H, D * H, L * D, layer.HAS_CELL
    drop = b.train and layer.dropout > 0 and L > 1
    b.saved("xt", (T, B, n_in))
    for l in range(L):
        for sfx in ("", "_reverse")[:D]:
            b.saved(f"gates_l{l}{sfx}", (T, B, GH))
            if G == 3:
                b.saved(f"hn_l{l}{sfx}", (T, B, H))
        b.saved(f"hs_l{l}", (D * (T + 1), B, H))
        if cell:
            b.saved(f"cs_l{l}", (D * (T + 1), B, H))
        if l and (D == 2 or lengths or drop):
            b.saved(f"in_l{l}", (T, B, DH))
    if layer.return_sequences and (D == 2 or lengths):
        b.scratch("top", (T, B, DH))
    if lengths:
        b.saved("mask", (T, B, H))
        if D == 2 and (L > 1 or layer.return_sequences):
            b.scratch("stack", (2 * T, B, H))
    if drop:
        b.saved("drop", (L - 1, T, B, DH))
    for name, given in (("h0t", h0), ("c0t", c0)):
        if given:
            b.scratch(name, (LD, B, H))
    b.scratch("hg", (B, GH))
    if not b.train:
        return
    b.scratch("dgates", (T, B, GH))
    if G == 3:
        b.scratch("dhg", (T, B, GH))
    b.scratch("dhs", (LD, B, H))
    if cell:
        b.scratch("dcs", (LD, B, H))
    b.scratch("dseq_a", (T, B, DH))
    if L > 1:
        b.scratch("dseq_b", (T, B, DH))
    b.scratch("dxt", (T, B, n_in))
    if D == 2:
        b.scratch("gsplit", (2 * T, B, H))
        if not layer.return_sequences:
            b.scratch("dlast", (2, B, H))
    if lengths:
        b.scratch("keep", (B, H))
        if cell:
            b.scratch("keepc", (B, H))
