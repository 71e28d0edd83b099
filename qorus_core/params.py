"""The state arena: ``params | grads | optimizer state``, each one contiguous region.

Every parameter is 64-byte aligned inside the params region; grads and each optimizer slot
repeat that layout, so clipping is one norm over ``grads`` and AdamW one kernel call over
``(params, grads, m, v)``. Padding stays zero and is left unchanged by every optimizer.

The arena is one buffer, so making room for grads or optimizer state (a training plan, an
optimizer bound) reallocates it: the weights move, and every plan compiled before holds views
of the old buffer. ``generation`` counts such changes (``invalidate`` adds others, such as
``Model.set_kernels``); a plan compares it with the one it was compiled at on every call (one
int) and raises ``StalePlanError`` naming the change instead of computing on detached weights.

External parameters (a pretrained model's weights where they lie in an mmap'd GGUF file,
possibly quantized) take no room in the arena: they serve inference plans as they are.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .arena import ALIGN, Arena, align_up, check_alloc, human_bytes
from .errors import ConfigError
from .graph import ParamDecl
from .init import initialize
from .tensor import Tensor


class ParamStore:
    """Owns the model's parameters, their gradients and ``slots`` optimizer-state buffers."""

    def __init__(self, decls: list[ParamDecl], seed: int,
                 external: dict[str, Any] | None = None, files: tuple[Any, ...] = ()) -> None:
        """``files``: the mapped files the ``external`` weights lie in (objects with
        ``check_unchanged()``, e.g. ``GGUFFile``); every forward checks them."""
        external = dict(external or {})
        unknown = sorted(set(external) - {d.name for d in decls})
        if unknown:
            raise ConfigError(f"external weights for unknown parameters {unknown[:5]}")
        self.external = external
        self.decls = [d for d in decls if d.name not in external]
        self.offsets: dict[str, int] = {}
        off = 0
        for d in self.decls:
            self.offsets[d.name] = off
            off += align_up(4 * _numel(d.shape), ALIGN)
        self.region_bytes = max(off, ALIGN)
        self.has_grads = False
        self.n_slots = 0
        self.generation = 0                 # bumped whenever compiled plans go stale
        self._changes: list[str] = []       # what each bump changed, for the stale-plan error
        self.files = tuple(files)
        for f in self.files:
            if not callable(getattr(f, "check_unchanged", None)):
                raise ConfigError(f"weight file {f!r}: expected an object with check_unchanged() "
                                  "(e.g. a GGUFFile)")
        self._allocate(False, 0)
        rng = np.random.default_rng(seed)
        for d in self.decls:                # in place, in chunks: no parameter-sized temporary
            initialize(d.init, rng, d.shape, self.tensors[d.name].a, d.name)

    def _check_fits(self, grads: bool, slots: int) -> None:
        """Refuse a parameter arena that cannot fit in memory before any of it is allocated,
        naming the largest parameters (their full names carry the layer path)."""
        copies = 1 + int(grads) + slots
        what = "model parameters" + (", gradients" if grads else "") + (
            f" and {slots} optimizer buffer(s)" if slots else "")
        largest = sorted(self.decls, key=lambda d: -_numel(d.shape))[:3]
        detail = "; largest: " + ", ".join(
            f"{d.name} {tuple(d.shape)} ({human_bytes(4 * _numel(d.shape) * copies)})"
            for d in largest) if largest else ""
        check_alloc(self.region_bytes * copies + ALIGN, what, detail)

    def _allocate(self, grads: bool, slots: int) -> None:
        """(Re)allocate ``params | grads? | slots x state``, keeping the values already there;
        a reallocation makes every plan compiled before stale (``generation``), bumped last,
        once the new tensors are in place: a plan that read the old generation raises, one
        that reads the new one wires the new weights."""
        self._check_fits(grads, slots)
        old = (self.params, self.grads, self.slots) if hasattr(self, "params") else None
        self.arena = Arena(self.region_bytes * (1 + int(grads) + slots), "state")
        n = self.region_bytes // 4

        def region(i: int, name: str) -> Tensor:
            return self.arena.view(i * self.region_bytes, (n,), name=name)

        params = region(0, "params")
        grad_region = region(1, "grads") if grads else None
        slot_regions = [region(1 + int(grads) + i, f"slot{i}") for i in range(slots)]
        if old is not None:
            params.a[...] = old[0].a
            if old[1] is not None and grad_region is not None:
                grad_region.a[...] = old[1].a
            for new, prev in zip(slot_regions, old[2]):
                new.a[...] = prev.a
        self.params, self.grads, self.slots = params, grad_region, slot_regions
        self.tensors = {d.name: self.arena.view(self.offsets[d.name], d.shape, name=d.name)
                        for d in self.decls}
        self.grad_tensors = ({d.name: self.arena.view(self.region_bytes + self.offsets[d.name],
                                                      d.shape, name="d" + d.name)
                              for d in self.decls} if grads else {})
        self.has_grads, self.n_slots = grads, slots
        if old is not None:
            held = " and ".join((["gradients"] if grads else [])
                                + ([f"{slots} optimizer buffer(s)"] if slots else []))
            self.invalidate(f"the model's parameter arena was reallocated to hold {held} (a "
                            "training plan compiled or an optimizer bound after this plan), so "
                            "its weights are a detached copy; bind the optimizer before compiling "
                            "plans you keep")

    def ensure(self, grads: bool, slots: int) -> bool:
        """Grow the arena to hold grads and ``slots`` state buffers; True if it moved."""
        grads = grads or self.has_grads
        slots = max(slots, self.n_slots)
        if grads == self.has_grads and slots == self.n_slots:
            return False
        self._allocate(grads, slots)
        return True

    def invalidate(self, change: str) -> None:
        """Every plan compiled so far is stale; ``change`` says why (their error names it)."""
        self._changes.append(change)
        self.generation += 1

    def change_since(self, generation: int) -> str:
        """What made plans of ``generation`` stale (the first change after it), for errors."""
        later = self._changes[generation:]
        more = len(later) - 1
        return later[0] + (f" (and {more} later change{'s' if more > 1 else ''})" if more > 0 else "")

    def check_files(self) -> None:
        """Raise if a file the external weights lie in changed since it was opened (one
        ``fstat`` each; ``qorus_core.io.mapped``)."""
        for f in self.files:
            f.check_unchanged()

    def weight(self, name: str):
        """The parameter a layer computes with: its arena Tensor, or the external weight."""
        t = self.tensors.get(name)
        return self.external[name] if t is None else t

    def check_same(self, decls: list[ParamDecl]) -> None:
        """A later plan (another batch size) must declare exactly the same parameters."""
        decls = [d for d in decls if d.name not in self.external]
        mine = [(d.name, d.shape) for d in self.decls]
        theirs = [(d.name, d.shape) for d in decls]
        if mine != theirs:
            raise ConfigError(f"parameters differ between plans: {mine} vs {theirs}")

    @property
    def count(self) -> int:
        """Number of scalar parameters (without alignment padding), external ones included."""
        return (sum(_numel(d.shape) for d in self.decls)
                + sum(_numel(tuple(w.shape)) for w in self.external.values()))

    def memory(self) -> dict[str, int]:
        """Bytes of the parameters, their gradients and the optimizer state."""
        return {"params": self.region_bytes,
                "grads": self.region_bytes if self.has_grads else 0,
                "optimizer_state": self.region_bytes * self.n_slots}

    def grad(self, name: str) -> Tensor:
        """The gradient view of parameter ``name``."""
        return self.grad_tensors[name]


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
