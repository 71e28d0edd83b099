"""Compiling a traced graph into a Plan: slots by lifetime, one arena, tensors wired once.

Time is counted in ticks: op ``i`` runs forward at tick ``i``; the loss runs at tick ``n``
(forward) and ``n + 1`` (backward); op ``i`` runs backward at ``mirror(i) = 2n + 1 - i``.
From the ticks at which a value is touched the planner derives every lifetime:

- activation data: from its producer until its producer's backward (train), or until its last
  consumer (inference); the plan's inputs and outputs are pinned for the whole plan;
- activation gradient: from its last consumer's backward to its first toucher's backward;
- a consumer that is not the last to read a value gets a private gradient slot, summed into
  the shared one right after its backward (fan-out, e.g. a residual's input, a shared
  layer's input; a model output that other layers also read is first written by the loss);
- saved buffers: from the layer's forward to its backward; scratch: during each call only.
"""

from __future__ import annotations

from .arena import Arena, Slot, plan_offsets
from .distributed import Communicator
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
    training; a generator sets it before each prefill or decode step); ``last_position_only``
    says the caller reads only the last position of each sequence's output (a generator's
    prompt chunks), so a layer whose outputs nothing else reads (the LM head) may compute
    that position alone and leave the others stale. In data-parallel training ``comm`` is
    the job's communicator (a synchronised BatchNorm reduces over it) and ``row_offset`` the
    position of this rank's first row in the global batch, so per-sample randomness
    (``dropout_seed``) is the same as one process running the whole batch."""

    __slots__ = ("step", "pos", "last_position_only", "row_offset", "comm")

    def __init__(self) -> None:
        self.step = 0
        self.pos = 0
        self.last_position_only = False
        self.row_offset = 0
        self.comm: Communicator = Communicator()

    def dropout_seed(self, seed: int, index: int, per_row: int) -> int:
        """The 32-bit seed of a dropout mask (``k.dropout_mask``, attention dropout) for this
        training step: a hash of the layer's ``seed``, its position ``index`` and ``step``,
        moved along the mask's counter by ``row_offset`` rows of ``per_row`` elements (the
        counter hashes ``i * 0x9E3779B1 + seed``, so adding ``offset * 0x9E3779B1`` to the
        seed continues the stream at element ``offset``)."""
        base = seed * 0x9E3779B1 + index * 0x85EBCA77 + self.step * 0xC2B2AE3D
        return (base + self.row_offset * per_row * 0x9E3779B1) & 0xFFFFFFFF


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
    """The forward ticks at which ``v`` is written or read (the loss reads each output)."""
    ts = {op.tick for op, _ in v.uses}
    if v.producer is not None:
        ts.add(v.producer.tick)
    if loss_tick is not None:
        ts.add(loss_tick)
    return ts or {0}


def _data_slots(graph: Graph, pinned: list[Value], outputs: set[int],
                tl: _Timeline) -> dict[int, Slot]:
    """value index -> its data slot; a reshape shares its input's slot; inputs and outputs
    pinned for the whole plan."""
    data: dict[int, Slot] = {}
    ticks: dict[int, set[int]] = {}
    for v in graph.values:
        s = data[v.alias_of.index] if v.alias_of is not None else Slot(f"act{v.index}", v.spec.nbytes)
        data[v.index] = s
        ticks.setdefault(id(s), set()).update(_touches(v, tl.n if v.index in outputs else None))
    for s in {id(s): s for s in data.values()}.values():
        s.intervals = tl.activation(ticks[id(s)])
    for v in pinned:
        data[v.index].intervals = [(0, tl.last)]
    return data


class _Grads:
    """Gradient slots: one shared per value. The first to run backward among its readers
    writes it (the loss, for a model output; else its last consumer); every other consumer
    writes a private slot that is added in right after its backward. A value that needs a
    gradient but gets none (an unused output of a several-output layer, a value read only by
    a stop-gradient) is zero-filled before its producer's backward. The gradients of the
    model's inputs are pinned for the whole plan, as their data are: the caller reads them
    after backward, so no later gradient may reuse their memory."""

    def __init__(self, graph: Graph, outputs: set[int], needs: dict[int, bool], tl: _Timeline,
                 inputs: set[int] = frozenset()):
        self.of_value: dict[int, Slot | None] = {}
        self.dx: dict[tuple[int, int], Slot] = {}                 # (tick, input pos) -> slot
        self.accum: dict[int, list[tuple[Slot, Slot, tuple]]] = {}  # tick -> [(priv, shared, shape)]
        self.zero: dict[int, list[Value]] = {}                    # tick -> values to zero first
        ticks: dict[int, set[int]] = {}
        for v in graph.values:
            if not needs[v.index]:
                self.of_value[v.index] = None
                continue
            # a reshape's gradient is the gradient its producer hands back for its input
            s = self.dx[(v.producer.tick, 0)] if v.alias_of is not None else Slot(
                f"grad{v.index}", v.spec.nbytes)
            self.of_value[v.index] = s
            is_out = v.index in outputs
            ticks.setdefault(id(s), set()).update(_touches(v, tl.n if is_out else None))
            uses = sorted((op.tick, pos) for op, pos in v.uses if op.grad_inputs)
            if not uses and not is_out:
                self.zero.setdefault(v.producer.tick, []).append(v)
            for i, key in enumerate(uses):
                if i == len(uses) - 1 and not is_out:
                    self.dx[key] = s
                    continue
                p = self.dx[key] = Slot(f"grad{v.index}@{key[0]}.{key[1]}", v.spec.nbytes)
                ticks[id(p)] = {key[0]}
                self.accum.setdefault(key[0], []).append((p, s, v.shape))
        self.slots = {id(s): s for s in [*self.of_value.values(), *self.dx.values()] if s}
        for s in self.slots.values():
            s.intervals = tl.gradient(ticks[id(s)])
        for i in inputs:
            if self.of_value.get(i) is not None:
                self.of_value[i].intervals = [(0, tl.last)]


def _needs_grad(graph: Graph, inputs: list[Value], input_grad: set[int], train: bool
                ) -> dict[int, bool]:
    """value index -> whether backward computes its gradient: a float input asked for, or an
    output of an op with parameters or reached by such a value through ops that pass
    gradients on."""
    needs = {v.index: train and i in input_grad and v.dtype == "f32"
             for i, v in enumerate(inputs)}
    for op in graph.ops:
        flows = op.grad_inputs and any(needs[v.index] for v in op.inputs if v is not None)
        for v in op.outputs:
            needs[v.index] = train and v.dtype == "f32" and (bool(op.params) or flows)
    return needs


class Plan:
    """A compiled model for one batch size and mode: forward, backward, no allocation.

    ``inputs`` / ``outputs``: name -> Tensor (batch first) to fill and to read;
    ``dinputs`` / ``doutputs``: name -> gradient Tensor (train plans; None where no gradient
    is computed: int inputs, inputs not asked for). ``x``, ``y``, ``dx``, ``dy``: the first
    of each (a model of one input and one output has no others)."""

    def __init__(self, graph: Graph, x: Value | list[Value], y: Value | list[Value],
                 store: ParamStore, kernels, run: RunState, batch: int,
                 input_grad: bool | set[int], states: StateStore,
                 input_names: tuple[str, ...] = ("x",),
                 output_names: tuple[str, ...] = ("y",)) -> None:
        # read first: if the arena moves while this plan is wired, it is stale, never mixed
        self._store, self.generation = store, store.generation
        self.train, self.batch, self.kernels = graph.train, batch, kernels
        self.ops = ops = graph.ops
        xs = [x] if isinstance(x, Value) else list(x)
        ys = [y] if isinstance(y, Value) else list(y)
        tl = _Timeline(len(ops), self.train)
        wanted = set(range(len(xs))) if input_grad is True else set(input_grad or ())
        needs = _needs_grad(graph, xs, wanted, self.train)
        out_idx = {v.index for v in ys}
        data = _data_slots(graph, xs + ys, out_idx, tl)
        grads = _Grads(graph, out_idx, needs, tl, {v.index for v in xs})
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
        self.inputs = {n: value_t[v.index] for n, v in zip(input_names, xs)}
        self.outputs = {n: value_t[v.index] for n, v in zip(output_names, ys)}
        self.dinputs = {n: grad_t[v.index] for n, v in zip(input_names, xs)}
        self.doutputs = {n: grad_t[v.index] for n, v in zip(output_names, ys)}
        self.x, self.y = value_t[xs[0].index], value_t[ys[0].index]
        self.dx, self.dy = grad_t[xs[0].index], grad_t[ys[0].index]
        fwd, bwd = [], []
        for op in ops:
            ctx, ins = op.ctx, op.inputs
            ctx.k, ctx.run = kernels, run
            ctx.xs = tuple(None if v is None else value_t[v.index] for v in ins)
            ctx.ys = tuple(value_t[v.index] for v in op.outputs)
            ctx.x, ctx.y = ctx.xs[0], ctx.ys[0]
            ctx.dxs = tuple(view(grads.dx[(op.tick, i)], v.shape) if (op.tick, i) in grads.dx
                            else None for i, v in enumerate(ins))
            ctx.dys = tuple(grad_t[v.index] for v in op.outputs)
            ctx.dx = ctx.dxs[0]
            if len(ins) > 1:
                ctx.other, ctx.dother = ctx.xs[1], ctx.dxs[1]
            for p in op.params:
                name = graph.resolve(p.name)          # a tied parameter shares its target
                setattr(ctx, p.attr, store.weight(name))
                setattr(ctx, "d" + p.attr, store.grad_tensors.get(name) if self.train else None)
            for s in op.states:
                setattr(ctx, s.attr, states.get(s))
            fwd.append((op.layer.forward, ctx.x, ctx))
            if self.train and needs[op.output.index]:
                adds = [(view(p, shape), view(s, shape)) for p, s, shape in grads.accum.get(op.tick, [])]
                zeros = [grad_t[v.index] for v in grads.zero.get(op.tick, [])]
                # a reshape has no backward work: its dy already is its dx
                bwd.append((None if op.alias else op.layer.backward, ctx.dys[0], ctx, zeros, adds))
        for op, d, s in buffers:
            setattr(op.ctx, d.attr, view(s, d.spec.shape, d.spec.dtype))
        self._fwd, self._bwd = fwd, bwd[::-1]
        self._add, self._fill = kernels.add, kernels.fill
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
        add, fill = self._add, self._fill
        for f, dy, ctx, zeros, adds in self._bwd:
            for t in zeros:
                fill(t, 0.0)
            if f is not None:
                f(dy, ctx)
            for src, dst in adds:
                add(dst, src, dst)

    def memory(self) -> dict[str, int]:
        """Bytes of the activation arena and what it would take without reuse."""
        return {"activations": self.arena.nbytes,
                "activations_unplanned": sum(s.nbytes for s in self.slots)}

