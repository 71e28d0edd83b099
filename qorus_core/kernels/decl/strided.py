"""Broadcasting kernels of the strided family (csrc/strided.c), the data movement behind the
elementwise graph ops: binary ops and ``where`` with their backward (each gradient summed to
its input's shape) and ``sum_to`` (sums over axes, broadcast backward). The copies, indexing
and the batched GEMM of the same family are in strided_index.py.

Broadcasting is NumPy's (shapes right-aligned, a dimension 1 or equal). The check, shared by
both sets, computes the geometry once per shape combination (cached): size-1 dimensions
dropped, adjacent dimensions merged where every operand is contiguous across them, at most
``MAX_DIMS`` left, padded in front with size-1 dimensions; each operand gets its element
strides over them (0 along a dimension it is broadcast on). C takes those packed in one
int64 array (d0..d5, then each operand's strides), made once per geometry and kept alive by
its cache entry, by its address (one pointer argument: a ctypes call pays per argument);
NumPy reshapes its views to the merged shapes (views, no copies).
"""

from __future__ import annotations

import operator
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from ...errors import KernelError
from ...tensor import Tensor
from .spec import EXACT, kernel, sizes_error

FAMILY = "strided"

#: op codes of bcast_binary / bcast_binary_bwd: BINARY_OPS[op] names op
BINARY_OPS = ("add", "sub", "mul", "div", "maximum", "minimum")
ADD, SUB, MUL, DIV, MAXIMUM, MINIMUM = range(6)
#: dimensions the C kernels take, after merging (a call needing more is refused)
MAX_DIMS = 6

_UFUNCS = (np.add, np.subtract, np.multiply, np.divide, np.maximum, np.minimum)


# ----------------------------------------------------------------------------- geometry
def _packed(values: list[int]) -> tuple[np.ndarray, int]:
    """C's geometry: ``values`` as a read-only contiguous int64 array, and its address."""
    arr = np.array(values, dtype=np.int64)
    arr.flags.writeable = False
    return arr, arr.ctypes.data


class Geometry(NamedTuple):
    """The merged geometry of a broadcasting call over a full shape and its inputs."""

    geom: np.ndarray                    # C's: d0..d5, then each input's strides s0..s5
    p: int                              # geom's address (geom lives as long as this entry)
    shape: tuple[int, ...]              # the merged full shape (NumPy's views)
    shapes: tuple[tuple[int, ...], ...]  # each input's merged shape (1 where broadcast)
    axes: tuple[tuple[int, ...], ...]   # each input's broadcast axes (a gradient sums them)


@lru_cache(maxsize=4096)
def geometry(full: tuple[int, ...], ins: tuple[tuple[int, ...], ...],
             exact: bool) -> Geometry | str:
    """The Geometry of inputs of shapes ``ins`` broadcast to ``full`` (``exact``: together
    they broadcast to ``full`` itself, not only into it), or the error's text."""
    n = len(full)
    pads = []
    for s in ins:
        if len(s) > n:
            return f"do not broadcast to {full}: an input has more dimensions"
        pads.append((1,) * (n - len(s)) + tuple(s))
    for k, d in enumerate(full):
        if any(p[k] != d and p[k] != 1 for p in pads):
            return f"do not broadcast to {full}"
        if exact and d != 1 and all(p[k] != d for p in pads):
            return f"broadcast to a shape other than {full}"
    dims: list[int] = []
    pats: list[tuple[bool, ...]] = []
    for k, d in enumerate(full):
        if d == 1:
            continue
        pat = tuple(p[k] != d for p in pads)          # True: that input is broadcast here
        if dims and pats[-1] == pat:
            dims[-1] *= d
        else:
            dims.append(d)
            pats.append(pat)
    if not dims:
        dims, pats = [1], [(False,) * len(ins)]
    if len(dims) > MAX_DIMS:
        return f"need {len(dims)} dimensions after merging, more than {MAX_DIMS}"
    pad = MAX_DIMS - len(dims)
    c = [1] * pad + dims
    shapes, axes = [], []
    for j in range(len(ins)):
        st, acc = [0] * len(dims), 1
        for k in reversed(range(len(dims))):
            if not pats[k][j]:
                st[k], acc = acc, acc * dims[k]
        c += [0] * pad + st
        shapes.append(tuple(1 if pats[k][j] else dims[k] for k in range(len(dims))))
        axes.append(tuple(k for k in range(len(dims)) if pats[k][j]))
    return Geometry(*_packed(c), tuple(dims), tuple(shapes), tuple(axes))


