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
from .graph import Graph, Op, Value
from .params import ParamStore
from .tensor import Tensor


class RunState:
    """State a plan's layers share at run time: ``step`` counts training forwards."""

    __slots__ = ("step",)

    def __init__(self) -> None:
        self.step = 0


class Plan:
    """A compiled model for one batch size and mode: forward, backward, no allocation."""

    def __init__(self, graph: Graph, x: Value, y: Value, store: ParamStore, kernels,
                 run: RunState, batch: int, input_grad: bool = False) -> None:
        self.train = graph.train
        self.batch = batch
        self.kernels = kernels
        ops = graph.ops
        n = len(ops)
        last = 2 * n + 1
        mirror = (lambda t: last - t)

        # ----- which values carry a gradient ----------------------------------------
        needs_grad: dict[int, bool] = {x.index: self.train and input_grad}
        for op in ops:
            needs_grad[op.output.index] = self.train and (
                bool(op.params) or any(needs_grad[v.index] for v in op.inputs))

        # ----- data slots ---------------------------------------------------------------
        data: dict[int, Slot] = {}
        touches: dict[int, set[int]] = {}
        for v in graph.values:
            if v.alias_of is not None:
                data[v.index] = data[v.alias_of.index]
            else:
                data[v.index] = Slot(f"act{v.index}", v.spec.nbytes)
                touches[id(data[v.index])] = set()
            t = touches[id(data[v.index])]
            if v.producer is not None:
                t.add(v.producer.tick)
            t.update(c.tick for c in v.consumers)
        touches[id(data[y.index])].add(n)          # the loss reads the output
        pinned = {id(data[x.index]), id(data[y.index])}
        for v in graph.values:
            s = data[v.index]
            if s.intervals:
                continue
            ts = touches[id(s)] or {0}
            if id(s) in pinned:
                s.intervals = [(0, last)]
            elif self.train:
                s.intervals = [(min(ts), mirror(min(ts)))]
            else:
                s.intervals = [(min(ts), max(ts))]

        # ----- gradient slots: shared per value, private per extra consumer ----------------
        grad: dict[int, Slot | None] = {}
        dx_slot: dict[tuple[int, int], Slot] = {}      # (op tick, input position) -> slot
        accum: dict[int, list[tuple[Slot, Slot, tuple]]] = {}  # tick -> [(private, shared, shape)]
        gtouch: dict[int, set[int]] = {}
        for v in graph.values:
            if not needs_grad[v.index]:
                grad[v.index] = None
                continue
            if v.alias_of is not None:
                s = dx_slot[(v.producer.tick, 0)]
            else:
                s = Slot(f"grad{v.index}", v.spec.nbytes)
                gtouch[id(s)] = set()
            grad[v.index] = s
            gtouch[id(s)] |= touches[id(data[v.index])] if v.alias_of is None else set(
                [v.producer.tick] + [c.tick for c in v.consumers])
            if v is y:
                gtouch[id(s)].add(n)
            for i, c in enumerate(v.consumers):
                pos = c.inputs.index(v)
                if i == len(v.consumers) - 1:
                    dx_slot[(c.tick, pos)] = s
                else:
                    p = Slot(f"grad{v.index}@{c.tick}", v.spec.nbytes)
                    gtouch[id(p)] = {c.tick}
                    dx_slot[(c.tick, pos)] = p
                    accum.setdefault(c.tick, []).append((p, s, v.shape))
        grad_slots = {id(s): s for s in list(grad.values()) + list(dx_slot.values()) if s}
        for s in grad_slots.values():
            ts = gtouch[id(s)]
            s.intervals = [(mirror(max(ts)), mirror(min(ts)))]

        # ----- declared buffers ----------------------------------------------------------
        buf_slots: list[tuple[Op, str, Slot, object]] = []
        for op in ops:
            t = op.tick
            for d in op.buffers:
                s = Slot(f"{op.ctx.path}.{d.attr}", d.spec.nbytes)
                if d.kind == "saved":
                    s.intervals = [(t, mirror(t) if self.train else t)]
                else:
                    s.intervals = [(t, t), (mirror(t), mirror(t))] if self.train else [(t, t)]
                buf_slots.append((op, d.attr, s, d.spec))

        # ----- place and carve -----------------------------------------------------------
        unique: dict[int, Slot] = {id(s): s for s in data.values()}
        unique.update(grad_slots)
        unique.update({id(s): s for _, _, s, _ in buf_slots})
        slots = list(unique.values())
        size = plan_offsets(slots)
        self.arena = Arena(size, f"plan[{batch},{'train' if self.train else 'infer'}]")
        A = self.arena
        self.slots = slots

        def view(slot: Slot, v: Value, prefix: str = "") -> Tensor:
            return A.view(slot.offset, v.shape, v.dtype, f"{prefix}{slot.name}")

        value_t = {v.index: view(data[v.index], v) for v in graph.values}
        grad_t = {v.index: view(grad[v.index], v, "") if grad[v.index] else None
                  for v in graph.values}
        self.x, self.y = value_t[x.index], value_t[y.index]
        self.dy = grad_t[y.index]
        self.dx = grad_t[x.index]
        self.ops = ops

        fwd, bwd = [], []
        for op in ops:
            ctx = op.ctx
            ins = op.inputs
            ctx.k, ctx.run = kernels, run
            ctx.x, ctx.y = value_t[ins[0].index], value_t[op.output.index]
            dxs = [(view(dx_slot[(op.tick, i)], v) if (op.tick, i) in dx_slot else None)
                   for i, v in enumerate(ins)]
            ctx.dx = dxs[0]
            if len(ins) > 1:
                ctx.other, ctx.dother = value_t[ins[1].index], dxs[1]
            for p in op.params:
                setattr(ctx, p.attr, store.tensors[p.name])
                setattr(ctx, "d" + p.attr, store.grad_tensors.get(p.name) if self.train else None)
            fwd.append((op.layer.forward, value_t[ins[0].index], ctx))
            adds = [(A.view(pv.offset, shape, "f32", pv.name), A.view(sv.offset, shape, "f32", sv.name))
                    for pv, sv, shape in accum.get(op.tick, [])]
            if self.train and grad[op.output.index] is not None:
                # an alias (reshape) op has no backward work: dy already is dx
                bwd.append((None if op.alias else op.layer.backward,
                            grad_t[op.output.index], ctx, adds))
        for op, attr, s, spec in buf_slots:
            setattr(op.ctx, attr, A.view(s.offset, spec.shape, spec.dtype, s.name))
        self._fwd = fwd
        self._bwd = bwd[::-1]
        self._add = kernels.add

    # ----------------------------------------------------------------- running
    def forward(self) -> Tensor:
        """Run every layer forward on ``self.x``; the result is ``self.y``."""
        for f, x, ctx in self._fwd:
            f(x, ctx)
        return self.y

    def backward(self) -> None:
        """Run every layer backward from ``self.dy``; parameter grads are *added* into."""
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

