"""rnn.RNN, rnn.LSTM, rnn.GRU: the per-step cell calls on top of ``recurrent.Recurrent``.

Parameter names, shapes and gate orders are PyTorch's (``nn.RNN/LSTM/GRU(batch_first=True)``):
``weight_ih_l{k}`` [G*H, in], ``weight_hh_l{k}`` [G*H, H], ``bias_ih_l{k}``, ``bias_hh_l{k}``
[G*H]; LSTM gates (i, f, g, o), GRU gates (r, z, n) with n = tanh(W_in x + b_in +
r * (W_hn h + b_hn)). So a PyTorch ``state_dict()`` loads as is.
"""

from __future__ import annotations

from .recurrent import Recurrent, _Steps


class RNN(Recurrent):
    """Elman RNN with tanh: h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)."""

    GATES = 1

    def _step(self, k, S: _Steps, l: int, t: int, hg) -> None:
        g = S.gate_t[l][t]
        k.rnn_cell(g, hg, S.b_hh[l], S.hs_t[l][t + 1])

    def _step_bwd(self, k, S: _Steps, l: int, t: int, dyt, ctx) -> None:
        k.rnn_cell_bwd(S.hs_t[l][t + 1], ctx.dh, dyt, S.dgates_t[t])


class LSTM(Recurrent):
    """LSTM: c_t = f * c_{t-1} + i * g, h_t = o * tanh(c_t); state h0/c0 in, h_n/c_n out."""

    GATES = 4
    HAS_CELL = True

    def _step(self, k, S: _Steps, l: int, t: int, hg) -> None:
        g, cs = S.gate_t[l][t], S.cs_t[l]
        k.lstm_cell(g, hg, S.b_hh[l], cs[t], g, cs[t + 1], S.hs_t[l][t + 1])

    def _step_bwd(self, k, S: _Steps, l: int, t: int, dyt, ctx) -> None:
        cs = S.cs_t[l]
        k.lstm_cell_bwd(S.gate_t[l][t], cs[t], cs[t + 1], ctx.dh, dyt, ctx.dc, S.dgates_t[t])


class GRU(Recurrent):
    """GRU (PyTorch's): h_t = (1 - z) * n + z * h_{t-1}, n = tanh(x_n + r * (W_hn h + b_hn))."""

    GATES = 3
    _DH_BETA = 1.0

    def _step(self, k, S: _Steps, l: int, t: int, hg) -> None:
        g = S.gate_t[l][t]
        k.gru_cell(g, hg, S.b_hh[l], S.hs_t[l][t], g, S.hn_t[l][t], S.hs_t[l][t + 1])

    def _step_bwd(self, k, S: _Steps, l: int, t: int, dyt, ctx) -> None:
        k.gru_cell_bwd(S.gate_t[l][t], S.hn_t[l][t], S.hs_t[l][t], ctx.dh, dyt, S.dgates_t[t],
                       S.dhh_t[t])
