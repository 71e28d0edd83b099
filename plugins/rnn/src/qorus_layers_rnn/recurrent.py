"""The layer shared by rnn.RNN, rnn.LSTM and rnn.GRU: configuration and the layer-by-layer
forward and backward (buffers: ``declare``; their views: ``views``; the time loop of one
direction: ``timeloop``; lengths: ``lengths``).

Layout. Input and output are batch-first ([B, T, in] -> [B, T, D*H]; D = 2 directions when
``bidirectional``); inside, everything is time-major so that one timestep is a contiguous
[B, ...] block: the input is transposed once (``seq_transpose``), ``x W_ih^T + b_ih`` of all
timesteps is one GEMM per direction into ``gates`` [T, B, G*H], and per step ``h W_hh^T`` is
one GEMM followed by one fused cell kernel. Layer ``l+1`` reads layer ``l``'s states in place
(one direction, no lengths, no dropout), or ``in_l{l+1}`` [T, B, D*H]: the directions
concatenated (one ``seq_transpose``), padding zeroed, the dropout mask applied.

Backward through time runs the cell ``_bwd`` kernels in reverse into ``dgates`` [T, B, G*H];
then the weight gradients are one GEMM each over all timesteps and the input gradient one
GEMM per direction (the reverse direction's adds).

State. The non-persistent state buffers ``h0`` (and ``c0``) [L*D, B, H] are read at the start
of every forward unless an ``h0`` (``c0``) input is given; ``h_n`` (``c_n``) receive the final
states; ``stateful=True`` copies them into ``h0``/``c0`` (Keras' meaning). As graph inputs and
outputs (``return_state``) the states are batch-first [B, L*D, H] (PyTorch's ``h_0``
transposed): every value of a graph has the batch first. Gradients flow into the ``h0``/``c0``
inputs and from the ``h_n``/``c_n`` outputs; none into the buffers.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from qorus_core import Layer, Spec, Tensor
from qorus_core.errors import ConfigError, ShapeError
from qorus_core.init import uniform
from qorus_core.validate import boolean, integer, positive_int, probability

from .declare import check_optional_inputs, declare_buffers, declare_params
from .lengths import apply_lengths
from .timeloop import run_backward, run_forward
from .views import Direction, Views


class Recurrent(Layer):
    """Base of the recurrent layers; subclasses set ``GATES``, ``HAS_CELL``, ``inputs`` and the
    two per-step methods ``_step`` and ``_step_bwd``."""

    GATES: ClassVar[int] = 1
    HAS_CELL: ClassVar[bool] = False
    _DH_BETA: ClassVar[float] = 0.0   # GRU: 1.0 (its cell already wrote z * dh into dh)
    inputs: ClassVar[tuple[str, ...]] = ("x", "h0?", "lengths?")

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 return_sequences: bool = True, stateful: bool = False,
                 bidirectional: bool = False, dropout: float = 0.0, dropout_seed: int = 0,
                 return_state: bool = False) -> None:
        name = self._name = f"rnn.{type(self).__name__}"
        self.input_size = positive_int(input_size, "input_size", name)
        self.hidden_size = positive_int(hidden_size, "hidden_size", name)
        self.num_layers = positive_int(num_layers, "num_layers", name)
        self.bias = boolean(bias, "bias", name)
        self.return_sequences = boolean(return_sequences, "return_sequences", name)
        self.stateful = boolean(stateful, "stateful", name)
        self.bidirectional = boolean(bidirectional, "bidirectional", name)
        self.dropout = probability(dropout, "dropout", name, hi_open=True)
        self.dropout_seed = integer(dropout_seed, "dropout_seed", name)
        self.return_state = boolean(return_state, "return_state", name)
        if self.stateful and self.bidirectional:
            raise ConfigError(f"{name}: stateful and bidirectional exclude each other (the "
                              "reverse direction cannot continue where the last call ended)")

    @property
    def num_directions(self) -> int:
        """2 for a bidirectional layer, else 1."""
        return 2 if self.bidirectional else 1

    def _split(self, xs: tuple) -> tuple[Any, Any, Any, Any]:
        """(x, h0, c0, lengths) from the inputs as given (absent ones: None)."""
        xs = tuple(xs) + (None,) * (len(self.inputs) - len(xs))
        if self.HAS_CELL:
            return xs[0], xs[1], xs[2], xs[3]
        return xs[0], xs[1], None, xs[2]

    def _where(self, path: str) -> str:
        """How errors name this layer: ``layer enc (rnn.LSTM)``."""
        return f"layer {path or '<root>'} ({self._name})"

    # ----------------------------------------------------------------- build
    def build(self, x: Any, b: Any) -> Spec | tuple[Spec, ...]:
        """Check ``[batch, time, input_size]`` and the optional state and lengths inputs; declare the
        weights of every layer and direction (PyTorch's names and gate layout) and the time-major
        buffers the recurrence runs on."""
        x, h0, c0, lengths = self._split((x,) if isinstance(x, Spec) else x)
        if x is None or len(x.shape) != 3 or x.dtype != "f32":
            got = "nothing" if x is None else f"{x.dtype} {x.shape}"
            raise ShapeError(f"expects float32 input [batch, time, {self.input_size}], got {got}")
        B, T, n_in = x.shape
        if n_in != self.input_size:
            raise ShapeError(f"expected input_size {self.input_size} features, got {n_in}")
        check_optional_inputs(self, self._where(b.path), B, h0, c0, lengths)
        declare_params(self, b, B, n_in, uniform(1.0 / math.sqrt(self.hidden_size)))  # PyTorch's
        declare_buffers(self, b, B, T, n_in, h0 is not None, c0 is not None, lengths is not None)
        H, DH = self.hidden_size, self.num_directions * self.hidden_size
        y = Spec((B, T, DH) if self.return_sequences else (B, DH))
        if not self.return_state:
            return y
        state = Spec((B, self.num_layers * self.num_directions, H))
        return (y, state, state) if self.HAS_CELL else (y, state)

    def _views(self, ctx: Any) -> Views:
        s = ctx.__dict__.get("_rnn_views")
        if s is None:
            s = ctx._rnn_views = Views(self, ctx)
        return s

    # ----------------------------------------------------------------- forward
    def forward(self, x: Tensor, ctx: Any) -> Tensor:
        """Run the layers over time (both directions when bidirectional), stopping each sequence at its
        length; returns the sequence or the final state as configured."""
        k, S = ctx.k, self._views(ctx)
        _, h0, c0, lengths = self._split(ctx.xs)
        if lengths is not None:                   # checked before anything is written
            apply_lengths(self._where(ctx.path), S, lengths)
        k.seq_transpose(x, ctx.xt)
        self._load_state(k, S, ctx, h0, c0)
        if S.drop is not None:                    # one mask for every layer boundary
            # [L-1, T, B, DH] is time-major: a rank of a data-parallel job draws a stretch of
            # the stream of its own (disjoint from the other ranks'), not one process's rows
            per_row = ctx.drop.size // x.shape[0]
            k.dropout_mask(ctx.drop, self.dropout,
                           ctx.run.dropout_seed(self.dropout_seed, ctx.index, per_row))
        inp, top = ctx.xt, self.num_layers - 1
        for l in range(self.num_layers):
            S.inp[l] = inp
            for d in S.dirs[l]:
                k.gemm(inp, d.W_ih, d.gates, trans_b=True)     # [T*B, GH] = x W_ih^T
                if d.b_ih is not None:
                    k.bias_add(d.gates, d.b_ih)
                run_forward(self, k, S, d, ctx.hg)
            if l < top or self.return_sequences:
                inp = self._emit(k, S, l)
        self._store_state(k, S, ctx)
        if self.return_sequences:
            k.seq_transpose(inp, ctx.y)                         # [T, B, D*H] -> [B, T, D*H]
        elif S.D == 1:
            k.copy(S.h_n[top], ctx.y)
        else:                                                   # [2, B, H] -> [B, 2*H]
            B, H = x.shape[0], self.hidden_size
            k.seq_transpose(ctx.view(ctx.h_n, (2, B, H), 2 * top * B * H),
                            ctx.view(ctx.y, (B, 2, H)))
        return ctx.y

    def _load_state(self, k: Any, S: Views, ctx: Any, h0: Tensor | None,
                    c0: Tensor | None) -> None:
        """Each direction's initial state: the h0 (c0) input, else the state buffer."""
        if h0 is not None:
            k.seq_transpose(h0, ctx.h0t)                        # [B, L*D, H] -> [L*D, B, H]
        if c0 is not None:
            k.seq_transpose(c0, ctx.c0t)
        hs = S.h0 if h0 is None else S.h0t
        cs = S.c0 if c0 is None else S.c0t
        for dirs in S.dirs:
            for d in dirs:
                k.copy(hs[d.index], d.h_init)
                if self.HAS_CELL:
                    k.copy(cs[d.index], d.c_init)

    def _store_state(self, k: Any, S: Views, ctx: Any) -> None:
        """h_n (c_n): each direction's last state; the state outputs; stateful's carry."""
        for dirs in S.dirs:
            for d in dirs:
                k.copy(d.h_last, S.h_n[d.index])
                if self.HAS_CELL:
                    k.copy(d.c_last, S.c_n[d.index])
        if self.return_state:
            k.seq_transpose(ctx.h_n, ctx.ys[1])                 # [L*D, B, H] -> [B, L*D, H]
            if self.HAS_CELL:
                k.seq_transpose(ctx.c_n, ctx.ys[2])
        if self.stateful:
            k.copy(ctx.h_n, ctx.h0)
            if self.HAS_CELL:
                k.copy(ctx.c_n, ctx.c0)

    def _emit(self, k: Any, S: Views, l: int) -> Tensor:
        """Layer ``l``'s output as the next layer (or y) reads it, time-major [T, B, D*H]: its
        states in place, or written into ``S.cat[l]`` (concatenated, masked, dropped out)."""
        src, dst = S.outs[l], S.cat[l]
        if S.D == 1:
            if S.masked:
                k.mul(src, S.mask, dst)
                src = dst
        else:
            pair = S.outs_pair[l]
            if S.masked:
                for d, part in zip(S.dirs[l], S.stack_d):
                    k.mul(d.out_seq, S.mask, part)
                pair = S.stack_pair
            k.seq_transpose(pair, S.cat_pair[l])                # [2, T*B, H] -> [T*B, 2, H]
            src = dst
        if S.drop is not None and l < self.num_layers - 1:
            k.mul(src, S.drop[l], dst)
            src = dst
        return src

    def _step(self, k: Any, d: Direction, t: int, hg: Tensor) -> None:  # pragma: no cover
        raise NotImplementedError

    def _step_bwd(self, k: Any, d: Direction, t: int, dyt: Tensor | None, dh: Tensor,
                  dc: Tensor | None, dg: Tensor, dhh: Tensor) -> None:  # pragma: no cover
        raise NotImplementedError

    # ----------------------------------------------------------------- backward
    def backward(self, dy: Tensor, ctx: Any) -> Tensor | None:
        """Backpropagation through time, layer by layer from the top: dx and the initial states'
        gradients written, every weight's gradient added into."""
        k, S = ctx.k, self._views(ctx)
        _, dh0, dc0, _ = self._split(ctx.dxs)
        self._final_state_grads(k, S, ctx, dy)
        g: int | None = None                     # which dseq buffer holds the output gradient
        if self.return_sequences:
            k.seq_transpose(dy, S.dseq[0])                      # [B, T, D*H] -> [T, B, D*H]
            g = 0
        for l in range(self.num_layers - 1, -1, -1):
            dys = self._output_grads(k, S, l, g)
            if l:
                nxt = 0 if g is None else 1 - g
                dinp = S.dseq[nxt]
            else:
                dinp = ctx.dxt if ctx.dx is not None else None
            for j, d in enumerate(S.dirs[l]):
                run_backward(self, k, S, d, dys[j], dh0 is not None)
                self._param_grads(k, S, d, S.inp[l])
                if dinp is not None:                            # dL/d(input) (+)= dG W_ih
                    k.gemm(S.dgates, d.W_ih, dinp, beta=float(j))
            if l:
                g = nxt
        if ctx.dx is not None:
            k.seq_transpose(ctx.dxt, ctx.dx)
        if dh0 is not None:
            k.seq_transpose(ctx.dhs, dh0)                       # [L*D, B, H] -> [B, L*D, H]
        if dc0 is not None:
            k.seq_transpose(ctx.dcs, dc0)
        return ctx.dx

    def _final_state_grads(self, k: Any, S: Views, ctx: Any, dy: Tensor) -> None:
        """``dhs`` (``dcs``) = the gradient of the final states: from the h_n (c_n) outputs,
        plus ``dy`` on the top layer's when y is its last state (return_sequences False)."""
        dhn = ctx.dys[1] if self.return_state else None
        dcn = ctx.dys[2] if self.return_state and self.HAS_CELL else None
        for src, dst in ((dhn, ctx.dhs), (dcn, ctx.dcs if self.HAS_CELL else None)):
            if dst is None:
                continue
            if src is not None:
                k.seq_transpose(src, dst)                       # [B, L*D, H] -> [L*D, B, H]
            else:
                k.fill(dst, 0.0)
        if self.return_sequences:
            return
        top = (self.num_layers - 1) * S.D
        if S.D == 1:
            k.add(S.dhs[top], dy, S.dhs[top])
            return
        B, H = dy.shape[0], self.hidden_size
        k.seq_transpose(ctx.view(dy, (B, 2, H)), ctx.dlast)     # [B, 2*H] -> [2, B, H]
        both = ctx.view(ctx.dhs, (2, B, H), top * B * H)
        k.add(both, ctx.dlast, both)

    def _output_grads(self, k: Any, S: Views, l: int, g: int | None) -> list:
        """Per direction of layer ``l``, the rows [T] of its output gradient (None: none),
        from ``S.dseq[g]`` (the gradient of what ``_emit`` returned): dropout and padding
        masked, the concatenation split."""
        if g is None:
            return [None] * S.D
        buf = S.dseq[g]
        if S.drop is not None and l < self.num_layers - 1:
            k.mul(buf, S.drop[l], buf)
        if S.D == 1:
            if S.masked:
                k.mul(buf, S.mask, buf)
            return [S.dseq_t[g]]
        k.seq_transpose(S.dseq_pair[g], S.gsplit_pair)          # [T*B, 2, H] -> [2, T*B, H]
        if S.masked:
            for part in S.gsplit_d:
                k.mul(part, S.mask, part)
        return S.gsplit_t

    @staticmethod
    def _param_grads(k: Any, S: Views, d: Direction, inp: Tensor) -> None:
        """Add direction ``d``'s weight and bias gradients: one GEMM or sum over all steps."""
        dG, dH = S.dgates, S.dhh
        if d.dW_ih is not None:
            k.gemm(dG, inp, d.dW_ih, trans_a=True, beta=1.0)
            k.gemm(dH, d.prev_seq, d.dW_hh, trans_a=True, beta=1.0)
        if d.db_ih is not None:
            k.col_sum(dG, d.db_ih, beta=1.0)
            k.col_sum(dH, d.db_hh, beta=1.0)
