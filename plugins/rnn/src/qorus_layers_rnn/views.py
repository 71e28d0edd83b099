"""Per-plan views of a recurrent layer's buffers, made on its first call and reused (so a
step creates no array): one ``Direction`` per (layer, direction) and the layer-wide ``Views``.

State layout. Layer ``l`` keeps its hidden states in one buffer ``hs_l{l}`` of
``D * (T + 1)`` rows of [B, H] (``D`` directions); direction ``d`` owns rows
``d*(T+1) .. d*(T+1) + T``. The forward direction writes the state after position ``t`` to
row ``t + 1`` of its block (row 0: the initial state); the reverse one writes it to row ``t``
(row ``T``: its initial state). So the outputs of both directions are the contiguous rows
``1 .. D*T``: [D, T*B, H], which one ``seq_transpose`` turns into the concatenation
[T, B, D*H]. LSTM cell states ``cs_l{l}`` use the same layout.
"""

from __future__ import annotations

from typing import Any

from qorus_core import Tensor


def rows(t: Tensor) -> list[Tensor]:
    """One Tensor per index of the first dimension (views)."""
    return [Tensor(t.a[i], f"{t.name}[{i}]") for i in range(t.shape[0])]


def reshaped(t: Tensor, *shape: int) -> Tensor:
    """``t``'s memory seen as ``shape`` (a view)."""
    return Tensor(t.a.reshape(shape), t.name)


def _opt(ctx: Any, name: str) -> Any:
    return getattr(ctx, name, None)


class Direction:
    """Layer ``l``'s forward (``rev`` False) or reverse direction: its parameters, gradients,
    saved gates, and per-position state rows: ``h_prev[t]`` / ``h_out[t]`` the state before /
    after position ``t`` (likewise ``c_prev`` / ``c_out``), ``order`` the positions in the
    order they are processed, ``index`` its row in ``h0`` / ``h_n`` (``l * D + d``)."""

    def __init__(self, layer: Any, ctx: Any, l: int, rev: bool, T: int) -> None:
        sfx = "_reverse" if rev else ""
        self.index = l * layer.num_directions + int(rev)
        self.order = tuple(range(T - 1, -1, -1)) if rev else tuple(range(T))

        def p(base: str) -> Any:     # a parameter or its gradient (None: absent)
            return _opt(ctx, f"{base}_l{l}{sfx}")

        self.W_ih, self.W_hh, self.b_ih, self.b_hh = (
            p("weight_ih"), p("weight_hh"), p("bias_ih"), p("bias_hh"))
        self.dW_ih, self.dW_hh, self.db_ih, self.db_hh = (
            p("dweight_ih"), p("dweight_hh"), p("dbias_ih"), p("dbias_hh"))
        self.gates = getattr(ctx, f"gates_l{l}{sfx}")
        self.gate_t = rows(self.gates)
        lo = int(rev) * (T + 1)                       # this direction's block of hs / cs
        hs = getattr(ctx, f"hs_l{l}")
        self.h_prev, self.h_out = self._shift(rows(hs), lo, T, rev)
        self.out_seq = Tensor(hs.a[lo + 1 - rev:lo + 1 - rev + T], hs.name)   # [T, B, H]
        self.prev_seq = Tensor(hs.a[lo + rev:lo + rev + T], hs.name)          # h_{t-1} rows
        self.h_init, self.h_last = self.h_prev[self.order[0]], self.h_out[self.order[-1]]
        if layer.HAS_CELL:
            self.c_prev, self.c_out = self._shift(rows(getattr(ctx, f"cs_l{l}")), lo, T, rev)
            self.c_init, self.c_last = self.c_prev[self.order[0]], self.c_out[self.order[-1]]
        if layer.GATES == 3:
            self.hn_t = rows(getattr(ctx, f"hn_l{l}{sfx}"))

    @staticmethod
    def _shift(r: list[Tensor], lo: int, T: int, rev: bool) -> tuple[list, list]:
        """(rows before, rows after) each position, in position order."""
        if rev:
            return r[lo + 1:lo + T + 1], r[lo:lo + T]
        return r[lo:lo + T], r[lo + 1:lo + T + 1]


