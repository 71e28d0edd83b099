"""Compiling a traced graph into a Plan: slots by lifetime, one arena, tensors wired once.

Time is counted in ticks: op ``i`` runs forward at tick ``i``; the loss runs at tick ``n``
(forward) and ``n + 1`` (backward); op ``i`` runs backward at ``mirror(i) = 2n + 1 - i``.
From the ticks at which a value is touched the planner derives every lifetime:

- activation data: from its producer until its producer's backward (train), or until its last
  consumer (inference); the plan's input and output are pinned for the whole plan;
- activation gradient: from its last consumer's backward to its first toucher's backward;
- a consumer that is not the last to read a value gets a private gradient slot, summed into
  the shared one right after its backward (fan-out, e.g. a residual's input);
- saved buffers: from the layer's forward to its backward; scratch: during each call only.
"""

from __future__ import annotations

from .arena import Arena, Slot, plan_offsets
from .errors import ConfigError
from .graph import Graph, Value
from .params import ParamStore
from .states import StateStore
from .tensor import Tensor


class StalePlanError(ConfigError):
    """A plan was called after its model changed under it: the state arena was reallocated
    (grads or optimizer state made room for after the plan was compiled: its weights are a
    detached copy) or ``Model.set_kernels`` changed the kernels. Get a fresh one from
    ``model.plan(...)`` (or ``seq.plan(...)``)."""


class RunState:
    """State a model's plans share at run time: ``step`` counts training forwards (seeded
    RNG); ``pos`` is the number of tokens already in the KV caches before this forward (0 in
    training; a generator sets it before each prefill or decode step)."""

    __slots__ = ("step", "pos")

    def __init__(self) -> None:
        self.step = 0
        self.pos = 0


class _Timeline:
    """Tick arithmetic of one plan with ``n`` ops (see the module docstring)."""

    def __init__(self, n: int, train: bool) -> None:
        self.n, self.last, self.train = n, 2 * n + 1, train

    def mirror(self, t: int) -> int:
        return self.last - t

    def activation(self, ticks: set[int]) -> list[tuple[int, int]]:
        lo = min(ticks)
        return [(lo, self.mirror(lo) if self.train else max(ticks))]

    def gradient(self, ticks: set[int]) -> list[tuple[int, int]]:
        return [(self.mirror(max(ticks)), self.mirror(min(ticks)))]

    def buffer(self, kind: str, t: int) -> list[tuple[int, int]]:
        if not self.train:
            return [(t, t)]
        m = self.mirror(t)
        return [(t, m)] if kind == "saved" else [(t, t), (m, m)]


def _touches(v: Value, loss_tick: int | None) -> set[int]:
    """The forward ticks at which ``v`` is written or read (the loss reads the output)."""
    ts = {c.tick for c in v.consumers}
    if v.producer is not None:
        ts.add(v.producer.tick)
    if loss_tick is not None:
        ts.add(loss_tick)
    return ts or {0}


def _data_slots(graph: Graph, x: Value, y: Value, tl: _Timeline) -> dict[int, Slot]:
    """value index -> its data slot; a reshape shares its input's slot; in and out pinned."""
    data: dict[int, Slot] = {}
    ticks: dict[int, set[int]] = {}
    for v in graph.values:
        s = data[v.alias_of.index] if v.alias_of is not None else Slot(f"act{v.index}", v.spec.nbytes)
        data[v.index] = s
        ticks.setdefault(id(s), set()).update(_touches(v, tl.n if v is y else None))
    for s in {id(s): s for s in data.values()}.values():
        s.intervals = tl.activation(ticks[id(s)])
    for v in (x, y):
        data[v.index].intervals = [(0, tl.last)]
    return data


class _Grads:
    """Gradient slots: one shared per value; the value's last consumer (the first to run
    backward) writes it, every other consumer writes a private slot that is then added in."""

    def __init__(self, graph: Graph, x: Value, y: Value, needs: dict[int, bool], tl: _Timeline):
        self.of_value: dict[int, Slot | None] = {}
        self.dx: dict[tuple[int, int], Slot] = {}                 # (tick, input pos) -> slot
        self.accum: dict[int, list[tuple[Slot, Slot, tuple]]] = {}  # tick -> [(priv, shared, shape)]
        ticks: dict[int, set[int]] = {}
        for v in graph.values:
            if not needs[v.index]:
                self.of_value[v.index] = None
                continue
            # a reshape's gradient is the gradient its producer hands back for its input
            s = self.dx[(v.producer.tick, 0)] if v.alias_of is not None else Slot(
                f"grad{v.index}", v.spec.nbytes)
            self.of_value[v.index] = s
            ticks.setdefault(id(s), set()).update(_touches(v, tl.n if v is y else None))
            for i, c in enumerate(v.consumers):
                key = (c.tick, c.inputs.index(v))
                if i == len(v.consumers) - 1:
                    self.dx[key] = s
                    continue
                p = self.dx[key] = Slot(f"grad{v.index}@{c.tick}", v.spec.nbytes)
                ticks[id(p)] = {c.tick}
                self.accum.setdefault(c.tick, []).append((p, s, v.shape))
        self.slots = {id(s): s for s in [*self.of_value.values(), *self.dx.values()] if s}
        for s in self.slots.values():
            s.intervals = tl.gradient(ticks[id(s)])


