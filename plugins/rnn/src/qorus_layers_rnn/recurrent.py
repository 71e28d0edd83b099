"""The machinery shared by rnn.RNN, rnn.LSTM and rnn.GRU: parameters, buffers, the time loop.

Layout. Input and output are batch-first ([B, T, in] -> [B, T, H]); inside, everything is
time-major so that one timestep is a contiguous [B, ...] block: the input is transposed once
(``seq_transpose``), ``x W_ih^T + b_ih`` of all timesteps is one GEMM into ``gates_l``
[T, B, G*H], and per step ``h_{t-1} W_hh^T`` is one GEMM into ``hg`` [B, G*H] followed by one
fused cell kernel that overwrites ``gates_l[t]`` with the gate activations and writes
``hs_l[t+1]`` (``hs_l`` [T+1, B, H]; ``hs_l[0]`` is the initial state). Layer ``l+1`` reads
``hs_l[1:]`` directly.

Backward through time runs the cell ``_bwd`` kernels in reverse into ``dgates`` [T, B, G*H],
then the weight gradients are one GEMM each over all timesteps (``dW_ih += dgates^T x``,
``dW_hh += dgates^T hs[:T]``) and the input gradient one GEMM (``dx = dgates W_ih``).

State. ``h0`` (and ``c0``) [num_layers, B, H] are non-persistent state buffers read at the
start of every forward (zero unless written); ``h_n`` (and ``c_n``) receive the final state.
With ``stateful=True`` the final state is also copied into ``h0``/``c0``: the next call
continues where this one ended (Keras' meaning). No gradient flows into ``h0``/``c0``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from qorus_core import Layer, Spec, Tensor
from qorus_core.errors import ShapeError
from qorus_core.init import uniform
from qorus_core.validate import boolean, positive_int


def _rows(t: Tensor) -> list[Tensor]:
    """One Tensor per index of the first dimension (views, made once per plan)."""
    return [Tensor(t.a[i], f"{t.name}[{i}]") for i in range(t.shape[0])]


class _Steps:
    """Per-plan views of one layer's buffers: made on the first call, reused afterwards."""

    def __init__(self, layer: Recurrent, ctx: Any) -> None:
        L = layer.num_layers
        self.W_ih = [getattr(ctx, f"weight_ih_l{l}") for l in range(L)]
        self.W_hh = [getattr(ctx, f"weight_hh_l{l}") for l in range(L)]
        self.dW_ih = [getattr(ctx, f"dweight_ih_l{l}", None) for l in range(L)]
        self.dW_hh = [getattr(ctx, f"dweight_hh_l{l}", None) for l in range(L)]
        bias = layer.bias
        self.b_ih = [getattr(ctx, f"bias_ih_l{l}") if bias else None for l in range(L)]
        self.b_hh = [getattr(ctx, f"bias_hh_l{l}") if bias else None for l in range(L)]
        self.db_ih = [getattr(ctx, f"dbias_ih_l{l}", None) if bias else None for l in range(L)]
        self.db_hh = [getattr(ctx, f"dbias_hh_l{l}", None) if bias else None for l in range(L)]
        self.gates = [getattr(ctx, f"gates_l{l}") for l in range(L)]
        self.gate_t = [_rows(g) for g in self.gates]
        hs = [getattr(ctx, f"hs_l{l}") for l in range(L)]
        self.hs_t = [_rows(h) for h in hs]
        T = hs[0].shape[0] - 1
        self.seq = [Tensor(h.a[1:], f"{h.name}[1:]") for h in hs]        # outputs [T, B, H]
        self.prev = [Tensor(h.a[:T], f"{h.name}[:T]") for h in hs]       # h_{t-1} [T, B, H]
        self.cs_t = ([_rows(getattr(ctx, f"cs_l{l}")) for l in range(L)]
                     if layer.HAS_CELL else None)
        self.hn_t = ([_rows(getattr(ctx, f"hn_l{l}")) for l in range(L)]
                     if layer.GATES == 3 else None)
        self.h0, self.h_n = _rows(ctx.h0), _rows(ctx.h_n)
        if layer.HAS_CELL:
            self.c0, self.c_n = _rows(ctx.c0), _rows(ctx.c_n)
        if ctx.train:
            self.dgates_t = _rows(ctx.dgates)
            # gradient of h W_hh^T + b_hh: GRU's own buffer, the gate gradient for the others
            self.dhh = ctx.dhg if layer.GATES == 3 else ctx.dgates
            self.dhh_t = _rows(ctx.dhg) if layer.GATES == 3 else self.dgates_t
            self.dseq = [ctx.dseq_a, ctx.dseq_b] if L > 1 else [ctx.dseq_a]
            self.dseq_t = [_rows(d) for d in self.dseq]


