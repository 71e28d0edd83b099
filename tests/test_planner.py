"""The arena planner: no two live buffers share bytes, and memory is reused by lifetime."""

from __future__ import annotations

import numpy as np
import pytest

from qorus_core import Model, Residual, Sequential
from qorus_core.arena import Slot, plan_offsets
from qorus_layers_mlp import GELU, LayerNorm, Linear, ReLU


def _disjoint(slots):
    for i, a in enumerate(slots):
        for b in slots[i + 1:]:
            if a.overlaps_in_time(b):
                assert a.offset + a.nbytes <= b.offset or b.offset + b.nbytes <= a.offset, (a, b)


def test_random_slots_never_collide():
    rng = np.random.default_rng(0)
    for _ in range(50):
        slots = []
        for i in range(int(rng.integers(1, 30))):
            t0 = int(rng.integers(0, 20))
            slots.append(Slot(f"s{i}", int(rng.integers(1, 5000)),
                              [(t0, t0 + int(rng.integers(0, 6)))]))
        total = plan_offsets(slots)
        _disjoint(slots)
        assert all(s.offset % 64 == 0 and s.offset + s.nbytes <= total for s in slots)


def deep(n=10, width=64):
    return Sequential([l for _ in range(n) for l in (Linear(None, width), ReLU())])


@pytest.mark.parametrize("train", [False, True])
def test_plans_never_collide(train):
    net = Sequential([Linear(None, 16), Residual(Sequential([LayerNorm(), Linear(None, 16),
                                                           GELU()])), deep(3, 16)])
    p = Model(net, (8,)).plan(4, train=train)
    _disjoint(p.slots)


def test_inference_reuses_activation_memory():
    m = Model(deep(), (64,))
    mem = m.plan(32, train=False).memory()
    # 20 activations of 32x64 floats; a chain needs about 3 live at once (+ pinned in/out)
    assert mem["activations"] <= 4 * 32 * 64 * 4 < mem["activations_unplanned"]


def test_training_keeps_activations_but_reuses_gradients():
    m = Model(deep(), (64,))
    mem = m.plan(32, train=True).memory()
    act = 32 * 64 * 4
    assert 21 * act <= mem["activations"] <= 25 * act < mem["activations_unplanned"]


def test_residual_forward_and_gradient_match_numpy():
    m = Model(Residual(Linear(4, 4)), (4,), seed=2)
    w, b = m.parameters()["block.weight"], m.parameters()["block.bias"]
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    p = m.plan(3, train=True, input_grad=True)
    p.x.a[...] = x
    np.testing.assert_allclose(p.forward().a, x + x @ w.T + b, rtol=1e-5, atol=1e-6)
    m.zero_grad()
    dy = np.ones((3, 4), np.float32)
    p.dy.a[...] = dy
    p.backward()
    np.testing.assert_allclose(p.dx.a, dy + dy @ w, rtol=1e-5, atol=1e-6)
