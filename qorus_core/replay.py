"""Captured plans: an inference plan's kernel calls recorded, then run from C in one call.

A plan calls the same C kernels on the same planned memory at every forward; in a decode step
only a few integers move with the sequence position (the KV-cache row written, the RoPE
position, the number of cached keys), and each by the same amount per position. So:

1. ``record(plan)`` runs one forward normally, through a copy of the C kernel set whose bound
   C functions note each call (name and arguments) before making it;
2. ``Replay.derive`` takes the tapes of forwards at consecutive positions: the same kernels in
   the same order, float arguments equal, each integer argument ``base + per_pos * pos``
   (checked on a third tape: a prediction that misses means the plan is not replayable);
3. ``Replay.run(pos)`` makes every call from C (``qr_replay_run``): no Python between kernels.

Only plans whose layers all say ``replayable`` (their inference forward does nothing but
kernel calls through ``ctx.k``) and whose kernels all ran in C can be captured; anything else
raises ``ReplayError`` and the caller keeps the normal forward. The pointers recorded are the
plan's, its state buffers' (a sequence's KV caches) and its model's weights: the caller keeps
the plan (which holds them) alive, and a replay serves that plan only (each ``Generator``
captures its own).
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from copy import copy

from .errors import QorusError

_CALL_ARGS = 14
_INT_TYPES = (ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_uint32, ctypes.c_uint)
_FLOAT_TYPES = (ctypes.c_float, ctypes.c_double)


class ReplayError(QorusError):
    """A plan that cannot be captured (a layer or kernel that replay cannot reproduce)."""


class QrCall(ctypes.Structure):
    """``qr_call`` of qorus.h: one recorded kernel call."""

    _fields_ = [("op", ctypes.c_int32), ("nargs", ctypes.c_int32),
                ("base", ctypes.c_int64 * _CALL_ARGS), ("per_pos", ctypes.c_int64 * _CALL_ARGS),
                ("f", ctypes.c_double * 2)]


class _Recorder:
    """Stands in for one bound C function while a forward is recorded: notes, then calls."""

    __slots__ = ("fn", "tape")

    def __init__(self, fn, tape: list) -> None:
        self.fn, self.tape = fn, tape

    def __call__(self, *args):
        self.tape.append((self.fn.__name__, self.fn.argtypes, args))
        return self.fn(*args)


class _NoFallback:
    """The recording set's NumPy fallback: a kernel that would run in NumPy cannot be replayed."""

    def __getattr__(self, name: str):
        raise ReplayError(f"kernel {name} runs on the NumPy fallback here, so it cannot be replayed")


def _recording(kernels, tape: list):
    """A shallow copy of the C kernel set with every bound C function (attribute or dict
    value) wrapped by a _Recorder, and no NumPy fallback."""
    cfunc = ctypes._CFuncPtr                                # the type of every bound C function
    rec = copy(kernels)
    rec.fallback = _NoFallback()
    for name, value in vars(kernels).items():
        if isinstance(value, cfunc):
            setattr(rec, name, _Recorder(value, tape))
        elif isinstance(value, dict) and any(isinstance(v, cfunc) for v in value.values()):
            setattr(rec, name, {k: _Recorder(v, tape) if isinstance(v, cfunc) else v
                                for k, v in value.items()})
    return rec


def record(plan) -> list:
    """Run ``plan.forward()`` once, normally, and return its C calls [(name, argtypes, args)].
    ReplayError when a layer is not replayable, the kernel set is not the C one, or a kernel
    would run on the NumPy fallback (the forward is then left unfinished: run it again)."""
    kernels = plan.kernels
    if getattr(kernels, "name", "") != "c" or not hasattr(kernels, "_lib"):
        raise ReplayError(f"only plans on the C kernels can be captured, not {kernels!r}")
    bad = sorted({type(op.layer).__name__ for op in plan.ops
                  if not getattr(op.layer, "replayable", False)})
    if bad:
        raise ReplayError(f"layers {', '.join(bad)} are not replayable")
    tape: list = []
    rec = _recording(kernels, tape)
    ctxs = [op.ctx for op in plan.ops]
    try:
        for ctx in ctxs:
            ctx.k = rec
        plan.forward()
    finally:
        for ctx in ctxs:
            ctx.k = kernels
    return tape


