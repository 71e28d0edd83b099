"""The time loop of one direction of one layer, forward and backward, on the cell kernels.

Forward, per position in processing order: ``hg = h_prev W_hh^T`` (one GEMM) and one cell
kernel (``Recurrent._step``). With lengths, a row past its length keeps its state: ``where``
copies ``h_prev`` (and ``c_prev``) back over it; at a position past every length the cell is
not run at all.

Backward, in the reverse order: the cell's ``_bwd`` kernel into ``dgates[t]``, then
``dh = dgates[t] W_hh`` (+ GRU's direct part) for the state before. A row past its length
passes ``dh`` / ``dc`` through unchanged: they are saved (``keep``), masked to 0 for the
cell, and put back by ``where`` after it.
"""

from __future__ import annotations

from typing import Any

from .views import Direction, Views


def run_forward(cell: Any, k: Any, S: Views, d: Direction, hg: Any) -> None:
    """Direction ``d`` over every position, from ``d.h_init`` (and ``d.c_init``)."""
    W_hh, lo, hi, masked = d.W_hh, S.lo, S.hi, S.masked
    has_c = cell.HAS_CELL
    for t in d.order:
        if masked and t >= hi:                        # every row is padding here
            k.copy(d.h_prev[t], d.h_out[t])
            if has_c:
                k.copy(d.c_prev[t], d.c_out[t])
            continue
        k.gemm(d.h_prev[t], W_hh, hg, trans_b=True)   # hg [B, GH] = h_prev W_hh^T
        cell._step(k, d, t, hg)
        if masked and t >= lo:                        # rows past their length keep the state
            m = S.mask_t[t]
            k.where(m, d.h_out[t], d.h_prev[t], d.h_out[t])
            if has_c:
                k.where(m, d.c_out[t], d.c_prev[t], d.c_out[t])


def run_backward(cell: Any, k: Any, S: Views, d: Direction, dys: list | None,
                 want_dh0: bool) -> None:
    """Backpropagate through direction ``d``: ``S.dhs[d.index]`` (and ``S.dcs``) hold the
    gradient of its final state on entry, of its initial state on return (``dh`` only when
    ``want_dh0``); ``dys[t]``: the gradient of its output at ``t`` (None: no output gradient).
    Writes every row of ``S.dgates`` (and GRU's ``S.dhh``)."""
    dh = S.dhs[d.index]
    dc = S.dcs[d.index] if cell.HAS_CELL else None
    W_hh, beta, first = d.W_hh, cell._DH_BETA, d.order[0]
    dg_t, dhh_t, lo, hi, masked = S.dgates_t, S.dhh_t, S.lo, S.hi, S.masked
    for t in reversed(d.order):
        if masked and t >= hi:                        # skipped forward: no gate gradient
            k.fill(dg_t[t], 0.0)
            if dhh_t is not dg_t:
                k.fill(dhh_t[t], 0.0)
            continue
        part = masked and t >= lo
        if part:
            m = S.mask_t[t]
            k.copy(dh, S.keep)
            k.mul(dh, m, dh)
            if dc is not None:
                k.copy(dc, S.keepc)
                k.mul(dc, m, dc)
        cell._step_bwd(k, d, t, None if dys is None else dys[t], dh, dc, dg_t[t], dhh_t[t])
        if t != first or want_dh0:                    # dL/dh_prev (+)= d(hg) W_hh
            k.gemm(dhh_t[t], W_hh, dh, beta=beta)
        if part:
            k.where(m, dh, S.keep, dh)
            if dc is not None:
                k.where(m, dc, S.keepc, dc)
