"""Recurrent cell kernels (csrc/rnn.c): tanh RNN, LSTM, GRU, each with its backward, and the
batch-first / time-major transpose.

A recurrent layer computes the input pre-activations of every timestep in one GEMM
(``xg = x W_ih^T + b_ih``) and, per step, ``hg = h_{t-1} W_hh^T`` with the ordinary GEMM; a cell
kernel then adds ``b_hh``, applies the nonlinearities and updates the state of one timestep.
Gate layouts are PyTorch's. Shapes (float32, row-major; ``G`` gates):

- ``xg``, ``hg``, ``gates``, ``dxg``, ``dhg``: [B, G*H]; ``b_hh``: [G*H] or None (no bias);
- ``h``, ``h_prev``, ``c``, ``c_prev``, ``hn``, ``dh``, ``dc``, ``dy``: [B, H];
- ``seq_transpose``: x [A, B, C] -> y [B, A, C] (batch-first <-> time-major).

RNN (G=1): h = tanh(xg + hg + b_hh).
LSTM (G=4, gates i, f, g, o): c = f * c_prev + i * g, h = o * tanh(c).
GRU (G=3, gates r, z, n): n = tanh(xg_n + r * (hg_n + b_hn)), h = (1 - z) * n + z * h_prev.

The backward kernels take ``dh``, the gradient reaching h_t through the recurrence, plus
``dy`` (the layer output's gradient at step t, or None) and return pre-activation gradients.
"""

from __future__ import annotations

import numpy as np

from ...errors import KernelError
from ...tensor import Tensor
from .spec import EXACT, Fit, kernel

FAMILY = "rnn"
_TOL = (2e-5, 2e-6)


def _cell(gates: int, state: str, wide: str, narrow: str = "", bias: str = "") -> Fit:
    """The check of a cell kernel: (B, H) from ``state`` [B, H]; each of ``wide`` (names) must
    be [B, gates*H], each of ``narrow`` [B, H], ``bias`` [gates*H] (an optional one: or None)."""
    shapes = {wide: (f"[B, {gates}*H]", f"{{t}}.rows == B and {{t}}.cols == {gates} * H"),
              narrow: ("[B, H]", "{t}.rows == B and {t}.cols == H"),
              bias: (f"[{gates}*H]", f"{{t}}.size == {gates} * H")}
    shapes.pop("", None)
    want = ", ".join(f"{'/'.join(names.split())} {shape}" for names, (shape, _) in shapes.items())
    return Fit({"B": f"{state}.rows", "H": f"{state}.cols"},
               {names: cond for names, (_, cond) in shapes.items()},
               f"do not fit {state} [B={{B}}, H={{H}}]: expected {want}")


def transpose_dims(kernel: str, x: Tensor, y: Tensor) -> tuple[int, int, int]:
    """(A, B, C) for x [A, B, C] and y [B, A, C], or KernelError."""
    if len(x.shape) != 3 or tuple(y.shape) != (x.shape[1], x.shape[0], x.shape[2]):
        raise KernelError(f"{kernel}: x {x.shape} must be [A, B, C] and y {y.shape} [B, A, C]")
    return int(x.shape[0]), int(x.shape[1]), int(x.shape[2])


