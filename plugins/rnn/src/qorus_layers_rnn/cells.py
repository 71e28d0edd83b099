"""rnn.RNN, rnn.LSTM, rnn.GRU: the per-step cell calls on top of ``recurrent.Recurrent``.

Parameter names, shapes and gate orders are PyTorch's (``nn.RNN/LSTM/GRU(batch_first=True)``):
``weight_ih_l{k}`` [G*H, in], ``weight_hh_l{k}`` [G*H, H], ``bias_ih_l{k}``, ``bias_hh_l{k}``
[G*H] (and the same with ``_reverse`` for the reverse direction); LSTM gates (i, f, g, o), GRU
gates (r, z, n) with n = tanh(W_in x + b_in + r * (W_hn h + b_hn)). So a PyTorch
``state_dict()`` loads as is.
"""

from __future__ import annotations

from typing import Any

from qorus_core import Tensor

from .recurrent import Recurrent
from .views import Direction


class RNN(Recurrent):
    """Elman RNN with tanh: h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)."""

    GATES = 1
    inputs = ("x", "h0?", "lengths?")

    def _step(self, k: Any, d: Direction, t: int, hg: Tensor) -> None:
        k.rnn_cell(d.gate_t[t], hg, d.b_hh, d.h_out[t])

    def _step_bwd(self, k: Any, d: Direction, t: int, dyt: Tensor | None, dh: Tensor,
                  dc: Tensor | None, dg: Tensor, dhh: Tensor) -> None:
        k.rnn_cell_bwd(d.h_out[t], dh, dyt, dg)


class LSTM(Recurrent):
    """LSTM: c_t = f * c_{t-1} + i * g, h_t = o * tanh(c_t); state h0/c0 in, h_n/c_n out."""

    GATES = 4
    HAS_CELL = True
    inputs = ("x", "h0?", "c0?", "lengths?")

    def _step(self, k: Any, d: Direction, t: int, hg: Tensor) -> None:
        g = d.gate_t[t]
        k.lstm_cell(g, hg, d.b_hh, d.c_prev[t], g, d.c_out[t], d.h_out[t])

    def _step_bwd(self, k: Any, d: Direction, t: int, dyt: Tensor | None, dh: Tensor,
                  dc: Tensor | None, dg: Tensor, dhh: Tensor) -> None:
        k.lstm_cell_bwd(d.gate_t[t], d.c_prev[t], d.c_out[t], dh, dyt, dc, dg)


class GRU(Recurrent):
    """GRU (PyTorch's): h_t = (1 - z) * n + z * h_{t-1}, n = tanh(x_n + r * (W_hn h + b_hn))."""

    GATES = 3
    _DH_BETA = 1.0
    inputs = ("x", "h0?", "lengths?")

    def _step(self, k: Any, d: Direction, t: int, hg: Tensor) -> None:
        g = d.gate_t[t]
        k.gru_cell(g, hg, d.b_hh, d.h_prev[t], g, d.hn_t[t], d.h_out[t])

    def _step_bwd(self, k: Any, d: Direction, t: int, dyt: Tensor | None, dh: Tensor,
                  dc: Tensor | None, dg: Tensor, dhh: Tensor) -> None:
        k.gru_cell_bwd(d.gate_t[t], d.hn_t[t], d.h_prev[t], dh, dyt, dg, dhh)