class Plan:
    """A compiled model for one batch size and mode: forward, backward, no allocation."""

    def __init__(self, graph: Graph, x: Value, y: Value, store: ParamStore, kernels,
                 run: RunState, batch: int, input_grad: bool, states: StateStore) -> None:
        # read first: if the arena moves while this plan is wired, it is stale, never mixed
        self._store, self.generation = store, store.generation
        self.train, self.batch, self.kernels = graph.train, batch, kernels
        self.ops = ops = graph.ops
        tl = _Timeline(len(ops), self.train)
        needs = {x.index: self.train and input_grad}
        for op in ops:
            needs[op.output.index] = self.train and (
                bool(op.params) or any(needs[v.index] for v in op.inputs))
        data = _data_slots(graph, x, y, tl)
        grads = _Grads(graph, x, y, needs, tl)
        buffers = []
        for op in ops:
            for d in op.buffers:
                s = Slot(f"{op.ctx.path}.{d.attr}", d.spec.nbytes, tl.buffer(d.kind, op.tick))
                buffers.append((op, d, s))

        unique = {id(s): s for s in data.values()}
        unique.update(grads.slots)
        unique.update({id(s): s for _, _, s in buffers})
        self.slots = list(unique.values())
        A = self.arena = Arena(plan_offsets(self.slots),
                               f"plan[{batch},{'train' if self.train else 'infer'}]")

        def view(slot: Slot, shape: tuple[int, ...], dtype: str = "f32") -> Tensor:
            return A.view(slot.offset, shape, dtype, slot.name)

        value_t = {v.index: view(data[v.index], v.shape, v.dtype) for v in graph.values}
        grad_t = {v.index: view(s, v.shape) if (s := grads.of_value[v.index]) else None
                  for v in graph.values}
        self.x, self.y, self.dx, self.dy = (value_t[x.index], value_t[y.index],
                                            grad_t[x.index], grad_t[y.index])
        fwd, bwd = [], []
        for op in ops:
            ctx, ins = op.ctx, op.inputs
            ctx.k, ctx.run = kernels, run
            ctx.x, ctx.y = value_t[ins[0].index], value_t[op.output.index]
            dxs = [view(grads.dx[(op.tick, i)], v.shape) if (op.tick, i) in grads.dx else None
                   for i, v in enumerate(ins)]
            ctx.dx = dxs[0]
            if len(ins) > 1:
                ctx.other, ctx.dother = value_t[ins[1].index], dxs[1]
            for p in op.params:
                name = graph.resolve(p.name)          # a tied parameter shares its target
                setattr(ctx, p.attr, store.weight(name))
                setattr(ctx, "d" + p.attr, store.grad_tensors.get(name) if self.train else None)
            for s in op.states:
                setattr(ctx, s.attr, states.get(s))
            fwd.append((op.layer.forward, ctx.x, ctx))
            if self.train and grads.of_value[op.output.index] is not None:
                adds = [(view(p, shape), view(s, shape)) for p, s, shape in grads.accum.get(op.tick, [])]
                # a reshape has no backward work: its dy already is its dx
                bwd.append((None if op.alias else op.layer.backward, grad_t[op.output.index], ctx, adds))
        for op, d, s in buffers:
            setattr(op.ctx, d.attr, view(s, d.spec.shape, d.spec.dtype))
        self._fwd, self._bwd, self._add = fwd, bwd[::-1], kernels.add
        self._mapped = bool(store.files)      # weights mapped from files: checked per forward

    def _stale(self) -> StalePlanError:
        return StalePlanError(
            f"{self.arena.name}: this plan is stale: it was compiled before "
            f"{self._store.change_since(self.generation)}. Get a fresh plan (model.plan(...), "
            "or seq.plan(...) on a sequence) after the change")

    # ----------------------------------------------------------------- running
    def forward(self) -> Tensor:
        """Run every layer forward on ``self.x``; the result is ``self.y``. Raises
        ``StalePlanError`` if the model changed since this plan was compiled, and the
        weight file's error if a file the weights are mapped from changed."""
        if self._store.generation != self.generation:
            raise self._stale()
        if self._mapped:                      # one fstat per file; nothing for arena weights
            self._store.check_files()
        for f, x, ctx in self._fwd:
            f(x, ctx)
        return self.y

    def backward(self) -> None:
        """Run every layer backward from ``self.dy``; parameter grads are *added* into."""
        if self._store.generation != self.generation:
            raise self._stale()
        add = self._add
        for f, dy, ctx, adds in self._bwd:
            if f is not None:
                f(dy, ctx)
            for src, dst in adds:
                add(dst, src, dst)

    def memory(self) -> dict[str, int]:
        """Bytes of the activation arena and what it would take without reuse."""
        return {"activations": self.arena.nbytes,
                "activations_unplanned": sum(s.nbytes for s in self.slots)}

