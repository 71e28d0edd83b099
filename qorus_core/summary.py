"""``Model.summary()``: one row per primitive op (its path, type, output shapes and the
parameters it declares), then the totals and the arena bytes of an inference plan."""

from __future__ import annotations

from typing import Any

from .graph import Graph
from .tensor import Spec


def _count(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def summary_rows(model: Any) -> list[tuple[str, str, str, int]]:
    """(path, layer type, per-example output shapes, parameters first declared there) per op
    of one batch-1 inference trace; a shared layer's later calls declare none."""
    g = Graph(train=False)
    g.trace_many(model.net, [Spec((1,) + s.shape, s.dtype) for s in model.input_specs.values()])
    seen: set[str] = set()
    rows = []
    for op in g.ops:
        n = 0
        for p in op.params:
            name = g.resolve(p.name)
            if name not in seen:
                seen.add(name)
                n += _count(p.shape)
        shapes = ", ".join(str(tuple(v.shape[1:])) for v in op.outputs)
        rows.append((op.ctx.path or "<root>", op.layer.type_name, shapes, n))
    return rows


def summary_text(model: Any, batch_size: int = 1) -> str:
    """The table, the parameter count and the state and activation arena bytes (an inference
    plan of ``batch_size`` rows, compiled and cached)."""
    rows = [("path", "type", "output shape", "params")] + [
        (p, t, s, f"{n:,}") for p, t, s, n in summary_rows(model)]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    line = "  ".join("-" * w for w in widths)
    fmt = [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]:>{widths[3]}}"
           for r in rows]
    mem = model.store.memory()
    plan = model.plan(batch_size).memory()
    ins = ", ".join(f"{k} {s.shape} {s.dtype}" for k, s in model.input_specs.items())
    outs = ", ".join(f"{k} {s.shape}" for k, s in model.output_specs.items())
    return "\n".join([f"inputs: {ins}", fmt[0], line, *fmt[1:], line,
                      f"outputs: {outs}",
                      f"parameters: {model.num_parameters:,} ({mem['params']:,} bytes)",
                      f"activations (batch {batch_size}): {plan['activations']:,} bytes "
                      f"({plan['activations_unplanned']:,} without reuse)"])