class Recurrent(Layer):
    """Base of the recurrent layers; subclasses set ``GATES``, ``HAS_CELL`` and the two
    per-step methods ``_step`` and ``_step_bwd``."""

    GATES: ClassVar[int] = 1
    HAS_CELL: ClassVar[bool] = False
    _DH_BETA: ClassVar[float] = 0.0   # GRU: 1.0 (its cell already wrote z * dh into dh)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 return_sequences: bool = True, stateful: bool = False) -> None:
        name = f"rnn.{type(self).__name__}"
        self.input_size = positive_int(input_size, "input_size", name)
        self.hidden_size = positive_int(hidden_size, "hidden_size", name)
        self.num_layers = positive_int(num_layers, "num_layers", name)
        self.bias = boolean(bias, "bias", name)
        self.return_sequences = boolean(return_sequences, "return_sequences", name)
        self.stateful = boolean(stateful, "stateful", name)

    # ----------------------------------------------------------------- build
    def build(self, x: Spec, b) -> Spec:
        if len(x.shape) != 3 or x.dtype != "f32":
            raise ShapeError(f"expects float32 input [batch, time, {self.input_size}], got "
                             f"{x.dtype} {x.shape}")
        B, T, n_in = x.shape
        if n_in != self.input_size:
            raise ShapeError(f"expected input_size {self.input_size} features, got {n_in}")
        H, L, GH = self.hidden_size, self.num_layers, self.GATES * self.hidden_size
        init = uniform(1.0 / math.sqrt(H))                  # PyTorch: U(-1/sqrt(H), 1/sqrt(H))
        for l in range(L):
            b.param(f"weight_ih_l{l}", (GH, n_in if l == 0 else H), init)
            b.param(f"weight_hh_l{l}", (GH, H), init)
            if self.bias:
                b.param(f"bias_ih_l{l}", (GH,), init)
                b.param(f"bias_hh_l{l}", (GH,), init)
        b.state("h0", (L, B, H), persistent=False)
        b.state("h_n", (L, B, H), persistent=False)
        if self.HAS_CELL:
            b.state("c0", (L, B, H), persistent=False)
            b.state("c_n", (L, B, H), persistent=False)
        # saved: forward -> backward in training (an inference plan keeps them for the call only)
        b.saved("xt", (T, B, n_in))
        for l in range(L):
            b.saved(f"gates_l{l}", (T, B, GH))
            b.saved(f"hs_l{l}", (T + 1, B, H))
            if self.HAS_CELL:
                b.saved(f"cs_l{l}", (T + 1, B, H))
            if self.GATES == 3:
                b.saved(f"hn_l{l}", (T, B, H))
        b.scratch("hg", (B, GH))
        if b.train:
            b.scratch("dgates", (T, B, GH))
            if self.GATES == 3:
                b.scratch("dhg", (T, B, GH))
            b.scratch("dh", (B, H))
            if self.HAS_CELL:
                b.scratch("dc", (B, H))
            b.scratch("dseq_a", (T, B, H))
            if L > 1:
                b.scratch("dseq_b", (T, B, H))
            b.scratch("dxt", (T, B, n_in))
        return Spec((B, T, H) if self.return_sequences else (B, H))

    def _steps(self, ctx) -> _Steps:
        s = ctx.__dict__.get("_rnn_steps")
        if s is None:
            s = ctx._rnn_steps = _Steps(self, ctx)
        return s

    # ----------------------------------------------------------------- forward
    def forward(self, x, ctx):
        k, S = ctx.k, self._steps(ctx)
        k.seq_transpose(x, ctx.xt)
        inp = ctx.xt
        for l in range(self.num_layers):
            k.gemm(inp, S.W_ih[l], S.gates[l], trans_b=True)     # [T*B, GH] = x W_ih^T
            if S.b_ih[l] is not None:
                k.bias_add(S.gates[l], S.b_ih[l])
            k.copy(S.h0[l], S.hs_t[l][0])
            if self.HAS_CELL:
                k.copy(S.c0[l], S.cs_t[l][0])
            self._run_layer(k, S, l, ctx.hg)
            inp = S.seq[l]
        top, T = self.num_layers - 1, len(S.gate_t[0])
        if self.return_sequences:
            k.seq_transpose(S.seq[top], ctx.y)                   # [T, B, H] -> [B, T, H]
        else:
            k.copy(S.hs_t[top][T], ctx.y)
        for l in range(self.num_layers):
            k.copy(S.hs_t[l][T], S.h_n[l])
            if self.HAS_CELL:
                k.copy(S.cs_t[l][T], S.c_n[l])
        if self.stateful:
            k.copy(ctx.h_n, ctx.h0)
            if self.HAS_CELL:
                k.copy(ctx.c_n, ctx.c0)
        return ctx.y

    def _run_layer(self, k, S: _Steps, l: int, hg: Tensor) -> None:
        W_hh, hs = S.W_hh[l], S.hs_t[l]
        for t in range(len(S.gate_t[l])):
            k.gemm(hs[t], W_hh, hg, trans_b=True)               # hg [B, GH] = h_{t-1} W_hh^T
            self._step(k, S, l, t, hg)

    def _step(self, k, S: _Steps, l: int, t: int, hg: Tensor) -> None:  # pragma: no cover
        raise NotImplementedError

    # ----------------------------------------------------------------- backward
    def backward(self, dy, ctx):
        k, S, L = ctx.k, self._steps(ctx), self.num_layers
        T = len(S.gate_t[0])
        if self.return_sequences:
            k.seq_transpose(dy, S.dseq[0])                       # [B, T, H] -> [T, B, H]
            dys: list[Tensor | None] | None = S.dseq_t[0]
        else:
            dys = None
        cur = 0
        for l in range(L - 1, -1, -1):
            k.fill(ctx.dh, 0.0)
            if self.HAS_CELL:
                k.fill(ctx.dc, 0.0)
            W_hh, dhh_t = S.W_hh[l], S.dhh_t
            for t in range(T - 1, -1, -1):
                if dys is not None:
                    dyt = dys[t]
                else:
                    dyt = dy if t == T - 1 else None
                self._step_bwd(k, S, l, t, dyt, ctx)
                if t:                                            # dL/dh_{t-1} (+)= d W_hh
                    k.gemm(dhh_t[t], W_hh, ctx.dh, beta=self._DH_BETA)
            dG, dH = ctx.dgates, S.dhh
            inp = S.seq[l - 1] if l else ctx.xt
            if S.dW_ih[l] is not None:
                k.gemm(dG, inp, S.dW_ih[l], trans_a=True, beta=1.0)
                k.gemm(dH, S.prev[l], S.dW_hh[l], trans_a=True, beta=1.0)
            if S.db_ih[l] is not None:
                k.col_sum(dG, S.db_ih[l], beta=1.0)
                k.col_sum(dH, S.db_hh[l], beta=1.0)
            if l:
                cur = 1 - cur
                k.gemm(dG, S.W_ih[l], S.dseq[cur])               # dL/d(layer l's input)
                dys = S.dseq_t[cur]
            elif ctx.dx is not None:
                k.gemm(dG, S.W_ih[0], ctx.dxt)
                k.seq_transpose(ctx.dxt, ctx.dx)
        return ctx.dx

    def _step_bwd(self, k, S: _Steps, l: int, t: int, dyt, ctx) -> None:  # pragma: no cover
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {"input_size": self.input_size, "hidden_size": self.hidden_size,
                "num_layers": self.num_layers, "bias": self.bias,
                "return_sequences": self.return_sequences, "stateful": self.stateful}
