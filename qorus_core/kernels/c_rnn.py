"""C bindings of the recurrent cell kernels (``csrc/rnn.c``): a mixin of ``CKernels``.

Same methods and signatures as ``numpy_rnn.NumpyRnnKernels`` (the reference, with the
docstrings and shapes). Every argument is checked here before the C call with the shape
helpers the NumPy twins use, so both raise the same ``KernelError``; a non-float32 operand, or
a library built before rnn.c, goes to the NumPy fallback.
"""

from __future__ import annotations

from ctypes import c_int, c_int64, c_void_p

from ..errors import KernelError
from ..tensor import Tensor
from .c_fused import _f32, _p, _rc  # the helpers the C mixins share
from .numpy_rnn import NumpyRnnKernels, cell_dims, transpose_dims

__all__ = ["CRnnKernels", "RNN_SIGNATURES"]

_P, _I64, _I = c_void_p, c_int64, c_int

RNN_SIGNATURES = {
    "qr_seq_transpose_f32": (_I, [_P, _P, _I64, _I64, _I64]),
    "qr_rnn_cell_f32": (_I, [_P, _P, _P, _P, _I64, _I64]),
    "qr_rnn_cell_bwd_f32": (_I, [_P, _P, _P, _P, _I64, _I64]),
    "qr_lstm_cell_f32": (_I, [_P] * 7 + [_I64, _I64]),
    "qr_lstm_cell_bwd_f32": (_I, [_P] * 7 + [_I64, _I64]),
    "qr_gru_cell_f32": (_I, [_P] * 7 + [_I64, _I64]),
    "qr_gru_cell_bwd_f32": (_I, [_P] * 7 + [_I64, _I64]),
}


def _overlap(a: Tensor, b: Tensor) -> bool:
    return a.p < b.p + 4 * b.size and b.p < a.p + 4 * a.size


class CRnnKernels:
    """Recurrent cell kernels of the C set (mixed into ``CKernels``; needs ``self.fallback``
    and ``self._rnn``, the functions of ``RNN_SIGNATURES`` the library has, bound at load)."""

    def seq_transpose(self, x: Tensor, y: Tensor) -> None:
        fn = self._rnn.get("seq_transpose")
        if fn is None or not _f32(x, y):
            return self.fallback.seq_transpose(x, y)
        A, B, C = transpose_dims("seq_transpose", x, y)
        if _overlap(x, y):
            raise KernelError(f"seq_transpose: x {x.shape} and y {y.shape} overlap")
        _rc("seq_transpose", fn(x.p, y.p, A, B, C))

    def rnn_cell(self, xg: Tensor, hg: Tensor, b_hh: Tensor | None, h: Tensor) -> None:
        fn = self._rnn.get("rnn_cell")
        if fn is None or not _f32(xg, hg, b_hh, h):
            return self.fallback.rnn_cell(xg, hg, b_hh, h)
        B, H = cell_dims("rnn_cell", 1, h, {"xg": xg, "hg": hg}, {}, b_hh)
        _rc("rnn_cell", fn(xg.p, hg.p, _p(b_hh), h.p, B, H))

    def rnn_cell_bwd(self, h: Tensor, dh: Tensor, dy: Tensor | None, dg: Tensor) -> None:
        fn = self._rnn.get("rnn_cell_bwd")
        if fn is None or not _f32(h, dh, dy, dg):
            return self.fallback.rnn_cell_bwd(h, dh, dy, dg)
        B, H = cell_dims("rnn_cell_bwd", 1, h, {"dg": dg}, {"dh": dh, "dy": dy})
        _rc("rnn_cell_bwd", fn(h.p, dh.p, _p(dy), dg.p, B, H))

    def lstm_cell(self, xg: Tensor, hg: Tensor, b_hh: Tensor | None, c_prev: Tensor,
                  gates: Tensor, c: Tensor, h: Tensor) -> None:
        fn = self._rnn.get("lstm_cell")
        if fn is None or not _f32(xg, hg, b_hh, c_prev, gates, c, h):
            return self.fallback.lstm_cell(xg, hg, b_hh, c_prev, gates, c, h)
        B, H = cell_dims("lstm_cell", 4, c, {"xg": xg, "hg": hg, "gates": gates},
                         {"c_prev": c_prev, "h": h}, b_hh)
        _rc("lstm_cell", fn(xg.p, hg.p, _p(b_hh), c_prev.p, gates.p, c.p, h.p, B, H))

    def lstm_cell_bwd(self, gates: Tensor, c_prev: Tensor, c: Tensor, dh: Tensor,
                      dy: Tensor | None, dc: Tensor, dgates: Tensor) -> None:
        fn = self._rnn.get("lstm_cell_bwd")
        if fn is None or not _f32(gates, c_prev, c, dh, dy, dc, dgates):
            return self.fallback.lstm_cell_bwd(gates, c_prev, c, dh, dy, dc, dgates)
        B, H = cell_dims("lstm_cell_bwd", 4, c, {"gates": gates, "dgates": dgates},
                         {"c_prev": c_prev, "dh": dh, "dy": dy, "dc": dc})
        _rc("lstm_cell_bwd", fn(gates.p, c_prev.p, c.p, dh.p, _p(dy), dc.p, dgates.p, B, H))

    def gru_cell(self, xg: Tensor, hg: Tensor, b_hh: Tensor | None, h_prev: Tensor,
                 gates: Tensor, hn: Tensor, h: Tensor) -> None:
        fn = self._rnn.get("gru_cell")
        if fn is None or not _f32(xg, hg, b_hh, h_prev, gates, hn, h):
            return self.fallback.gru_cell(xg, hg, b_hh, h_prev, gates, hn, h)
        B, H = cell_dims("gru_cell", 3, h, {"xg": xg, "hg": hg, "gates": gates},
                         {"h_prev": h_prev, "hn": hn}, b_hh)
        _rc("gru_cell", fn(xg.p, hg.p, _p(b_hh), h_prev.p, gates.p, hn.p, h.p, B, H))

    def gru_cell_bwd(self, gates: Tensor, hn: Tensor, h_prev: Tensor, dh: Tensor,
                     dy: Tensor | None, dxg: Tensor, dhg: Tensor) -> None:
        fn = self._rnn.get("gru_cell_bwd")
        if fn is None or not _f32(gates, hn, h_prev, dh, dy, dxg, dhg):
            return self.fallback.gru_cell_bwd(gates, hn, h_prev, dh, dy, dxg, dhg)
        B, H = cell_dims("gru_cell_bwd", 3, h_prev, {"gates": gates, "dxg": dxg, "dhg": dhg},
                         {"hn": hn, "dh": dh, "dy": dy})
        _rc("gru_cell_bwd", fn(gates.p, hn.p, h_prev.p, _p(dy), dh.p, dxg.p, dhg.p, B, H))


for _name in (n[3:-4] for n in RNN_SIGNATURES):   # the reference's docs
    getattr(CRnnKernels, _name).__doc__ = getattr(NumpyRnnKernels, _name).__doc__
