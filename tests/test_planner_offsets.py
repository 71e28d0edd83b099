"""The arena planner's segment-tree search gives exactly the offsets of the one-by-one greedy
search it replaced (fuzz case toml:0:8221: a 256-block GPT's training plan took over 10 s to
place), on real plans and random slot sets, and a long training plan is placed quickly."""

from __future__ import annotations

import random
import time

import pytest

from qorus_core import Model, Residual, Sequential
from qorus_core.arena import Slot, align_up, plan_offsets
from qorus_layers_llm import GPT
from qorus_layers_mlp import GELU, LayerNorm, Linear, ReLU


def reference_offsets(slots: list[Slot]) -> int:
    """The planner as it was: for each slot (largest first), every placed slot that overlaps
    it in time, sorted by offset, and the first gap that fits. Quadratic."""
    placed: list[Slot] = []
    total = 0
    for i in sorted(range(len(slots)), key=lambda i: (-slots[i].nbytes, i)):
        s = slots[i]
        size = align_up(max(s.nbytes, 1))
        busy = sorted((p.offset, p.offset + align_up(max(p.nbytes, 1)))
                      for p in placed if p.overlaps_in_time(s))
        off = 0
        for lo, hi in busy:
            if off + size <= lo:
                break
            off = max(off, hi)
        s.offset = off
        placed.append(s)
        total = max(total, off + size)
    return total


def _copies(slots: list[Slot]) -> list[Slot]:
    return [Slot(s.name, s.nbytes, list(s.intervals)) for s in slots]


def _same_as_reference(slots: list[Slot], total: int) -> None:
    ref = _copies(slots)
    assert reference_offsets(ref) == total
    assert [s.offset for s in ref] == [s.offset for s in slots]


def _mlp():
    return Model(Sequential([Linear(None, 48), Residual(Sequential([LayerNorm(), Linear(None, 48),
                                                                  GELU()])),
                             *[l for _ in range(6) for l in (Linear(None, 32), ReLU())]]), (20,))


def _gpt(positional):
    return Model(GPT(17, 16, 3, 2, 12, positional=positional, norm="rmsnorm" if positional ==
                     "rope" else "layernorm"), (12,), "i32")


def _cnn():
    pytest.importorskip("qorus_layers_cnn")
    from qorus_core import layer_from_dict
    net = layer_from_dict({"type": "Sequential", "config": {"layers": [
        {"type": "cnn.Conv2d", "in_channels": 1, "out_channels": 4, "kernel_size": 3},
        {"type": "cnn.BatchNorm2d", "num_features": 4}, {"type": "mlp.ReLU"},
        {"type": "cnn.MaxPool2d", "kernel_size": 2}, {"type": "mlp.Flatten"},
        {"type": "mlp.Linear", "out_features": 5}]}})
    return Model(net, (1, 10, 10))


@pytest.mark.parametrize("make", [_mlp, lambda: _gpt("learned"), lambda: _gpt("rope"), _cnn],
                         ids=["mlp", "gpt", "llama", "cnn"])
@pytest.mark.parametrize("train", [False, True])
def test_real_plans_get_the_reference_offsets(make, train):
    model = make()
    for batch in (1, 3):
        p = model.plan(batch, train=train)
        _same_as_reference(p.slots, max(s.offset + align_up(max(s.nbytes, 1)) for s in p.slots))
        assert p.arena.nbytes == reference_offsets(_copies(p.slots))


def test_random_slot_sets_get_the_reference_offsets():
    for seed in range(400):
        r = random.Random(seed)
        horizon = r.choice([3, 12, 60, 10 ** 9])              # ticks need not be small
        slots = []
        for i in range(r.randint(0, 40)):
            intervals = []
            for _ in range(r.choice([0, 1, 1, 1, 2, 3])):     # scratch: two intervals
                a = r.randint(-5, horizon)
                intervals.append((a, a + r.choice([0, 0, r.randint(0, horizon)])))
            slots.append(Slot(f"s{i}", r.choice([0, 1, 64, 65, 128, r.randint(1, 5000)]),
                              intervals))
        _same_as_reference(slots, plan_offsets(slots))


def test_a_reversed_interval_is_refused():
    with pytest.raises(ValueError, match="slot s: interval"):
        plan_offsets([Slot("s", 8, [(3, 2)])])


def test_a_long_training_timeline_is_placed_fast():
    """8,000 slots in a training plan's shape (activations nested around the middle of the
    timeline, every one live with every other; gradients and scratch short): the one-by-one
    search took 56 s here, the tree 0.8 s. The time bound is a hang guard with a wide margin
    for a loaded machine, not a speed claim."""
    n, slots = 2000, []
    last = 2 * n + 1
    for t in range(n):
        slots.append(Slot(f"act{t}", 4096 * (1 + t % 3), [(t, last - t)]))
        slots.append(Slot(f"saved{t}", 1024, [(t, last - t)]))
        slots.append(Slot(f"grad{t}", 4096 * (1 + t % 3), [(last - t - 2, last - t)]))
        slots.append(Slot(f"scratch{t}", 2048, [(t, t), (last - t, last - t)]))
    start = time.perf_counter()
    total = plan_offsets(slots)
    took = time.perf_counter() - start
    assert took < 30.0, f"{len(slots)} slots placed in {took:.1f} s"
    assert total >= sum(4096 * (1 + t % 3) + 1024 for t in range(n))   # activations all live
    sample = random.Random(0).sample(slots, 300)
    for i, a in enumerate(sample):                           # and no two live ones collide
        for b in sample[i + 1:]:
            if a.overlaps_in_time(b):
                assert a.offset + a.nbytes <= b.offset or b.offset + b.nbytes <= a.offset