def _sig(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = 1 / (1 + exp(-x)) in float32 (may alias x); exp overflowing to inf gives 0."""
    np.negative(x, out=out)
    with np.errstate(over="ignore"):
        np.exp(out, out=out)
    np.add(out, np.float32(1.0), out=out)
    return np.reciprocal(out, out=out)


def check_seq_transpose(kernel: str, x: Tensor, y: Tensor) -> tuple[int, int, int]:
    """The dimensions of a batch-major/time-major transpose; x and y must not overlap."""
    dims = transpose_dims(kernel, x, y)
    if x.p < y.p + 4 * y.size and y.p < x.p + 4 * x.size:
        raise KernelError(f"{kernel}: x {x.shape} and y {y.shape} overlap")
    return dims


def _pre(self, key: str, xg: Tensor, hg: Tensor, b_hh: Tensor | None) -> np.ndarray:
    """xg + hg (+ b_hh) as [B, G*H] in a scratch array."""
    s = self.scratch(key, (xg.rows, xg.cols))
    np.add(xg.a.reshape(s.shape), hg.a.reshape(s.shape), out=s)
    if b_hh is not None:
        np.add(s, b_hh.a.reshape(-1), out=s)
    return s


def _dh_total(self, key: str, dh: Tensor, dy: Tensor | None, shape: tuple[int, int]) -> np.ndarray:
    t = self.scratch(key, shape)
    if dy is None:
        np.copyto(t, dh.a.reshape(shape))
    else:
        np.add(dh.a.reshape(shape), dy.a.reshape(shape), out=t)
    return t


@kernel(FAMILY, "x y:out", check=check_seq_transpose, dims="A B C",
        c="qr_seq_transpose_f32(x, y, A, B, C)", tol=EXACT,
        examples=[dict(x=(3, 4, 5), y=(4, 3, 5))])
def seq_transpose(self, x: Tensor, y: Tensor) -> None:
    """y[b, a, :] = x[a, b, :]; x [A, B, C], y [B, A, C] (must not overlap)."""
    np.copyto(y.w, x.a.transpose(1, 0, 2))


@kernel(FAMILY, "xg hg b_hh? h:out", check=_cell(1, "h", "xg hg", bias="b_hh"),
        c="qr_rnn_cell_f32(xg, hg, b_hh, h, B, H)", tol=_TOL,
        examples=[dict(xg=(3, 5), hg=(3, 5), b_hh=(5,), h=(3, 5)),
                  dict(xg=(3, 5), hg=(3, 5), b_hh=None, h=(3, 5))])
def rnn_cell(self, xg: Tensor, hg: Tensor, b_hh: Tensor | None, h: Tensor) -> None:
    """h [B, H] = tanh(xg + hg + b_hh); xg, hg [B, H], b_hh [H] or None."""
    B, H = h.rows, h.cols
    hh = h.w.reshape(B, H)
    s = _pre(self, "rnn_pre", xg, hg, b_hh)
    np.tanh(s, out=hh)


@kernel(FAMILY, "h dh dy? dg:out", check=_cell(1, "h", "dg", "dh dy"),
        c="qr_rnn_cell_bwd_f32(h, dh, dy, dg, B, H)", tol=EXACT,
        examples=[dict(h=((3, 5), -0.9, 0.9), dh=(3, 5), dy=(3, 5), dg=(3, 5)),
                  dict(h=((3, 5), -0.9, 0.9), dh=(3, 5), dy=None, dg=(3, 5))])
def rnn_cell_bwd(self, h: Tensor, dh: Tensor, dy: Tensor | None, dg: Tensor) -> None:
    """dg [B, H] = (dh + dy) * (1 - h^2): the gradient of the pre-activation; dy may be
    None. dg may alias dh."""
    B, H = h.rows, h.cols
    DG = dg.w.reshape(B, H)
    t = _dh_total(self, "rnn_dh", dh, dy, (B, H))
    hh = h.a.reshape(B, H)
    u = self.scratch("rnn_u", (B, H))
    np.multiply(hh, hh, out=u)
    np.subtract(np.float32(1.0), u, out=u)
    np.multiply(t, u, out=DG)


@kernel(FAMILY, "xg hg b_hh? c_prev gates:out c:out h:out",
        check=_cell(4, "c", "xg hg gates", "c_prev h", "b_hh"),
        c="qr_lstm_cell_f32(xg, hg, b_hh, c_prev, gates, c, h, B, H)", tol=_TOL,
        examples=[dict(xg=(3, 20), hg=(3, 20), b_hh=(20,), c_prev=(3, 5), gates=(3, 20),
                       c=(3, 5), h=(3, 5))])
def lstm_cell(self, xg: Tensor, hg: Tensor, b_hh: Tensor | None, c_prev: Tensor,
              gates: Tensor, c: Tensor, h: Tensor) -> None:
    """One LSTM step. xg, hg [B, 4H] (gate order i, f, g, o), b_hh [4H] or None, c_prev
    [B, H]. Writes gates [B, 4H] = (sigmoid i, sigmoid f, tanh g, sigmoid o) (may alias
    xg), c = f * c_prev + i * g and h = o * tanh(c) [B, H]."""
    B, H = c.rows, c.cols
    gg, cc, hh = gates.w.reshape(B, 4 * H), c.w.reshape(B, H), h.w.reshape(B, H)
    s = _pre(self, "lstm_pre", xg, hg, b_hh)
    _sig(s[:, :2 * H], s[:, :2 * H])
    np.tanh(s[:, 2 * H:3 * H], out=s[:, 2 * H:3 * H])
    _sig(s[:, 3 * H:], s[:, 3 * H:])
    i, f, g, o = s[:, :H], s[:, H:2 * H], s[:, 2 * H:3 * H], s[:, 3 * H:]
    u = self.scratch("lstm_u", (B, H))
    np.multiply(f, c_prev.a.reshape(B, H), out=u)
    np.multiply(i, g, out=cc)
    np.add(u, cc, out=cc)
    np.tanh(cc, out=u)
    np.multiply(o, u, out=hh)
    np.copyto(gg, s)


@kernel(FAMILY, "gates c_prev c dh dy? dc:inout dgates:out",
        check=_cell(4, "c", "gates dgates", "c_prev dh dy dc"),
        c="qr_lstm_cell_bwd_f32(gates, c_prev, c, dh, dy, dc, dgates, B, H)",
        tol=_TOL, examples=[dict(gates=((3, 20), 0.05, 0.95), c_prev=(3, 5), c=(3, 5),
                                 dh=(3, 5), dy=(3, 5), dc=(3, 5), dgates=(3, 20))])
def lstm_cell_bwd(self, gates: Tensor, c_prev: Tensor, c: Tensor, dh: Tensor,
                  dy: Tensor | None, dc: Tensor, dgates: Tensor) -> None:
    """Backward of ``lstm_cell``: gates [B, 4H] (the activations it saved), c_prev, c, dh
    (gradient of h_t through the recurrence), dy (of the output at t, or None) [B, H].
    dc holds dL/dc_t on entry (its recurrent part) and dL/dc_{t-1} on return; dgates
    [B, 4H] receives the pre-activation gradients (i, f, g, o)."""
    B, H = c.rows, c.cols
    d, dcc = dgates.w.reshape(B, 4 * H), dc.w.reshape(B, H)
    t = _dh_total(self, "lstm_dh", dh, dy, (B, H))
    s = gates.a.reshape(B, 4 * H)
    i, f, g, o = s[:, :H], s[:, H:2 * H], s[:, 2 * H:3 * H], s[:, 3 * H:]
    tc = self.scratch("lstm_tc", (B, H))
    u = self.scratch("lstm_u", (B, H))
    np.tanh(c.a.reshape(B, H), out=tc)
    np.multiply(t, tc, out=u)                       # do = dh * tanh(c)
    np.multiply(u, o, out=d[:, 3 * H:])
    np.subtract(np.float32(1.0), o, out=u)
    np.multiply(d[:, 3 * H:], u, out=d[:, 3 * H:])  # * o (1 - o)
    np.multiply(tc, tc, out=tc)
    np.subtract(np.float32(1.0), tc, out=tc)
    np.multiply(tc, o, out=tc)
    np.multiply(tc, t, out=tc)
    np.add(dcc, tc, out=dcc)                        # dc_t total
    np.multiply(dcc, g, out=u)                      # di = dc * g
    np.multiply(u, i, out=d[:, :H])
    np.subtract(np.float32(1.0), i, out=u)
    np.multiply(d[:, :H], u, out=d[:, :H])
    np.multiply(dcc, c_prev.a.reshape(B, H), out=u)  # df = dc * c_prev
    np.multiply(u, f, out=d[:, H:2 * H])
    np.subtract(np.float32(1.0), f, out=u)
    np.multiply(d[:, H:2 * H], u, out=d[:, H:2 * H])
    np.multiply(dcc, i, out=u)                      # dg = dc * i
    np.multiply(g, g, out=tc)
    np.subtract(np.float32(1.0), tc, out=tc)
    np.multiply(u, tc, out=d[:, 2 * H:3 * H])
    np.multiply(dcc, f, out=dcc)                    # dc_{t-1} = dc * f


@kernel(FAMILY, "xg hg b_hh? h_prev gates:out hn:out h:out",
        check=_cell(3, "h", "xg hg gates", "h_prev hn", "b_hh"),
        c="qr_gru_cell_f32(xg, hg, b_hh, h_prev, gates, hn, h, B, H)", tol=_TOL,
        examples=[dict(xg=(3, 15), hg=(3, 15), b_hh=(15,), h_prev=(3, 5), gates=(3, 15),
                       hn=(3, 5), h=(3, 5))])
def gru_cell(self, xg: Tensor, hg: Tensor, b_hh: Tensor | None, h_prev: Tensor,
             gates: Tensor, hn: Tensor, h: Tensor) -> None:
    """One GRU step (PyTorch's). xg [B, 3H] = x W_ih^T + b_ih, hg [B, 3H] = h_prev W_hh^T
    (gate order r, z, n), b_hh [3H] or None, h_prev [B, H]. Writes gates [B, 3H] =
    (r, z, n) (may alias xg), hn = hg_n + b_hn [B, H] and h = (1 - z) n + z h_prev with
    r, z = sigmoid(x_rz + h_rz), n = tanh(x_n + r * hn)."""
    B, H = h.rows, h.cols
    gg, hnn, hh = gates.w.reshape(B, 3 * H), hn.w.reshape(B, H), h.w.reshape(B, H)
    s = _pre(self, "gru_pre", xg, hg, b_hh)       # r, z pre-activations; n part below
    _sig(s[:, :2 * H], s[:, :2 * H])
    np.copyto(hnn, hg.a.reshape(B, 3 * H)[:, 2 * H:])
    if b_hh is not None:
        np.add(hnn, b_hh.a.reshape(-1)[2 * H:], out=hnn)
    n = s[:, 2 * H:]
    np.multiply(s[:, :H], hnn, out=n)
    np.add(n, xg.a.reshape(B, 3 * H)[:, 2 * H:], out=n)
    np.tanh(n, out=n)
    z, hp = s[:, H:2 * H], h_prev.a.reshape(B, H)
    u = self.scratch("gru_u", (B, H))
    np.subtract(hp, n, out=u)
    np.multiply(z, u, out=u)
    np.add(n, u, out=hh)                            # n + z (h_prev - n)
    np.copyto(gg, s)


@kernel(FAMILY, "gates hn h_prev dh:inout dy? dxg:out dhg:out",
        check=_cell(3, "h_prev", "gates dxg dhg", "hn dh dy"),
        c="qr_gru_cell_bwd_f32(gates, hn, h_prev, dy, dh, dxg, dhg, B, H)",
        tol=_TOL, examples=[dict(gates=((3, 15), 0.05, 0.95), hn=(3, 5), h_prev=(3, 5),
                                 dh=(3, 5), dy=(3, 5), dxg=(3, 15), dhg=(3, 15))])
def gru_cell_bwd(self, gates: Tensor, hn: Tensor, h_prev: Tensor, dh: Tensor,
                 dy: Tensor | None, dxg: Tensor, dhg: Tensor) -> None:
    """Backward of ``gru_cell``: gates [B, 3H] (r, z, n), hn, h_prev, dh, dy (or None)
    [B, H]. Writes dxg [B, 3H] (gradient of xg), dhg [B, 3H] (of hg + b_hh: its n part is
    r times dxg's) and, in place, dh = z * (dh + dy): the direct part of dL/dh_{t-1}
    (the caller adds dhg W_hh)."""
    B, H = h_prev.rows, h_prev.cols
    dx, dhh, DH = dxg.w.reshape(B, 3 * H), dhg.w.reshape(B, 3 * H), dh.w.reshape(B, H)
    t = _dh_total(self, "gru_dh", dh, dy, (B, H))
    s = gates.a.reshape(B, 3 * H)
    r, z, n = s[:, :H], s[:, H:2 * H], s[:, 2 * H:]
    u = self.scratch("gru_u", (B, H))
    v = self.scratch("gru_v", (B, H))
    np.subtract(np.float32(1.0), z, out=u)
    np.multiply(t, u, out=u)                        # dn = dh (1 - z)
    np.multiply(n, n, out=v)
    np.subtract(np.float32(1.0), v, out=v)
    np.multiply(u, v, out=dx[:, 2 * H:])            # dn_pre
    np.multiply(dx[:, 2 * H:], r, out=dhh[:, 2 * H:])
    np.multiply(dx[:, 2 * H:], hn.a.reshape(B, H), out=u)   # dr = dn_pre * hn
    np.subtract(np.float32(1.0), r, out=v)
    np.multiply(v, r, out=v)
    np.multiply(u, v, out=dx[:, :H])
    np.subtract(h_prev.a.reshape(B, H), n, out=u)   # dz = dh (h_prev - n)
    np.multiply(u, t, out=u)
    np.subtract(np.float32(1.0), z, out=v)
    np.multiply(v, z, out=v)
    np.multiply(u, v, out=dx[:, H:2 * H])
    dhh[:, :2 * H] = dx[:, :2 * H]
    np.multiply(t, z, out=DH)