class Views:
    """Everything one plan's forward and backward index: the directions of every layer, the
    layer outputs, masks and the gradient buffers (training plans). ``inp[l]`` is the tensor
    layer ``l`` read in the last forward; ``masked``, ``lo``, ``hi`` describe its lengths."""

    def __init__(self, layer: Any, ctx: Any) -> None:
        L, D = layer.num_layers, layer.num_directions
        T, B, H = ctx.xt.shape[0], ctx.xt.shape[1], layer.hidden_size
        self.T, self.D = T, D
        self.dirs = [[Direction(layer, ctx, l, bool(d), T) for d in range(D)] for l in range(L)]
        self.outs = [Tensor(getattr(ctx, f"hs_l{l}").a[1:D * T + 1]) for l in range(L)]
        self.cat = [_opt(ctx, f"in_l{l + 1}") for l in range(L - 1)] + [_opt(ctx, "top")]
        self.inp: list[Tensor | None] = [None] * L
        self.h0, self.h_n = rows(ctx.h0), rows(ctx.h_n)
        self.c0, self.c_n = (rows(ctx.c0), rows(ctx.c_n)) if layer.HAS_CELL else (None, None)
        self.h0t = rows(ctx.h0t) if _opt(ctx, "h0t") is not None else None
        self.c0t = rows(ctx.c0t) if _opt(ctx, "c0t") is not None else None
        self.masked, self.lo, self.hi, self.grid = False, T, T, None
        self.mask = _opt(ctx, "mask")
        if self.mask is not None:
            self.mask_t = rows(self.mask)
            self.stack = _opt(ctx, "stack")
            if self.stack is not None:
                self.stack_d = [Tensor(self.stack.a[:T]), Tensor(self.stack.a[T:])]
        drop = _opt(ctx, "drop")
        self.drop = rows(drop) if drop is not None else None
        if D == 2:          # [2*T, B, H] stacks <-> [T, B, 2*H] concatenations
            self.outs_pair = [reshaped(t, 2, T * B, H) for t in self.outs]
            self.cat_pair = [None if t is None else reshaped(t, T * B, 2, H) for t in self.cat]
            if self.mask is not None and self.stack is not None:
                self.stack_pair = reshaped(self.stack, 2, T * B, H)
        if ctx.train:
            self._grads(layer, ctx, T, B, H)

    def _grads(self, layer: Any, ctx: Any, T: int, B: int, H: int) -> None:
        self.dgates = ctx.dgates
        self.dgates_t = rows(ctx.dgates)
        # the gradient of h W_hh^T + b_hh: GRU's own buffer, the gate gradient for the others
        self.dhh = ctx.dhg if layer.GATES == 3 else ctx.dgates
        self.dhh_t = rows(self.dhh) if layer.GATES == 3 else self.dgates_t
        self.dseq = [ctx.dseq_a] + ([ctx.dseq_b] if layer.num_layers > 1 else [])
        self.dseq_t = [rows(d) for d in self.dseq]
        self.dhs = rows(ctx.dhs)
        self.dcs = rows(ctx.dcs) if layer.HAS_CELL else None
        self.keep, self.keepc = _opt(ctx, "keep"), _opt(ctx, "keepc")
        if self.D == 2:
            self.gsplit_pair = reshaped(ctx.gsplit, 2, T * B, H)
            self.gsplit_d = [Tensor(ctx.gsplit.a[:T]), Tensor(ctx.gsplit.a[T:])]
            self.gsplit_t = [rows(g) for g in self.gsplit_d]
            self.dseq_pair = [reshaped(d, T * B, 2, H) for d in self.dseq]