def _f32(kernel: str, **tensors) -> None:
    for name, t in tensors.items():
        if t is not None and t.dtype != "f32":
            raise KernelError(f"{kernel}: {name} {t.shape} is {t.dtype}, expected f32")


def _overlap(s: Tensor, t: Tensor) -> bool:
    return s.p < t.p + 4 * t.size and t.p < s.p + 4 * s.size


def _no_overlap(kernel: str, full: int, outs: dict, ins: dict) -> None:
    """An output may be an input only as the same buffer with the full size (elementwise:
    element i read before element i is written); no other overlap, no two outputs sharing."""
    for oname, o in outs.items():
        if o is None:
            continue
        for iname, t in ins.items():
            if t is not None and _overlap(o, t) and not (o.p == t.p and o.size == t.size == full):
                raise KernelError(f"{kernel}: {oname} {o.shape} overlaps {iname} {t.shape} (an "
                                  f"output may only be an input of the output's full shape)")
    names = [n for n, o in outs.items() if o is not None]
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if _overlap(outs[a], outs[b]):
                raise KernelError(f"{kernel}: {a} {outs[a].shape} and {b} {outs[b].shape} overlap")


def _opcode(kernel: str, op) -> int:
    if op.__class__ is int and 0 <= op < 6:
        return op
    try:
        code = operator.index(op)
    except TypeError:
        code = -1
    if not 0 <= code < 6:
        raise KernelError(f"{kernel}: op {op!r} is not one of 0..5 {BINARY_OPS}")
    return code


def _emit(g: np.ndarray, D: np.ndarray | None, axes: tuple[int, ...]) -> None:
    """D = g summed over ``axes`` (D None: not wanted)."""
    if D is None:
        return
    if axes:
        np.add.reduce(g, axis=axes, keepdims=True, out=D)
    else:
        np.copyto(D, g)


# ----------------------------------------------------------------------------- bcast_binary
def check_bcast_binary(kernel: str, a: Tensor, b: Tensor, out: Tensor,
                       op) -> tuple[int, Geometry]:
    """(op, the Geometry: d0..d5, a's strides, b's strides), or KernelError."""
    opc = _opcode(kernel, op)
    if a.dtype != "f32" or b.dtype != "f32" or out.dtype != "f32":
        _f32(kernel, a=a, b=b, out=out)
    g = geometry(out.shape, (a.shape, b.shape), True)   # its error's keywords: off the fast path
    if g.__class__ is str:
        raise sizes_error(kernel, g, a=a, b=b, out=out)
    if _overlap(out, a) or _overlap(out, b):
        _no_overlap(kernel, out.size, {"out": out}, {"a": a, "b": b})
    return opc, g


# the check's values: the op (or cond's dtype) and the Geometry; C gets its address, read
# from the local `geom`, which keeps the array alive through the call
_GEOM_DIMS = "opc geom"
_TIES = lambda shape: lambda rng: rng.integers(-2, 3, shape).astype(np.float32)  # noqa: E731


@kernel(FAMILY, "a b out:out", check=check_bcast_binary, dims=_GEOM_DIMS,
        c="qr_bcast_binary_f32(a, b, out, opc:int, geom.p:ptr)", tol=EXACT,
        examples=[dict(a=(7, 1, 5), b=(1, 3, 5), out=(7, 3, 5), op=ADD),
                  dict(a=(4, 1), b=(3,), out=(4, 3), op=SUB),
                  dict(a=(2, 3, 4, 5), b=(1,), out=(2, 3, 4, 5), op=MUL),
                  dict(a=(1,), b=((2, 3, 4, 5), 0.5, 2.0), out=(2, 3, 4, 5), op=DIV),
                  dict(a=(6,), b=((5, 6), 0.5, 2.0), out=(5, 6), op=DIV),
                  dict(a=_TIES((7, 1, 5)), b=_TIES((1, 3, 5)), out=(7, 3, 5), op=MAXIMUM),
                  dict(a=(2, 1, 3, 1), b=(1, 4, 1, 5), out=(2, 4, 3, 5), op=MINIMUM),
                  dict(a=(3, 1, 1, 4), b=(3, 2, 5, 4), out=(3, 2, 5, 4), op=SUB),
                  dict(a=(1, 1), b=(1, 1), out=(1, 1), op=MUL),
                  dict(a=(37, 129), b=(37, 129), out=(37, 129), op=MAXIMUM),
                  dict(a=(5, 1, 3, 1, 2, 1), b=(1, 6, 1, 7, 1, 3), out=(5, 6, 3, 7, 2, 3),
                       op=ADD)],
        bad=[(r"bcast_binary: a \(7, 1, 5\), b \(2, 3, 5\), out \(7, 3, 5\) do not broadcast",
              dict(b=(2, 3, 5))),
             (r"a \(1, 5\), b \(1, 5\), out \(7, 3, 5\) broadcast to a shape other than",
              dict(a=(1, 5), b=(1, 5))),
             (r"an input has more dimensions", dict(a=(2, 7, 1, 5))),
             (r"need 7 dimensions after merging, more than 6",
              dict(a=(2, 1, 2, 1, 2, 1, 2), b=(1, 2, 1, 2, 1, 2, 1), out=(2,) * 7)),
             (r"bcast_binary: op 6 is not one of 0..5", dict(op=6))])