def _split(name: str, argtypes, args) -> tuple[list[int], list[float]]:
    ints, floats = [], []
    for t, a in zip(argtypes, args):
        if t in _INT_TYPES:
            ints.append(0 if a is None else int(a))
        elif t in _FLOAT_TYPES:
            floats.append(float(a))
        else:
            raise ReplayError(f"{name}: argument type {t.__name__} cannot be replayed")
    if len(ints) > _CALL_ARGS or len(floats) > 2:
        raise ReplayError(f"{name}: too many arguments to replay")
    return ints, floats


class Replay:
    """Recorded kernel calls, each integer argument affine in the position; ``run(pos)``."""

    def __init__(self, run, calls: ctypes.Array, positions: int | None) -> None:
        self._run, self._calls, self.n = run, calls, len(calls)
        self._addr = ctypes.addressof(calls)       # the array stays alive with self._calls
        self.positions = positions

    @classmethod
    def derive(cls, kernels, tapes: Sequence[tuple[int, list]],
               positions: int | None = None) -> Replay:
        """From tapes of forwards at consecutive positions [(pos, tape), ...] (two or more:
        the first two give each argument's base and per-position change, the others check
        the prediction). ``positions``: run accepts only 0 <= pos < positions (a KV cache's
        length: a position past it would write past the cache)."""
        if len(tapes) < 2 or tapes[1][0] != tapes[0][0] + 1:
            raise ReplayError("derive needs tapes at two consecutive positions first")
        fns = getattr(kernels, "_replay", {})
        if len(fns) < 2:
            raise ReplayError("this C library predates replay.c: rebuild it")
        op_of = fns["qr_replay_op"]
        (p0, t0), (_, t1) = tapes[0], tapes[1]
        if len(t0) != len(t1) or any(a[0] != b[0] for a, b in zip(t0, t1)):
            raise ReplayError("the kernels called differ from one position to the next")
        calls = (QrCall * len(t0))()
        for c, (name, types, args0), (_, _, args1) in zip(calls, t0, t1):
            op = op_of(name.encode())
            if op < 0:
                raise ReplayError(f"kernel {name} cannot be replayed")
            i0, f0 = _split(name, types, args0)
            i1, f1 = _split(name, types, args1)
            if f0 != f1:
                raise ReplayError(f"{name}: a float argument changes with the position")
            c.op, c.nargs = op, len(i0)
            for j, (a, b) in enumerate(zip(i0, i1)):
                c.per_pos[j] = b - a
                c.base[j] = a - (b - a) * p0
            c.f[:len(f0)] = f0
        replay = cls(fns["qr_replay_run"], calls, positions)
        for pos, tape in tapes[2:]:
            replay.check(pos, tape)
        return replay

    def check(self, pos: int, tape: list) -> None:
        """ReplayError unless ``tape`` (a forward recorded at ``pos``) is what replay makes."""
        if len(tape) != self.n:
            raise ReplayError(f"at position {pos} the plan made {len(tape)} calls, not {self.n}")
        for c, (name, types, args) in zip(self._calls, tape):
            ints, floats = _split(name, types, args)
            want = [c.base[j] + c.per_pos[j] * pos for j in range(c.nargs)]
            if ints != want or floats != list(c.f[:len(floats)]):
                raise ReplayError(f"{name}: its arguments at position {pos} are not linear in "
                                  "the position")

    def run(self, pos: int) -> None:
        """Make every recorded call at sequence position ``pos``."""
        if pos < 0 or (self.positions is not None and pos >= self.positions):
            raise ReplayError(f"position {pos} is outside [0, {self.positions})")
        rc = self._run(self._addr, self.n, int(pos))
        if rc:
            raise ReplayError(f"a replayed kernel returned {rc} at position {pos}")
