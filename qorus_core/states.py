"""State buffers: non-trainable tensors that outlive one call and are shared by every plan.

BatchNorm's running statistics, KV caches and an RNN's carried state are declared in ``build``
with ``b.state(...)``. The model owns one ``StateStore``; every plan that declares a state of
the same name and shape gets the same memory, so a prefill plan and a decode plan share their
KV cache. A plan that declares another shape for a name replaces the buffer (freshly
initialised): the last partial batch of an RNN gets its own zero state.
"""

from __future__ import annotations

import numpy as np

from .arena import Arena
from .graph import StateDecl
from .tensor import DTYPES, Tensor


class StateStore:
    """Name -> state Tensor, allocated on first use, each in its own aligned arena."""

    def __init__(self, seed: int = 0) -> None:
        self._tensors: dict[str, Tensor] = {}
        self._persistent: dict[str, bool] = {}
        self._arenas: dict[str, Arena] = {}
        self._seed = int(seed)

    def get(self, decl: StateDecl) -> Tensor:
        """The buffer for ``decl``: the existing one if its shape and dtype match (a 0-d
        state is held as shape (1,), as every Tensor is)."""
        t = self._tensors.get(decl.name)
        shape = decl.spec.shape or (1,)
        if t is not None and t.shape == shape and t.dtype == decl.spec.dtype:
            return t
        arena = self._arenas[decl.name] = Arena(max(decl.spec.nbytes, 1), f"state {decl.name}")
        t = arena.view(0, decl.spec.shape, decl.spec.dtype, decl.name)
        if decl.init is None:
            t.a[...] = 0
        else:
            rng = np.random.default_rng(self._seed)
            t.a[...] = np.asarray(decl.init(rng, decl.spec.shape), dtype=DTYPES[decl.spec.dtype])
        self._tensors[decl.name] = t
        self._persistent[decl.name] = decl.persistent
        return t

    def arrays(self, persistent_only: bool = False) -> dict[str, np.ndarray]:
        """Name -> live view of each allocated buffer."""
        return {n: t.a for n, t in self._tensors.items()
                if self._persistent[n] or not persistent_only}

    def nbytes(self) -> int:
        return sum(t.a.nbytes for t in self._tensors.values())