def bcast_binary(self, a: Tensor, b: Tensor, out: Tensor, op: int) -> None:
    """out = a OP b with NumPy's broadcasting, op in BINARY_OPS (0 add, 1 sub, 2 mul, 3 div,
    4 maximum, 5 minimum; maximum / minimum as NumPy's: NaN wins, a tie gives b). a and b
    broadcast together to out's shape exactly; out may be a or b (the same buffer) only
    where that input has out's shape."""
    O = out.w
    g = geometry(out.shape, (a.shape, b.shape), True)
    A, B = a.a.reshape(g.shapes[0]), b.a.reshape(g.shapes[1])
    if op == DIV:
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(A, B, out=O.reshape(g.shape))
    else:
        _UFUNCS[op](A, B, out=O.reshape(g.shape))


def check_bcast_binary_bwd(kernel: str, a: Tensor | None, b: Tensor | None, dy: Tensor,
                           da: Tensor | None, db: Tensor | None, op) -> tuple[int, Geometry]:
    """(op, the Geometry: d0..d5, a's (da's) strides, b's (db's) strides), or KernelError."""
    opc = _opcode(kernel, op)
    _f32(kernel, a=a, b=b, dy=dy, da=da, db=db)
    if opc >= MUL and (a is None or b is None):
        raise KernelError(f"{kernel}: op {BINARY_OPS[opc]} needs a and b")
    for x, dx, nx, ndx in ((a, da, "a", "da"), (b, db, "b", "db")):
        if x is not None and dx is not None and x.shape != dx.shape:
            raise sizes_error(kernel, f"do not match: {ndx} must have {nx}'s shape",
                              **{nx: x, ndx: dx})
    sa = (da if da is not None else a if a is not None else dy).shape
    sb = (db if db is not None else b if b is not None else dy).shape
    g = geometry(dy.shape, (sa, sb), False)
    if g.__class__ is str:
        raise sizes_error(kernel, g, a=a, b=b, dy=dy, da=da, db=db)
    _no_overlap(kernel, dy.size, {"da": da, "db": db}, {"a": a, "b": b, "dy": dy})
    return opc, g


_BWD = dict(a=(7, 1, 5), b=(1, 3, 5), dy=(7, 3, 5), da=(7, 1, 5), db=(1, 3, 5))


@kernel(FAMILY, "a:f32? b:f32? dy da:out? db:out?", check=check_bcast_binary_bwd,
        dims=_GEOM_DIMS, c="qr_bcast_binary_bwd_f32(a, b, dy, da, db, opc:int, geom.p:ptr)",
        examples=[{**_BWD, "op": MUL},
                  {**_BWD, "op": ADD, "a": None, "b": None},
                  {**_BWD, "op": SUB, "da": None},
                  dict(a=(1,), b=((4, 6), 0.5, 2.0), dy=(4, 6), da=(1,), db=(4, 6), op=DIV),
                  dict(a=(3, 1, 1, 4), b=((3, 2, 5, 4), 0.5, 2.0), dy=(3, 2, 5, 4),
                       da=(3, 1, 1, 4), db=None, op=DIV),
                  {**_BWD, "a": _TIES((7, 1, 5)), "b": _TIES((1, 3, 5)), "op": MAXIMUM},
                  {**_BWD, "a": _TIES((7, 1, 5)), "b": _TIES((1, 3, 5)), "op": MINIMUM},
                  dict(a=(33, 65), b=(33, 65), dy=(33, 65), da=(33, 65), db=(33, 65),
                       op=MAXIMUM),
                  dict(a=(2, 1, 3, 1), b=(4, 1, 5), dy=(2, 4, 3, 5), da=(2, 1, 3, 1),
                       db=(4, 1, 5), op=MUL)],
        bad=[(r"bcast_binary_bwd: op mul needs a and b", dict(a=None)),
             (r"da \(7, 3, 5\) do not match: da must have a's shape", dict(da=(7, 3, 5))),
             (r"bcast_binary_bwd: b \(1, 3, 5\), dy \(7, 4, 5\), db \(1, 3, 5\) do not "
              r"broadcast to \(7, 4, 5\)", dict(a=None, da=None, dy=(7, 4, 5), op=ADD))])
