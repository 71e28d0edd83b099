"""Batched decoding: the slots of one loaded model advance together, one decode step for all
of them, one pass over the weights (decoding is bandwidth-bound, so B rows cost little more
than one).

``BatchDecoder(model, parallel)`` holds ``parallel`` slots, each a ``Generator`` (its prompt
chunks, its position) whose KV caches are row ``slot`` of caches shared by every slot
([parallel, max_len, Hkv, D] per layer, ``SlotCaches``). ``step(slots, tokens)`` feeds one
token to each given slot at that slot's own position, through a plan of ``len(slots)`` rows
whose attention layers read ``run.rows`` (each row's slot and position: ``rope_rows``,
``kv_store_rows``, ``attention_decode_rows``) and whose products take each row as a decode
step takes it (``matmul_rows`` / ``linears_rows`` for quantized weights: each weight read
once for every row, q/k/v and gate/up in one call; float32 weights through the GEMM in
groups of at most four rows, its GEMV path, one row at a time on the NumPy kernels), so
every sequence gets exactly the logits it gets decoded alone. After warm-up a step
allocates nothing: the plans (one per row count), their row arrays and, on the C kernels,
their captured replays (``qorus_core.replay``) are made once.

Models whose layers use the position otherwise (learned positions, sliding windows: GPT-2,
Gemma 3) are not batched: ``why_not`` says why, and the server steps their slots in turn.
"""

from __future__ import annotations

import dataclasses
from copy import copy

import numpy as np

from qorus_core import QWeight, Replay, ReplayError, RunState, Spec, StateStore, Tensor, record_plan
from qorus_core.errors import ConfigError, ShapeError

from .attention import CausalSelfAttention
from .generate import MAX_CHUNK, Generator
from .positional import PositionalEmbedding

ROWS_MAX = 64          # rows of one step (the rows kernels' limit)
GEMV_ROWS = 4          # the C GEMM's GEMV path (QR_SKINNY_M): rows computed as one row is


class RowsRun(RunState):
    """The run state of a batched step: ``rows`` = (slot, pos), int32 Tensors [B]."""

    __slots__ = ("rows",)

    def __init__(self, slot: Tensor, pos: Tensor) -> None:
        super().__init__()
        self.rows = (slot, pos)


class SlotCaches:
    """The KV caches of every slot: one [parallel, ...] buffer per cache (made on first use,
    zero pages until positions fill)."""

    def __init__(self, model, parallel: int) -> None:
        self.parallel = parallel
        self.store = StateStore(model.seed, shared=model.states)

    def full(self, decl) -> Tensor:
        """The buffer of every slot for ``decl`` (a non-persistent state of any batch)."""
        shape = (self.parallel, *decl.spec.shape[1:])
        return self.store.get(dataclasses.replace(decl, spec=Spec(shape, decl.spec.dtype)))


class _AllSlots(StateStore):
    """The batched plans' states: every cache is the whole [parallel, ...] buffer."""

    def __init__(self, model, caches: SlotCaches) -> None:
        super().__init__(model.seed, shared=model.states)
        self.caches = caches

    def get(self, decl) -> Tensor:
        return super().get(decl) if decl.persistent else self.caches.full(decl)


class _OneSlot(StateStore):
    """A slot's own plans' states: its caches are row ``index`` of the shared buffers."""

    def __init__(self, model, caches: SlotCaches, index: int) -> None:
        super().__init__(model.seed, shared=model.states)
        self.caches, self.index = caches, index

    def get(self, decl) -> Tensor:
        if decl.persistent:
            return super().get(decl)
        if not decl.spec.shape or decl.spec.shape[0] != 1:
            raise ConfigError(f"state {decl.name!r}: a slot's plans are of one sequence, this "
                              f"one declares {decl.spec.shape}")
        full = self.caches.full(decl)
        return Tensor(full.a[self.index:self.index + 1], decl.name)


# ----------------------------------------------------------------------------- products
def _rows_linear(self, x: Tensor, w, y: Tensor) -> None:
    """``linear`` of a batched step: each row as a one-row decode step computes it."""
    if isinstance(w, QWeight):
        self.matmul_rows(x, w, y)
        return
    if x.rows <= self.rows_group:
        self.gemm(x, w, y, trans_b=True)
        return
    key = (x.p, y.p, x.rows, y.cols)
    groups = self.rows_views.get(key)
    if groups is None:                            # plan tensors: cut once, kept
        X, Y, g = x.a.reshape(x.rows, -1), y.a.reshape(x.rows, -1), self.rows_group
        groups = self.rows_views[key] = [(Tensor(X[i:i + g]), Tensor(Y[i:i + g]))
                                         for i in range(0, x.rows, g)]
    for xg, yg in groups:
        self.gemm(xg, w, yg, trans_b=True)


def _rows_linears(self, x: Tensor, ws, ys) -> None:
    """``linears`` of a batched step: quantized weights through ``linears_rows`` (x quantized
    once, one parallel region for q/k/v or gate/up), each row as its decode step has it."""
    if all(isinstance(w, QWeight) for w in ws):
        self.linears_rows(x, ws, ys)
        return
    for w, y in zip(ws, ys):
        _rows_linear(self, x, w, y)


_ROWS_SETS: dict[type, type] = {}


