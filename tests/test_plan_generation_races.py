"""Shared model state under interleavings (the review of Model, Sequence, ParamStore,
StateStore and PlanCache): a plan compiled while the weights move is stale, never wired
half to the old arena and half to the new; plan caches forget stale plans by themselves;
a sequence's buffers include the persistent ones it shares; ``plan`` refuses, never
coerces, its arguments; a forward over arena weights checks no weight file."""

from __future__ import annotations

import numpy as np
import pytest

from qorus_core import Layer, Model, Sequential, Spec
from qorus_core.errors import ConfigError
from qorus_core.init import ones
from qorus_core.plan import StalePlanError
from qorus_layers_mlp import Linear, ReLU


class Carry(Layer):
    """Identity with a non-persistent state (compiled between two Linears' weights) and a
    persistent one."""

    def build(self, x: Spec, b) -> Spec:
        b.state("h", x.shape, persistent=False)
        b.state("scale", (1,), ones())
        return x

    def forward(self, x, ctx):
        ctx.k.copy(x, ctx.y)
        return ctx.y


def _model(kernels: str = "numpy") -> Model:
    return Model(Sequential([Linear(4, 8), Carry(), ReLU(), Linear(8, 3)]), (4,), seed=3,
                 kernels=kernels)


def _x() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)


def _run(plan, x):
    plan.x.a[...] = x
    return plan.forward().a.copy()


def _moved_weights(m: Model) -> None:
    """Change the weights where they lie now (so a plan on a detached copy would differ)."""
    for a in m.parameters().values():
        a *= 2.0


def test_weights_moving_while_a_plan_is_wired_leave_it_stale(kernels):
    """Another thread binds an optimizer while a sequence compiles: here, exactly between the
    first Linear's weights and the second's being wired. The plan read the generation first,
    so it raises instead of computing with one old and one new weight, and the sequence's
    cache compiles it again rather than keep it."""
    m = _model(kernels)
    seq = m.sequence()
    real_get, real_compile = seq.states.get, m.compile_plan
    moved, made = [], []

    def get(decl):
        if not moved:
            moved.append(1)
            m.reserve_optimizer_state(1)       # the arena moves mid-compile
        return real_get(decl)

    def compile_plan(*args):
        made.append(real_compile(*args))
        return made[-1]

    seq.states.get, m.compile_plan = get, compile_plan
    plan = seq.plan(2)
    assert len(made) == 2 and plan is made[1]
    with pytest.raises(StalePlanError, match="parameter arena was reallocated"):
        made[0].forward()
    _moved_weights(m)
    assert seq.plan(2) is plan
    np.testing.assert_array_equal(_run(plan, _x()), m.predict(_x()))


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_plan_compiled_at_the_moment_the_generation_moves_is_right_or_stale(when):
    """A sequence compiling just before, or just after, the reallocation bumps the generation:
    before, its plan is stale (it raises); after, the new weights are already in place, so it
    computes with them (the bump used to come before the new tensors: a plan compiled then
    was called fresh but wired to the old arena)."""
    m = _model()
    seq = m.sequence()
    store = m.store
    real = store.invalidate
    got = []

    def invalidate(change):
        if when == "before":
            got.append(seq.plan(2))
        real(change)
        if when == "after":
            got.append(seq.plan(2))

    store.invalidate = invalidate
    m.reserve_optimizer_state(1)
    store.invalidate = real
    _moved_weights(m)
    if when == "before":
        with pytest.raises(StalePlanError):
            got[0].forward()
    else:
        np.testing.assert_array_equal(_run(got[0], _x()), m.predict(_x()))


def test_plan_caches_drop_stale_plans_by_themselves():
    m = _model()
    seq = m.sequence()
    p, sp = m.plan(2), seq.plan(2)
    version = seq.version
    m.set_kernels("numpy")
    assert len(m._plans) == 0 and seq.version == version        # nothing kept stale ...
    assert m.plan(2) is not p and seq.plan(2) is not sp         # ... and recompiled on demand
    assert seq.version == m.plans_version == version + 1
    t = m.plan(2, train=True)                                   # moves the weights: the
    assert m.plan(2, train=True) is t and list(m._plans) == [(2, True, False, (4,))]  # rest go


def test_a_sequences_buffers_include_the_persistent_ones_it_shares():
    m = _model()
    seq = m.sequence()
    seq.predict(_x())
    bufs = seq.buffers()
    assert set(bufs) == {"1.h", "1.scale"}
    assert np.shares_memory(bufs["1.scale"], m.buffers()["1.scale"])          # shared
    assert not np.shares_memory(bufs["1.h"], m.plan(2) and m.buffers()["1.h"])  # its own
    assert seq.memory_report()["states"] == bufs["1.h"].nbytes               # only its own


@pytest.mark.parametrize("kwargs, match", [
    ({"batch": 2, "shape": 4}, "shape must be a tuple"),
    ({"batch": 2, "shape": (4.0,)}, "shape must be a positive int"),
    ({"batch": 2, "train": "no"}, "train must be true or false"),
    ({"batch": 2, "input_grad": 1}, "input_grad must be true or false"),
    ({"batch": 2.0}, "batch must be a positive int"),
])
def test_plan_arguments_are_refused_not_coerced(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        _model().plan(**kwargs)


def test_a_forward_over_arena_weights_checks_no_file():
    m = _model()
    plan = m.plan(2)

    def no_files():
        raise AssertionError("check_files called for a model without weight files")

    m.store.check_files = no_files
    _run(plan, _x())