def bcast_binary_bwd(self, a: Tensor | None, b: Tensor | None, dy: Tensor, da: Tensor | None,
                     db: Tensor | None, op: int) -> None:
    """Gradients of out = a OP b (bcast_binary) from dy (out's shape): da, db (either None:
    not wanted) overwritten with their gradient summed to their own shape. add: dy, dy;
    sub: dy, -dy; mul: dy b, dy a; div: dy / b, -(dy / b * a) / b; maximum: dy where a > b,
    dy / 2 where a == b, else 0 (db the mirror; PyTorch's rule); minimum likewise. a and b
    are read by mul, div, maximum and minimum only (None allowed for add and sub). An
    output may be dy (or a, b) only where it has dy's shape."""
    DA = None if da is None else da.w
    DB = None if db is None else db.w
    sa = (da if da is not None else a if a is not None else dy).shape
    sb = (db if db is not None else b if b is not None else dy).shape
    g = geometry(dy.shape, (sa, sb), False)
    G = dy.a.reshape(g.shape)
    if DA is not None:
        DA = DA.reshape(g.shapes[0])
    if DB is not None:
        DB = DB.reshape(g.shapes[1])
    ga = gb = G
    if op == SUB and DB is not None:
        gb = self.scratch("bb_gb", g.shape)
        np.negative(G, out=gb)
    elif op >= MUL:
        A, B = a.a.reshape(g.shapes[0]), b.a.reshape(g.shapes[1])
        ga, gb = self.scratch("bb_ga", g.shape), self.scratch("bb_gb", g.shape)
        if op == MUL:
            np.multiply(G, B, out=ga)
            np.multiply(G, A, out=gb)
        elif op == DIV:
            with np.errstate(divide="ignore", invalid="ignore"):
                np.divide(G, B, out=ga)
                np.multiply(ga, A, out=gb)
                np.divide(gb, B, out=gb)
            np.negative(gb, out=gb)
        else:
            wins = np.greater if op == MAXIMUM else np.less
            m = self.scratch("bb_m", g.shape, np.bool_)
            half = self.scratch("bb_half", g.shape)
            np.equal(A, B, out=m)
            np.multiply(m, np.float32(0.5), out=half)
            wins(A, B, out=m)
            np.add(half, m, out=ga)
            wins(B, A, out=m)
            np.add(half, m, out=gb)
            np.multiply(G, ga, out=ga)
            np.multiply(G, gb, out=gb)
    _emit(ga, DA, g.axes[0])        # every gradient is computed before either is written
    _emit(gb, DB, g.axes[1])


# ----------------------------------------------------------------------------- sum_to
def check_sum_to(kernel: str, x: Tensor, out: Tensor, alpha, beta) -> Geometry:
    """The Geometry (d0..d5 of x, out's strides over them), or KernelError."""
    if x.dtype != "f32" or out.dtype != "f32":
        _f32(kernel, x=x, out=out)
    g = geometry(x.shape, (out.shape,), False)
    if g.__class__ is str:
        raise sizes_error(kernel, f"do not fit: out must broadcast to x's shape {x.shape}",
                          x=x, out=out)
    if _overlap(x, out):
        raise KernelError(f"{kernel}: x {x.shape} and out {out.shape} overlap")
    return g