def rows_kernels(kernels):
    """A copy of ``kernels`` whose ``linear`` and ``linears`` compute each row as a decode
    step does."""
    cls = type(kernels)
    sub = _ROWS_SETS.get(cls)
    if sub is None:
        sub = _ROWS_SETS[cls] = type(f"{cls.__name__}Rows", (cls,),
                                     {"linear": _rows_linear, "linears": _rows_linears})
    out = copy(kernels)
    out.__class__ = sub
    out.rows_group = GEMV_ROWS if getattr(kernels, "name", "") == "c" else 1
    out.rows_views = {}
    return out


# ----------------------------------------------------------------------------- plans
class _BatchPlan:
    """The decode plan of ``rows`` slots: token ids, slots and positions in, logits out."""

    def __init__(self, model, rows: int, states: StateStore, kernels, replay: bool) -> None:
        self.slot = Tensor(np.zeros(rows, np.int32), "slot")
        self.pos = Tensor(np.zeros(rows, np.int32), "pos")
        self.plan = model.compile_plan(model.plan_key(rows, False, False, (1,)),
                                       RowsRun(self.slot, self.pos), states)
        self.plan.kernels = kernels
        for op in self.plan.ops:
            op.ctx.k = kernels
        self.ids = self.plan.x.a.reshape(rows)
        self.logits = self.plan.y.a.reshape(rows, -1)
        self.replay: Replay | None = None
        self.replay_error: str | None = None if replay else "replay=False"
        self._tapes: list = []

    def forward(self, model) -> None:
        if self.replay is not None:
            model.check_weight_files()           # a replay bypasses plan.forward and its check
            self.replay.run(0)
            return
        if self.replay_error is not None:
            self.plan.forward()
            return
        try:                                      # recorded; the third derives the replay
            tape = record_plan(self.plan)
        except ReplayError as exc:
            self.replay_error = str(exc)
            self.plan.forward()
            return
        self._tapes.append((len(self._tapes), tape))
        if len(self._tapes) == 3:                 # every argument is the same at each step
            try:
                self.replay = Replay.derive(self.plan.kernels, self._tapes, 1)
            except ReplayError as exc:
                self.replay_error = str(exc)
            self._tapes.clear()


def why_not(gen: Generator) -> str | None:
    """None when ``gen``'s model can decode several slots in one step, else why not."""
    for op in gen.seq.plan(1, shape=(1,)).ops:
        layer = op.layer
        if isinstance(layer, PositionalEmbedding):
            return "learned positions (llm.PositionalEmbedding) take one position a step"
        if isinstance(layer, CausalSelfAttention) and type(layer) is not CausalSelfAttention:
            return f"{type(layer).__name__} attends by its own rules (not llm.CausalSelfAttention)"
    return None


class BatchDecoder:
    """``parallel`` slots of ``model`` decoded together (see the module docstring).
    Single-user, like a Generator: one thread drives it."""

    def __init__(self, model, parallel: int, max_chunk: int = MAX_CHUNK, replay: bool = True) -> None:
        if not 1 <= parallel <= ROWS_MAX:
            raise ConfigError(f"BatchDecoder: parallel must be in [1, {ROWS_MAX}], got {parallel}")
        self.model, self.parallel, self._replay = model, parallel, replay
        self.caches = SlotCaches(model, parallel)
        self.generators: list[Generator] = []
        for b in range(parallel):
            seq = model.sequence()
            seq.states = _OneSlot(model, self.caches, b)     # before any plan is made
            self.generators.append(Generator(model, max_chunk, replay, seq=seq))
        self.why_not = why_not(self.generators[0])
        self._states = _AllSlots(model, self.caches)
        self._plans: dict[int, _BatchPlan] = {}
        self._version = -1

    def step(self, slots: list[int], tokens: list[int]) -> np.ndarray:
        """Feed ``tokens[i]`` to slot ``slots[i]`` (each at its generator's position, which
        moves on by one); the logits [len(slots), V] (a view, valid until the next step)."""
        if self.why_not is not None:
            raise ConfigError(f"this model's slots cannot be decoded together: {self.why_not}")
        n = len(slots)
        if not 1 <= n <= self.parallel or len(tokens) != n or len(set(slots)) != n:
            raise ShapeError(f"step: {n} distinct slots of {self.parallel} and one token each, "
                             f"got slots {slots} and {len(tokens)} tokens")
        bp = self._plan(n)
        for i, (s, t) in enumerate(zip(slots, tokens)):
            g = self.generators[s]
            if g.pos >= g.context:
                raise ShapeError(f"slot {s}: the context of {g.context} positions is full")
            bp.ids[i] = g._check_token(t)
            bp.slot.a[i] = s
            bp.pos.a[i] = g.pos
        bp.forward(self.model)
        for s in slots:
            self.generators[s].pos += 1
        return bp.logits

    def _plan(self, n: int) -> _BatchPlan:
        if self._version != self.model.plans_version:    # weights moved, kernels changed
            self._plans.clear()
            self._kernels = rows_kernels(self.model.kernels)
            self._version = self.model.plans_version
        bp = self._plans.get(n)
        if bp is None:
            bp = self._plans[n] = _BatchPlan(self.model, n, self._states, self._kernels,
                                             self._replay)
        return bp
