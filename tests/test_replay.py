"""Captured plans (qorus_core.replay): recorded kernel calls replayed from C equal the plan's
own forward bit for bit; what cannot be replayed is refused with a ReplayError."""

from __future__ import annotations

import numpy as np
import pytest

from qorus_core import Layer, Model, Sequential
from qorus_core.errors import QorusError
from qorus_core.replay import Replay, ReplayError, record
from qorus_core.tensor import Tensor
from qorus_layers_llm import GPT
from qorus_layers_mlp import GELU, LayerNorm, Linear, ReLU


def _mlp_plan(kernels="c"):
    m = Model(Sequential([Linear(12, 32), LayerNorm(), GELU(), Linear(None, 24), ReLU(),
                          Linear(None, 5)]), (12,), kernels=kernels)
    return m.plan(3)


def test_a_captured_mlp_plan_replays_its_forward(ck):
    """No position dependence: every argument's per-position change is 0."""
    plan = _mlp_plan()
    plan.x.a[...] = np.random.default_rng(0).standard_normal(plan.x.shape)
    tapes = [(p, record(plan)) for p in (0, 1, 2)]
    want = plan.y.a.copy()
    names = [name for name, _, _ in tapes[0][1]]
    assert names.count("qr_gemm_f32") == 3 and "qr_layernorm_f32" in names
    replay = Replay.derive(ck, tapes)
    plan.y.a[...] = np.nan
    replay.run(7)
    np.testing.assert_array_equal(plan.y.a, want)
    plan.x.a[...] = 1.5                       # new input in place: replay reads it
    replay.run(0)
    got = plan.y.a.copy()
    plan.forward()
    np.testing.assert_array_equal(got, plan.y.a)


def test_gpt_decode_replay_follows_the_position(ck):
    """A GPT-2 style decode step (learned positions, KV cache, tied head): replayed steps
    give the logits the plan gives, position after position."""
    net = GPT(vocab_size=40, d_model=16, n_layers=2, n_heads=2, max_len=12, d_ff=24)
    runs = []
    for replayed in (False, True):
        m = Model(net, (1,), "i32", kernels="c", seed=3)
        plan, prompt = m.plan(1, shape=(1,)), m.plan(1, shape=(4,))
        prompt.x.a[...] = [[3, 9, 27, 1]]
        m.run.pos = 0
        prompt.forward()
        out, tapes, replay = [], [], None
        for pos, token in zip(range(4, 12), [5, 7, 11, 13, 17, 19, 23, 29]):
            plan.x.a[...] = token
            m.run.pos = pos
            if replay is not None:
                replay.run(pos)
            elif replayed:
                tapes.append((pos, record(plan)))
                if len(tapes) == 3:
                    replay = Replay.derive(m.kernels, tapes, positions=12)
            else:
                plan.forward()
            out.append(plan.y.a.copy())
        assert (replay is not None) == replayed
        if replay is not None:                # past the KV cache: refused, nothing written
            with pytest.raises(ReplayError, match="outside"):
                replay.run(12)
        runs.append(np.array(out))
    np.testing.assert_array_equal(runs[0], runs[1])


class _NumpyWrite(Layer):
    """Writes with NumPy in forward: not replayable (the default)."""

    def build(self, x, b):
        return x

    def forward(self, x, ctx):
        ctx.y.a[...] = x.a * 2
        return ctx.y


def test_what_cannot_be_replayed_is_refused(ck):
    m = Model(Sequential([Linear(4, 4), _NumpyWrite()]), (4,), kernels="c")
    with pytest.raises(ReplayError, match="_NumpyWrite"):
        record(m.plan(2))
    with pytest.raises(ReplayError, match="C kernels"):
        record(_mlp_plan("numpy"))
    plan = _mlp_plan()
    tape = record(plan)
    with pytest.raises(ReplayError, match="consecutive"):
        Replay.derive(ck, [(0, tape), (2, tape)])
    moved = [(n, t, tuple(a + 4 if i == 0 and a else a for i, a in enumerate(args)))
             for n, t, args in tape]                         # every first pointer moves
    bent = [(n, t, tuple(a + 12 if i == 0 and a else a for i, a in enumerate(args)))
            for n, t, args in tape]                          # ... but not linearly
    with pytest.raises(ReplayError, match="not linear"):
        Replay.derive(ck, [(0, tape), (1, moved), (2, bent)])
    with pytest.raises(ReplayError, match="differ"):
        Replay.derive(ck, [(0, tape), (1, tape[:-1])])
    assert issubclass(ReplayError, QorusError)


def test_a_kernel_on_the_numpy_fallback_is_refused(ck):
    """A kernel the C set hands to NumPy would be skipped by a replay: recording refuses it."""
    m = Model(Sequential([Linear(4, 4)]), (4,), kernels="c")
    plan = m.plan(2)
    w = plan.ops[0].ctx.weight
    plan.ops[0].ctx.weight = Tensor(w.a.astype(np.int32))   # int32: the C gemm declines
    with pytest.raises(ReplayError, match="NumPy fallback"):
        record(plan)


def test_the_c_runner_checks_its_calls(ck):
    plan = _mlp_plan()
    replay = Replay.derive(ck, [(0, record(plan)), (1, record(plan))])
    replay._calls[0].op = 999
    with pytest.raises(ReplayError, match="returned -1"):
        replay.run(0)
    assert ck._replay["qr_replay_op"](b"qr_sumsq_f32") == -1    # not replayable by design
