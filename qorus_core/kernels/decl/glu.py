"""GLU and its backward (csrc/act_ext.c, act_ext_impl.h): each row of x [rows, 2m] is [a | b],
y [rows, m] = a * sigmoid(b) (PyTorch's F.glu over the last dimension). A split along an inner
dimension d of a contiguous tensor is the same kernel on the view [prod(shape[:d]), 2m] with
m = shape[d] / 2 * prod(shape[d+1:]) (mlp.GLU passes that view). The C exp differs from
NumPy's in the last bits: float tolerance.
"""

from __future__ import annotations

import numpy as np

from ...tensor import Tensor
from .act_piecewise import with_edges
from .spec import FLOAT, Fit, kernel

FAMILY = "act"


def _halves(ref: str, wide: str) -> Fit:
    """rows, m of ``ref`` [rows, m]; each of ``wide`` (names) [rows, 2m]."""
    return Fit({"rows": f"{ref}.rows", "m": f"{ref}.cols"},
               {wide: f"{{t}}.size == 2 * {ref}.size and {{t}}.cols == 2 * m"},
               f"do not fit: {'/'.join(wide.split())} must be [{{rows}}, 2 x {{m}}] for "
               f"{ref} [{{rows}}, {{m}}]")


def _sigmoid_of_b(self, X: np.ndarray, m: int, key: str) -> np.ndarray:
    """sigmoid of the second halves of X's rows, 1 / (exp(-b) + 1), in a scratch [rows, m]."""
    s = self.scratch(key, (X.shape[0], m))
    np.negative(X[:, m:], out=s)
    with np.errstate(over="ignore"):                   # b -> -inf: exp -> inf, s -> 0
        np.exp(s, out=s)
    np.add(s, np.float32(1.0), out=s)
    np.reciprocal(s, out=s)
    return s


@kernel(FAMILY, "x y:out", check=_halves("y", "x"), c="qr_glu_f32(x, y, rows, m)", tol=FLOAT,
        examples=[dict(x=(5, 32), y=(5, 16)), dict(x=with_edges((3, 180)), y=(3, 90)),
                  dict(x=(2, 3, 600), y=(6, 300))])
def glu(self, x: Tensor, y: Tensor) -> None:
    """y[r, :] = a * sigmoid(b), [a | b] = x[r, :] split in halves."""
    X, Y, m = self._m(x), self._mw(y), y.cols
    s = _sigmoid_of_b(self, X, m, "glu_s")
    np.multiply(X[:, :m], s, out=Y)


@kernel(FAMILY, "x dy dx:out", check=_halves("dy", "x dx"), c="qr_glu_bwd_f32(x, dy, dx, rows, m)",
        tol=FLOAT, examples=[dict(x=(5, 32), dy=(5, 16), dx=(5, 32)),
                             dict(x=with_edges((3, 180)), dy=(3, 90), dx=(3, 180))])
def glu_bwd(self, x: Tensor, dy: Tensor, dx: Tensor) -> None:
    """dx[r, :] = [s * dy | (1 - s) * s * a * dy], s = sigmoid(b) (PyTorch's order)."""
    X, DY, DX, m = self._m(x), self._m(dy), self._mw(dx), dy.cols
    s = _sigmoid_of_b(self, X, m, "glu_s")
    DB = DX[:, m:]
    np.subtract(np.float32(1.0), s, out=DB)
    np.multiply(DB, s, out=DB)
    np.multiply(DB, X[:, :m], out=DB)
    np.multiply(DB, DY, out=DB)
    np.multiply(s, DY, out=DX[:, :m])
