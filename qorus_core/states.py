"""State buffers: non-trainable tensors that outlive one call (running stats, KV caches).

BatchNorm's running statistics, KV caches and an RNN's carried state are declared in ``build``
with ``b.state(...)``. Two kinds, kept apart:

- **persistent** (``state_dict``, checkpoints): one buffer per name for the whole model, in
  the model's ``StateStore``; every plan, and every sequence, uses it. Its shape must not
  depend on the batch: a plan that declares another shape for it is refused.
- **non-persistent** (KV caches, carried RNN state): one buffer per (name, shape, dtype) and
  per *owner*, the model or a ``Sequence``. Plans of one owner that declare the same name and
  shape share it (a prefill plan and a decode plan share their KV cache); another shape is
  another buffer (the last partial batch of an RNN gets its own zero state), so a buffer is
  never replaced under a plan that holds it. The model keeps its own ones only while a plan
  uses them (weak references: evicted plans free their KV caches); a sequence keeps its own
  for its whole life (they are its state).

Compiling is thread-safe (a lock around allocation); running is not the store's concern.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np

from .arena import Arena
from .errors import ConfigError
from .graph import StateDecl
from .init import initialize
from .tensor import DTYPES, Tensor


class StateStore:
    """State buffers by name (persistent) and by (name, shape, dtype) (the others), each in
    its own aligned arena, allocated on first use and initialised from ``seed``.

    ``shared``: the store that owns the persistent buffers (a sequence's store passes them to
    its model's). ``weak``: keep non-persistent buffers only while something views them.
    """

    def __init__(self, seed: int = 0, shared: StateStore | None = None, weak: bool = False) -> None:
        self._seed = int(seed)
        self._shared = shared
        self._weak = bool(weak)
        self._persistent: dict[str, Tensor] = {}
        self._strong: dict[tuple, Tensor] = {}          # non-persistent, kept (weak=False)
        self._refs: dict[tuple, tuple] = {}             # weak: key -> (ref, name, byte offset)
        self._latest: dict[str, tuple] = {}             # name -> key of its last buffer handed out
        self._lock = threading.Lock()

    def get(self, decl: StateDecl) -> Tensor:
        """The buffer for ``decl`` (a 0-d state is held as shape (1,), as every Tensor is)."""
        if decl.persistent and self._shared is not None:
            return self._shared.get(decl)
        shape = tuple(decl.spec.shape) or (1,)
        with self._lock:
            if decl.persistent:
                return self._get_persistent(decl, shape)
            key = (decl.name, shape, decl.spec.dtype)
            t = self._strong.get(key) if not self._weak else self._revive(key)
            if t is None:
                t = self._allocate(decl)
                if self._weak:
                    raw = _owner(t.a)
                    self._refs[key] = (weakref.ref(raw), decl.name, t.p - raw.ctypes.data)
                else:
                    self._strong[key] = t
            self._latest[decl.name] = key
            return t

    def _get_persistent(self, decl: StateDecl, shape: tuple[int, ...]) -> Tensor:
        t = self._persistent.get(decl.name)
        if t is None:
            t = self._persistent[decl.name] = self._allocate(decl)
        elif t.shape != shape or t.dtype != decl.spec.dtype:
            raise ConfigError(f"persistent state {decl.name!r}: one plan declares {t.dtype} "
                              f"{t.shape}, another {decl.spec.dtype} {shape}; a buffer saved in "
                              "state_dict must not depend on the batch (declare it "
                              "persistent=False if it is per-batch state)")
        return t

    def _allocate(self, decl: StateDecl) -> Tensor:
        arena = Arena(max(decl.spec.nbytes, 1), f"state {decl.name}")
        t = arena.view(0, decl.spec.shape, decl.spec.dtype, decl.name)
        if decl.init is not None:   # else zeros, as Arena memory starts: a KV cache's
            # pages are only touched as positions fill (its RSS grows with the context used)
            initialize(decl.init, np.random.default_rng(self._seed), decl.spec.shape, t.a, decl.name)
        return t

    def _revive(self, key: tuple) -> Tensor | None:
        """A weakly held buffer as a Tensor again, while anything still views its memory."""
        got = self._refs.get(key)
        raw = got[0]() if got is not None else None
        if raw is None:
            self._refs.pop(key, None)
            return None
        _, shape, dtype = key
        dt = DTYPES[dtype]
        n = int(np.prod(shape)) * dt.itemsize
        start = got[2]
        return Tensor(raw[start:start + n].view(dt).reshape(shape), got[1])

    def _persistent_tensors(self) -> dict[str, Tensor]:
        """The persistent buffers: this store's, or those of the store it shares them with."""
        owner = self._shared if self._shared is not None else self
        with owner._lock:
            return dict(owner._persistent)

    def arrays(self, persistent_only: bool = False) -> dict[str, np.ndarray]:
        """Name -> live view of each buffer, the persistent ones included (shared ones too);
        a non-persistent name gives the buffer of the plan compiled last for it (e.g. the
        last batch size)."""
        out = self._persistent_tensors()
        if not persistent_only:
            with self._lock:
                for name, key in list(self._latest.items()):
                    t = self._strong.get(key) if not self._weak else self._revive(key)
                    if t is not None:
                        out[name] = t
        return {n: t.a for n, t in out.items()}

    def nbytes(self) -> int:
        """Bytes this store holds: its persistent buffers (none for a store that shares them),
        and every non-persistent one still alive."""
        with self._lock:
            total = sum(t.a.nbytes for t in self._persistent.values())
            total += sum(t.a.nbytes for t in self._strong.values())
            for key in list(self._refs):
                t = self._revive(key)
                total += 0 if t is None else t.a.nbytes
        return total


def _owner(a: np.ndarray) -> np.ndarray:
    """The array that owns ``a``'s memory (an arena's raw buffer): alive while any view is."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a