@kernel(FAMILY, "x out:inout", check=check_sum_to, dims="geom",
        c="qr_sum_to_f32(x, out, geom.p:ptr, alpha:f32, beta:f32)",
        tol=(1e-5, 1e-5),
        examples=[dict(x=(4, 5, 6), out=(5, 1)), dict(x=(4, 5, 6), out=(1, 5, 1)),
                  dict(x=(4, 5, 6), out=(6,)), dict(x=(4, 5, 6), out=(1,), alpha=0.5),
                  dict(x=(4, 5, 6), out=(4, 1, 6), beta=0.5),
                  dict(x=(4, 5, 6), out=(4, 5, 6), alpha=-2.0, beta=1.0),
                  dict(x=(3, 1, 7, 2, 5), out=(3, 1, 1, 2, 1)),
                  dict(x=(300, 65), out=(65,)),
                  dict(x=(65, 300), out=(65, 1), alpha=0.25, beta=-1.0)],
        bad=[(r"sum_to: x \(4, 5, 6\), out \(4, 1\) do not fit: out must broadcast to x's "
              r"shape", dict(out=(4, 1))),
             (r"do not fit", dict(out=(2, 4, 5, 6)))])
def sum_to(self, x: Tensor, out: Tensor, alpha: float = 1.0, beta: float = 0.0) -> None:
    """out = beta * out + alpha * (x summed over the dimensions out is broadcast on): out's
    shape broadcasts to x's (NumPy's rules, right-aligned; e.g. x (4, 5, 6) to out (5, 1),
    (1, 5, 1), (6,) or (1,)). Sums over axes with keepdims shapes, and the backward of a
    broadcast. beta == 0 never reads out."""
    O = out.w
    g = geometry(x.shape, (out.shape,), False)
    X, O, ax = x.a.reshape(g.shape), O.reshape(g.shapes[0]), g.axes[0]
    if beta == 0.0:
        np.add.reduce(X, axis=ax, keepdims=True, out=O)
        if alpha != 1.0:
            np.multiply(O, np.float32(alpha), out=O)
        return
    t = self.scratch("sum_to", g.shapes[0])
    np.add.reduce(X, axis=ax, keepdims=True, out=t)
    if alpha != 1.0:
        np.multiply(t, np.float32(alpha), out=t)
    if beta != 1.0:
        np.multiply(O, np.float32(beta), out=O)
    np.add(O, t, out=O)


# ----------------------------------------------------------------------------- where
def _cond(kernel: str, cond: Tensor) -> int:
    if cond.dtype not in ("f32", "i32"):
        raise KernelError(f"{kernel}: cond {cond.shape} is {cond.dtype}, expected f32 or i32")
    return 1 if cond.dtype == "i32" else 0


def check_bcast_where(kernel: str, cond: Tensor, a: Tensor, b: Tensor,
                      out: Tensor) -> tuple[int, Geometry]:
    """(cond is i32, the Geometry: d0..d5, cond's, a's and b's strides), or KernelError."""
    ci = _cond(kernel, cond)
    if a.dtype != "f32" or b.dtype != "f32" or out.dtype != "f32":
        _f32(kernel, a=a, b=b, out=out)
    g = geometry(out.shape, (cond.shape, a.shape, b.shape), True)
    if g.__class__ is str:
        raise sizes_error(kernel, g, cond=cond, a=a, b=b, out=out)
    _no_overlap(kernel, out.size, {"out": out}, {"cond": cond, "a": a, "b": b})
    return ci, g


_WHERE_DIMS = "ci geom"
_MASK = lambda shape: lambda rng: (rng.random(shape) < 0.5).astype(np.float32)  # noqa: E731
_IMASK = lambda shape: lambda rng: rng.integers(-1, 2, shape).astype(np.int32)  # noqa: E731


@kernel(FAMILY, "cond:any a b out:out", check=check_bcast_where, dims=_WHERE_DIMS,
        c="qr_bcast_where_f32(cond, a, b, out, ci:int, geom.p:ptr)",
        tol=EXACT,
        examples=[dict(cond=_MASK((7, 1, 5)), a=(1, 3, 5), b=(7, 1, 1), out=(7, 3, 5)),
                  dict(cond=_IMASK((1, 3, 1)), a=(7, 3, 5), b=(1,), out=(7, 3, 5)),
                  dict(cond=_MASK((33, 65)), a=(33, 65), b=(33, 65), out=(33, 65)),
                  dict(cond=_IMASK((4, 1, 6, 1)), a=(1, 5, 1, 3), b=(4, 5, 6, 3),
                       out=(4, 5, 6, 3))],
        bad=[(r"bcast_where: cond \(7, 2, 5\), a \(1, 3, 5\), b \(7, 1, 1\), out \(7, 3, 5\) "
              r"do not broadcast", dict(cond=_MASK((7, 2, 5)))),
             (r"broadcast to a shape other than \(7, 3, 5\)", dict(a=(1, 1, 5)))])
