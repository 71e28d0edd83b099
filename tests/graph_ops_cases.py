"""Graph-op cases shared by the op tests: each builds a functional graph from Input nodes and
says what PyTorch computes for it (torch is imported only by the parity test)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from qorus_core import ops

B = 3           # the batch of every case (odd, so rows are not a power of two)


@dataclass
class Case:
    """``inputs``: name -> per-example array maker (rng -> array of shape (B, ...));
    ``build``: Input nodes by name -> the output node; ``torch``: (torch, tensors) -> tensor."""

    name: str
    inputs: dict[str, Callable[[np.random.Generator], np.ndarray]]
    build: Callable[..., object]
    torch: Callable[..., object]
    smooth: bool = True           # no kink near the samples (a smaller finite-difference step)
    fd: bool = True               # the gradient is the derivative (not for stop-gradient)
    dtypes: dict[str, str] = field(default_factory=dict)   # non-f32 inputs (no gradient)


def f(*shape, lo=-1.0, hi=1.0):
    return lambda rng: rng.uniform(lo, hi, (B, *shape)).astype(np.float32)


def ints(hi, *shape):
    return lambda rng: rng.integers(0, hi, (B, *shape)).astype(np.int32)


def _binary(name, fn, tfn, a, b, **kw):
    return Case(name, {"a": a, "b": b}, lambda n: fn(n["a"], n["b"]),
                lambda t, x: tfn(t, x["a"], x["b"]), **kw)


CASES: list[Case] = []
for shapes in [((5, 7), (5, 7)), ((4, 5), (1, 5)), ((4, 1), (1, 6)), ((2, 3, 4), (2, 1, 4)),
               ((1,), (6,)), ((3, 1, 5), (1, 4, 1))]:
    sa, sb = shapes
    tag = f"{sa}x{sb}".replace(" ", "")
    CASES += [
        _binary(f"add{tag}", ops.add, lambda t, a, b: a + b, f(*sa), f(*sb)),
        _binary(f"sub{tag}", ops.sub, lambda t, a, b: a - b, f(*sa), f(*sb)),
        _binary(f"mul{tag}", ops.mul, lambda t, a, b: a * b, f(*sa), f(*sb)),
        _binary(f"div{tag}", ops.div, lambda t, a, b: a / b, f(*sa), f(*sb, lo=0.5, hi=2.0)),
        _binary(f"maximum{tag}", ops.maximum, lambda t, a, b: t.maximum(a, b), f(*sa), f(*sb),
                smooth=False),
        _binary(f"minimum{tag}", ops.minimum, lambda t, a, b: t.minimum(a, b), f(*sa), f(*sb),
                smooth=False),
    ]

CASES += [
    Case("where", {"c": ints(2, 1, 6), "a": f(4, 6), "b": f(4, 1)},
         lambda n: ops.where(n["c"], n["a"], n["b"]),
         lambda t, x: t.where(x["c"] != 0, x["a"], x["b"]), dtypes={"c": "i32"}),
    Case("masked_fill", {"x": f(4, 6), "m": ints(2, 1, 6)},
         lambda n: ops.masked_fill(n["x"], n["m"], -3.5),
         lambda t, x: x["x"].masked_fill(x["m"] != 0, -3.5), dtypes={"m": "bool"}),
    Case("scale", {"x": f(5, 3)}, lambda n: ops.scale(n["x"], -1.7), lambda t, x: -1.7 * x["x"]),
    Case("exp", {"x": f(7)}, lambda n: ops.exp(n["x"]), lambda t, x: t.exp(x["x"])),
    Case("log", {"x": f(7, lo=0.5, hi=3)}, lambda n: ops.log(n["x"]), lambda t, x: t.log(x["x"])),
    Case("sqrt", {"x": f(7, lo=0.5, hi=3)}, lambda n: ops.sqrt(n["x"]), lambda t, x: t.sqrt(x["x"])),
    Case("abs", {"x": f(7)}, lambda n: ops.abs(n["x"]), lambda t, x: t.abs(x["x"]), smooth=False),
    Case("neg", {"x": f(7)}, lambda n: ops.neg(n["x"]), lambda t, x: -x["x"]),
    Case("stop_gradient", {"x": f(6)}, lambda n: ops.mul(n["x"], ops.stop_gradient(n["x"])),
         lambda t, x: x["x"] * x["x"].detach(), fd=False),
    Case("matmul", {"a": f(3, 4), "b": f(4, 5)}, lambda n: ops.matmul(n["a"], n["b"]),
         lambda t, x: x["a"] @ x["b"]),
    Case("matmul_tb", {"a": f(3, 4), "b": f(5, 4)},
         lambda n: ops.matmul(n["a"], n["b"], transpose_b=True),
         lambda t, x: x["a"] @ x["b"].transpose(-1, -2)),
    Case("matmul_ta", {"a": f(4, 3), "b": f(4, 5)},
         lambda n: ops.matmul(n["a"], n["b"], transpose_a=True),
         lambda t, x: x["a"].transpose(-1, -2) @ x["b"]),
    Case("matmul_tatb_4d", {"a": f(2, 4, 3), "b": f(2, 5, 4)},
         lambda n: ops.matmul(n["a"], n["b"], True, True),
         lambda t, x: x["a"].transpose(-1, -2) @ x["b"].transpose(-1, -2)),
    Case("concat_last", {"a": f(2, 3), "b": f(2, 5), "c": f(2, 1)},
         lambda n: ops.concat([n["a"], n["b"], n["c"]], axis=-1),
         lambda t, x: t.cat([x["a"], x["b"], x["c"]], dim=-1)),
    Case("concat_mid", {"a": f(2, 3), "b": f(4, 3)}, lambda n: ops.concat([n["a"], n["b"]], axis=1),
         lambda t, x: t.cat([x["a"], x["b"]], dim=1)),
    Case("stack_mid", {"a": f(2, 3), "b": f(2, 3)}, lambda n: ops.stack([n["a"], n["b"]], axis=1),
         lambda t, x: t.stack([x["a"], x["b"]], dim=1)),
    Case("stack_last", {"a": f(2, 3), "b": f(2, 3), "c": f(2, 3)},
         lambda n: ops.stack([n["a"], n["b"], n["c"]], axis=-1),
         lambda t, x: t.stack([x["a"], x["b"], x["c"]], dim=-1)),
    Case("split", {"x": f(4, 9)},
         lambda n: ops.concat(list(reversed(ops.split(n["x"], [2, 3, 4], axis=2))), axis=2),
         lambda t, x: t.cat(list(reversed(t.split(x["x"], [2, 3, 4], dim=2))), dim=2)),
    Case("chunk_unused", {"x": f(6, 2)}, lambda n: ops.chunk(n["x"], 3, axis=1)[1],
         lambda t, x: t.chunk(x["x"], 3, dim=1)[1]),
    Case("slice_step", {"x": f(9, 4)}, lambda n: ops.slice(n["x"], 1, -8, None, 3),
         lambda t, x: x["x"][:, -8::3]),
    Case("narrow", {"x": f(4, 9)}, lambda n: ops.narrow(n["x"], -1, 2, 5),
         lambda t, x: x["x"].narrow(-1, 2, 5)),
    Case("reshape", {"x": f(4, 6)},
         lambda n: ops.mul(ops.reshape(n["x"], [3, -1]), ops.reshape(n["x"], [3, 8])),
         lambda t, x: x["x"].reshape(B, 3, 8) ** 2),
    Case("permute", {"x": f(2, 3, 4)}, lambda n: ops.permute(n["x"], [0, 3, 1, 2]),
         lambda t, x: x["x"].permute(0, 3, 1, 2)),
    Case("transpose", {"x": f(2, 3, 4)}, lambda n: ops.transpose(n["x"], 1, -1),
         lambda t, x: x["x"].transpose(1, -1)),
    Case("squeeze_unsqueeze", {"x": f(4, 1, 3)},
         lambda n: ops.unsqueeze(ops.squeeze(n["x"], 2), 1),
         lambda t, x: x["x"].squeeze(2).unsqueeze(1)),
    Case("sum_all", {"x": f(4, 5)}, lambda n: ops.sum(n["x"]), lambda t, x: x["x"].sum(dim=(1, 2))),
    Case("sum_keep", {"x": f(3, 4, 5)}, lambda n: ops.sum(n["x"], (1, 3), keepdims=True),
         lambda t, x: x["x"].sum(dim=(1, 3), keepdim=True)),
    Case("mean_mid", {"x": f(3, 4, 5)}, lambda n: ops.mean(n["x"], 2),
         lambda t, x: x["x"].mean(dim=2)),
    Case("max_mid", {"x": f(5, 4)}, lambda n: ops.max(n["x"], 1),
         lambda t, x: x["x"].max(dim=1).values, smooth=False),
    Case("max_keep", {"x": f(4, 5)}, lambda n: ops.max(n["x"], -1, keepdims=True),
         lambda t, x: x["x"].max(dim=-1, keepdim=True).values, smooth=False),
    Case("gather", {"x": f(5, 3), "i": ints(5, 7, 3)}, lambda n: ops.gather(n["x"], 1, n["i"]),
         lambda t, x: t.gather(x["x"], 1, x["i"].long()), dtypes={"i": "i32"}),
]
