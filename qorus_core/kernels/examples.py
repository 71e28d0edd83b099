"""Arguments of a kernel built from its declared examples (the kernel table, decl/): what the
derived tests (``tests/test_kernel_table.py``, ``qorus_core.testing.check_kernel`` for a
plugin's kernels) run both kernel sets on.

An example gives each operand a shape, ``(shape, lo, hi)`` (uniform values in [lo, hi)), a
``(qtype, n, k)`` QWeight, a function of an ``np.random.Generator`` or None, and values for
the scalars it sets (the others take the implementation's defaults).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..tensor import Tensor
from .decl.spec import Kernel
from .numpy_qformats import FORMATS, random_blocks
from .numpy_quant import QWeight

__all__ = ["build", "written"]


def _is_shape(v) -> bool:
    return isinstance(v, tuple) and all(isinstance(d, int) for d in v)


def _value(o, v, rng, grow: bool = False):
    """The argument for operand ``o`` from its example value ``v`` (see the table's docs)."""
    if v is None:
        return None
    if o.seq:
        return [_value(dataclasses.replace(o, seq=False), e, rng) for e in v]
    if callable(v):                                               # rng -> a valid input
        return Tensor(np.ascontiguousarray(v(rng)))
    if isinstance(v, tuple) and v and isinstance(v[0], str):     # (qtype, n, k): a QWeight
        qtype, n, k = v
        if o.role != "in":
            return QWeight.empty(qtype, n, k)
        if not FORMATS[qtype].quantizable:                        # random valid blocks
            return QWeight(random_blocks(qtype, n, k, rng), qtype, n, k)
        w = QWeight.empty(qtype, n, k)
        from .numpy import NumpyKernels  # the reference quantizer
        NumpyKernels().quantize(Tensor(rng.standard_normal((n, k)).astype(np.float32)), w, qtype)
        return w
    if _is_shape(v):
        shape, lo, hi = v, None, None
    else:
        shape, lo, hi = v
    if grow:
        shape = tuple(d + 1 for d in shape)
    if o.dtype == "i32":
        return Tensor(rng.integers(lo, hi, shape).astype(np.int32))
    if lo is None:
        a = rng.standard_normal(shape)
    else:
        a = rng.uniform(lo, hi, shape)
    return Tensor(a.astype(np.float32))


def build(k: Kernel, ex: dict, seed: int = 0, grow: str | None = None,
          read_only: str | None = None) -> list:
    """Positional arguments of ``k`` for example ``ex`` (fresh arrays for each call)."""
    rng = np.random.default_rng(seed)
    names = {o.name for o in k.operands}
    defaults = dict(zip(reversed(k.params), reversed(k.numpy.__defaults__ or ())))
    args = []
    for p in k.params:
        if p in names:
            v = _value(k.operand(p), ex.get(p), rng, grow == p)
            if read_only == p:
                a = v.a.copy()
                a.flags.writeable = False
                v = Tensor(a)
            args.append(v)
        elif p in ex:
            args.append(ex[p])
        else:
            args.append(defaults[p])
    return args


def written(k: Kernel, args: list) -> list[tuple[str, np.ndarray]]:
    """(name, array) of every written operand of a call."""
    out = []
    for p, v in zip(k.params, args):
        if p in {o.name for o in k.operands} and k.operand(p).written and v is not None:
            for i, t in enumerate(v if isinstance(v, list) else [v]):
                out.append((f"{p}[{i}]" if isinstance(v, list) else p, t.a))
    return out