def bcast_where(self, cond: Tensor, a: Tensor, b: Tensor, out: Tensor) -> None:
    """out = a where cond != 0 (a NaN counts as nonzero) else b, with NumPy's broadcasting:
    cond (f32 or i32), a and b broadcast together to out's shape exactly; out may be an
    input (the same buffer) of out's shape."""
    O = out.w
    g = geometry(out.shape, (cond.shape, a.shape, b.shape), True)
    m = self.scratch("bw_m", g.shape, np.bool_)
    nm = self.scratch("bw_n", g.shape, np.bool_)
    np.not_equal(cond.a.reshape(g.shapes[0]), 0, out=m)
    np.logical_not(m, out=nm)
    O = O.reshape(g.shape)
    np.copyto(O, b.a.reshape(g.shapes[2]), where=nm)   # where out is a: its cond lanes stay
    np.copyto(O, a.a.reshape(g.shapes[1]), where=m)


def check_bcast_where_bwd(kernel: str, cond: Tensor, dy: Tensor, da: Tensor | None,
                          db: Tensor | None) -> tuple[int, Geometry]:
    """(cond is i32, the Geometry: d0..d5, cond's, da's and db's strides), or KernelError."""
    ci = _cond(kernel, cond)
    _f32(kernel, dy=dy, da=da, db=db)
    g = geometry(dy.shape, (cond.shape, dy.shape if da is None else da.shape,
                            dy.shape if db is None else db.shape), False)
    if g.__class__ is str:
        raise sizes_error(kernel, g, cond=cond, dy=dy, da=da, db=db)
    _no_overlap(kernel, dy.size, {"da": da, "db": db}, {"cond": cond, "dy": dy})
    return ci, g


@kernel(FAMILY, "cond:any dy da:out? db:out?", check=check_bcast_where_bwd,
        dims=_WHERE_DIMS, c="qr_bcast_where_bwd_f32(cond, dy, da, db, ci:int, geom.p:ptr)",
        examples=[dict(cond=_MASK((7, 1, 5)), dy=(7, 3, 5), da=(1, 3, 5), db=(7, 1, 1)),
                  dict(cond=_IMASK((1, 3, 1)), dy=(7, 3, 5), da=(7, 3, 5), db=None),
                  dict(cond=_MASK((33, 65)), dy=(33, 65), da=None, db=(1,)),
                  dict(cond=_IMASK((4, 1, 6, 1)), dy=(4, 5, 6, 3), da=(5, 1, 3),
                       db=(4, 5, 6, 3))],
        bad=[(r"bcast_where_bwd: cond \(7, 1, 5\), dy \(7, 3, 5\), da \(2, 3, 5\), db "
              r"\(7, 1, 1\) do not broadcast", dict(da=(2, 3, 5)))])
def bcast_where_bwd(self, cond: Tensor, dy: Tensor, da: Tensor | None,
                    db: Tensor | None) -> None:
    """Gradients of bcast_where from dy (out's shape): da = dy where cond != 0 else 0, db =
    dy where cond == 0 else 0 (dy * mask: a NaN dy stays NaN in both), each summed to its
    own shape (da's and db's shapes: a's and b's); either None: not wanted."""
    DA = None if da is None else da.w
    DB = None if db is None else db.w
    g = geometry(dy.shape, (cond.shape, dy.shape if da is None else da.shape,
                            dy.shape if db is None else db.shape), False)
    G = dy.a.reshape(g.shape)
    w = self.scratch("bwb_w", g.shape)
    np.not_equal(cond.a.reshape(g.shapes[0]), 0, out=w, casting="unsafe")
    ga = gb = None
    if DB is not None:
        gb = self.scratch("bwb_gb", g.shape)
        np.subtract(np.float32(1.0), w, out=gb)
        np.multiply(G, gb, out=gb)
    if DA is not None:
        ga = self.scratch("bwb_ga", g.shape)
        np.multiply(G, w, out=ga)
    _emit(ga, None if DA is None else DA.reshape(g.shapes[1]), g.axes[1])
    _emit(gb, None if DB is None else DB.reshape(g.shapes[2]), g.axes[2])
