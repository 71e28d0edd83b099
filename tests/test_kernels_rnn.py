"""Recurrent cell kernels (csrc/rnn.c vs decl/rnn.py): C-vs-NumPy parity on odd shapes and
saturating values, finite-difference gradients of every ``_bwd``, thread count and SIMD path
independence, and argument validation."""

from __future__ import annotations

import numpy as np
import pytest

from qorus_core.errors import KernelError
from qorus_core.kernels import simd
from qorus_core.tensor import Tensor

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
SHAPES = [(1, 1), (3, 7), (2, 17), (5, 33)]     # H around the C kernels' 16-column blocks


def _arr(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _inputs(cell: str, B: int, H: int, seed: int = 0, scale: float = 1.0, bias: bool = True):
    """Forward operands of one cell call, as arrays."""
    rng = np.random.default_rng(seed)
    G = GATES[cell]
    return {"xg": _arr(rng, (B, G * H), scale), "hg": _arr(rng, (B, G * H), scale),
            "b": _arr(rng, (G * H,)) if bias else None, "prev": _arr(rng, (B, H))}


def _fwd(k, cell: str, a: dict, inplace: bool = True) -> dict[str, np.ndarray]:
    """Run the forward cell on copies; returns every output."""
    B, GH = a["xg"].shape
    H = GH // GATES[cell]
    xg = Tensor(a["xg"].copy())
    b = None if a["b"] is None else Tensor(a["b"])
    gates = xg if inplace else Tensor(np.zeros((B, GH), np.float32))
    o1, o2 = Tensor(np.zeros((B, H), np.float32)), Tensor(np.zeros((B, H), np.float32))
    if cell == "rnn":
        k.rnn_cell(xg, Tensor(a["hg"]), b, o1)
        return {"h": o1.a}
    if cell == "lstm":
        k.lstm_cell(xg, Tensor(a["hg"]), b, Tensor(a["prev"]), gates, o1, o2)
        return {"gates": gates.a, "c": o1.a, "h": o2.a}
    k.gru_cell(xg, Tensor(a["hg"]), b, Tensor(a["prev"]), gates, o1, o2)
    return {"gates": gates.a, "hn": o1.a, "h": o2.a}


def _bwd(k, cell: str, a: dict, f: dict, dh: np.ndarray, dy: np.ndarray | None,
         dc: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Run the backward cell on the forward results ``f``; returns every output."""
    B, GH = a["xg"].shape
    dyt = None if dy is None else Tensor(dy)
    dht = Tensor(dh.copy())
    d1 = Tensor(np.zeros((B, GH), np.float32))
    if cell == "rnn":
        k.rnn_cell_bwd(Tensor(f["h"]), dht, dyt, d1)
        return {"dg": d1.a}
    if cell == "lstm":
        dct = Tensor(dc.copy())
        k.lstm_cell_bwd(Tensor(f["gates"]), Tensor(a["prev"]), Tensor(f["c"]), dht, dyt, dct, d1)
        return {"dgates": d1.a, "dc": dct.a}
    d2 = Tensor(np.zeros((B, GH), np.float32))
    k.gru_cell_bwd(Tensor(f["gates"]), Tensor(f["hn"]), Tensor(a["prev"]), dht, dyt, d1, d2)
    return {"dxg": d1.a, "dhg": d2.a, "dh": dht.a}


def _run_both(k, cell, a, seed=1, with_dy=True):
    f = _fwd(k, cell, a)
    B, H = a["prev"].shape
    rng = np.random.default_rng(seed)
    dh, dy, dc = _arr(rng, (B, H)), _arr(rng, (B, H)) if with_dy else None, _arr(rng, (B, H))
    return {**f, **_bwd(k, cell, a, f, dh, dy, dc)}


@pytest.mark.parametrize("cell", list(GATES))
@pytest.mark.parametrize("B,H", SHAPES)
@pytest.mark.parametrize("bias,with_dy", [(True, True), (False, False)])
def test_c_matches_numpy(ck, nk, cell, B, H, bias, with_dy):
    a = _inputs(cell, B, H, seed=B * 100 + H, bias=bias)
    ref, got = _run_both(nk, cell, a, with_dy=with_dy), _run_both(ck, cell, a, with_dy=with_dy)
    for key in ref:
        np.testing.assert_allclose(got[key], ref[key], rtol=2e-5, atol=2e-6, err_msg=f"{cell} {key}")


@pytest.mark.parametrize("cell", list(GATES))
def test_saturating_and_nonfinite_inputs(ck, nk, cell):
    a = _inputs(cell, 3, 9, scale=40.0)          # |pre-activations| up to ~150: exp over/underflow
    ref, got = _run_both(nk, cell, a), _run_both(ck, cell, a)
    for key in ref:
        assert np.isfinite(got[key]).all(), key
        np.testing.assert_allclose(got[key], ref[key], rtol=2e-5, atol=2e-6, err_msg=f"{cell} {key}")
    a["xg"][0, 0] = np.nan                        # a NaN input reaches the outputs, as in NumPy
    assert np.isnan(_fwd(ck, cell, a)["h"][0]).any() and np.isnan(_fwd(nk, cell, a)["h"][0]).any()


@pytest.mark.parametrize("cell", ["lstm", "gru"])     # the tanh RNN cell has no gates output
def test_out_of_place_gates_equal_in_place(ck, nk, cell):
    a = _inputs(cell, 4, 21)
    for k in (ck, nk):
        x, y = _fwd(k, cell, a, inplace=True), _fwd(k, cell, a, inplace=False)
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])


def _loss(cell, a, f, r):
    """The scalar the finite differences differentiate: sum(h r_h) (+ sum(c r_c) for LSTM)."""
    s = float(np.sum(f["h"].astype(np.float64) * r["h"]))
    return s + (float(np.sum(f["c"].astype(np.float64) * r["c"])) if cell == "lstm" else 0.0)


@pytest.mark.parametrize("cell", list(GATES))
def test_backward_matches_finite_differences(nk, ck, cell):
    """d loss / d (xg, hg, prev) from the _bwd kernels vs central differences (float64 loss)."""
    B, H = 2, 5
    a = _inputs(cell, B, H, seed=7)
    rng = np.random.default_rng(8)
    r = {"h": _arr(rng, (B, H)), "c": _arr(rng, (B, H))}
    for k in (nk, ck):
        f = _fwd(k, cell, a)
        zero = np.zeros((B, H), np.float32)
        # dh = r_h arrives through dy (dh zero) to cover the sum of the two
        g = _bwd(k, cell, a, f, zero, r["h"], r["c"] if cell == "lstm" else None)
        d_xg = g.get("dg", g.get("dgates", g.get("dxg")))
        d_hg = g["dhg"] if cell == "gru" else d_xg
        d_prev = {"lstm": g.get("dc"), "gru": g.get("dh")}.get(cell)
        wrt = {"xg": d_xg, "hg": d_hg}
        if d_prev is not None:
            wrt["prev"] = d_prev
        eps = 1e-2
        for name, analytic in wrt.items():
            for idx in np.ndindex(*a[name].shape):
                plus, minus = dict(a), dict(a)
                plus[name], minus[name] = a[name].copy(), a[name].copy()
                plus[name][idx] += eps
                minus[name][idx] -= eps
                num = (_loss(cell, plus, _fwd(nk, cell, plus), r)
                       - _loss(cell, minus, _fwd(nk, cell, minus), r)) / (2 * eps)
                assert abs(num - analytic[idx]) <= 2e-3 + 2e-2 * abs(num), \
                    f"{k.name} {cell} d/d{name}{idx}: analytic {analytic[idx]} vs numeric {num}"


@pytest.mark.parametrize("cell", list(GATES))
def test_threads_and_simd_path_do_not_change_results(threads, cell):
    """The cells promise the same bits for any thread count on every SIMD tier (FP
    contraction off: the AVX2 and AVX-512 builds do the portable operations, wider)."""
    a = _inputs(cell, 64, 300, seed=3)           # large enough to split over threads
    results = []
    tiers = [t for i, t in enumerate(simd.TIERS)          # every tier this CPU and build run
             if i <= threads._simd_compiled() and not simd.missing_features(threads._lib, t)]
    runs = [(1, "auto"), (2, "auto"), (3, "auto")] + [(n, t) for t in tiers for n in (1, 2)]
    for n, path in runs:
        threads.set_threads(n)
        threads.set_simd_path(path)
        results.append(_run_both(threads, cell, a))
    for other in results[1:]:
        for key in results[0]:
            np.testing.assert_array_equal(other[key], results[0][key], err_msg=f"{cell} {key}")


@pytest.mark.parametrize("A,B,C", [(1, 1, 1), (3, 5, 7), (8, 2, 33)])
def test_seq_transpose(ck, nk, A, B, C):
    x = np.arange(A * B * C, dtype=np.float32).reshape(A, B, C)
    for k in (ck, nk):
        y = Tensor(np.zeros((B, A, C), np.float32))
        k.seq_transpose(Tensor(x), y)
        np.testing.assert_array_equal(y.a, x.transpose(1, 0, 2))


def test_bad_arguments_raise_kernel_error(ck, nk):
    z = lambda *s: Tensor(np.zeros(s, np.float32))   # noqa: E731
    for k in (ck, nk):
        with pytest.raises(KernelError, match="lstm_cell"):
            k.lstm_cell(z(2, 12), z(2, 12), None, z(2, 4), z(2, 12), z(2, 4), z(2, 4))  # 3H, not 4H
        with pytest.raises(KernelError, match="gru_cell_bwd"):
            k.gru_cell_bwd(z(2, 9), z(2, 3), z(2, 3), z(2, 3), z(3, 3), z(2, 9), z(2, 9))
        with pytest.raises(KernelError, match="rnn_cell"):
            k.rnn_cell(z(2, 3), z(2, 3), z(4), z(2, 3))
        with pytest.raises(KernelError, match="seq_transpose"):
            k.seq_transpose(z(2, 3, 4), z(2, 3, 4))
    buf = z(4, 4, 4)
    with pytest.raises(KernelError, match="overlap"):
        ck.seq_transpose(Tensor(buf.a[:2]), Tensor(buf.a[1:3].reshape(4, 2, 4)))
