"""Plans never go stale silently (issue 13): making room for gradients or optimizer state after
a plan was compiled (a training plan, ``reserve_optimizer_state``, a ``Trainer`` binding its
optimizer) reallocates the model's one state arena, so the weights move; ``set_kernels``
changes the kernels. A plan held from before then raises ``StalePlanError`` (a ConfigError)
naming the change, instead of computing on a detached copy of the weights, while
``model.plan``, sequences and generators recompile by themselves. A model's ``weight_files``
are checked before every forward (issue 12)."""

from __future__ import annotations

import numpy as np
import pytest

from qorus_core import Model, QorusError, Sequential
from qorus_core.errors import ConfigError, GGUFError
from qorus_core.kernels import c_status
from qorus_core.plan import StalePlanError
from qorus_core.train.losses import MSELoss
from qorus_core.train.optimizers import SGD, AdamW
from qorus_core.train.trainer import Trainer
from qorus_layers_llm import GPT
from qorus_layers_llm.generate import Generator
from qorus_layers_mlp import Linear, ReLU

MOVED = r"parameter arena was reallocated to hold gradients and 2 optimizer buffer\(s\)"


def _mlp(kernels: str, seed: int = 1) -> Model:
    return Model(Sequential([Linear(6, 16), ReLU(), Linear(16, 3)]), (6,), seed=seed, kernels=kernels)


def _data(n: int = 32) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    return rng.standard_normal((n, 6)).astype(np.float32), rng.standard_normal((n, 3)).astype(np.float32)


def _raised(call, match: str | None = None) -> StalePlanError:
    with pytest.raises(StalePlanError, match=match) as info:
        call()
    assert isinstance(info.value, ConfigError) and isinstance(info.value, QorusError)
    return info.value


def test_a_plan_held_across_a_trainer_binding_its_optimizer_raises(kernels):
    m = _mlp(kernels)
    x, y = _data()
    infer = m.plan(8)                           # compiled before grads and optimizer state exist
    infer.x.a[...] = x[:8]
    before = infer.forward().a.copy()
    seq = m.sequence()
    seq_plan = seq.plan(8)
    tr = Trainer(m, MSELoss(), AdamW(lr=1e-2), batch_size=8, epochs=2, progress=False)
    msg = str(_raised(infer.forward, MOVED))
    assert msg.startswith("plan[8,infer]: this plan is stale") and "detached copy" in msg
    _raised(seq_plan.forward, MOVED)
    tr.fit(x, y)
    _raised(infer.forward, MOVED)               # still, after training
    fresh = m.plan(8)
    assert fresh is not infer
    fresh.x.a[...] = x[:8]
    trained = fresh.forward().a.copy()
    assert not np.array_equal(trained, before)
    np.testing.assert_array_equal(trained, m.predict(x[:8]))
    np.testing.assert_array_equal(trained, seq.predict(x[:8]))   # the sequence recompiled


def test_plans_compiled_after_the_optimizer_stay_valid(kernels):
    """No spurious staleness: training, and asking for no more room, moves nothing."""
    m = _mlp(kernels)
    x, y = _data()
    tr = Trainer(m, MSELoss(), SGD(lr=0.1, momentum=0.9), batch_size=8, epochs=1, progress=False)
    infer, train = m.plan(8), m.plan(8, train=True)
    tr.fit(x, y)
    m.reserve_optimizer_state(1)
    m.reserve_optimizer_state(0)
    assert m.plan(8) is infer and m.plan(8, train=True) is train
    infer.x.a[...] = x[:8]
    np.testing.assert_array_equal(infer.forward().a, m.predict(x[:8]))
    train.forward()
    train.backward()


def _manual_steps(m: Model, plan, opt, x: np.ndarray, y: np.ndarray, steps: int = 3) -> None:
    for _ in range(steps):
        plan.x.a[...] = x
        plan.forward()
        plan.dy.a[...] = plan.y.a - y
        m.zero_grad()
        plan.backward()
        opt.step()


def test_a_training_plan_compiled_before_bind_raises_and_a_fresh_one_trains(kernels):
    x, y = _data(8)
    early, late = _mlp(kernels), _mlp(kernels)
    plan = early.plan(8, train=True)            # grads allocated here, optimizer state later
    plan.x.a[...] = x
    plan.forward()
    o1 = AdamW(lr=1e-2).bind(early)
    _raised(plan.forward, MOVED)
    _raised(plan.backward, MOVED)
    assert "plan[8,train]" in str(_raised(plan.backward))
    _manual_steps(early, early.plan(8, train=True), o1, x, y)
    o2 = AdamW(lr=1e-2).bind(late)
    _manual_steps(late, late.plan(8, train=True), o2, x, y)
    np.testing.assert_array_equal(early.params.a, late.params.a)
    assert not np.array_equal(early.params.a, _mlp(kernels).params.a)


def test_reserve_optimizer_state_names_what_it_made_room_for():
    m = _mlp("numpy")
    plan = m.plan(2)
    m.reserve_optimizer_state(0)
    _raised(plan.forward, r"to hold gradients \(a training plan")
    plan = m.plan(2)
    m.reserve_optimizer_state(1)
    _raised(plan.forward, r"to hold gradients and 1 optimizer buffer\(s\) \(")
    m.plan(2).forward()


def _other(kernels: str) -> str:
    """The other kernel set (the same one where the C library is absent)."""
    return "numpy" if kernels == "c" else ("c" if c_status()[0] else "numpy")


def test_set_kernels_makes_a_held_plan_raise_naming_the_change(kernels):
    m = _mlp(kernels)
    x, _ = _data(4)
    train, infer = m.plan(4, train=True), m.plan(4)   # the grads first: nothing moves after
    seq = m.sequence()
    seq_plan = seq.plan(4)
    m.set_kernels(_other(kernels))
    for call in (infer.forward, train.forward, train.backward, seq_plan.forward):
        _raised(call, rf"set_kernels switched the model to the '{_other(kernels)}' kernels")
    assert "plan[4,infer]: this plan is stale" in str(_raised(infer.forward))
    assert "plan[4,train]" in str(_raised(train.backward))
    fresh = m.plan(4)
    assert fresh is not infer and fresh.kernels is m.kernels
    fresh.x.a[...] = x
    np.testing.assert_allclose(fresh.forward().a, _mlp(_other(kernels)).predict(x), rtol=1e-5,
                               atol=1e-6)
    assert seq.plan(4) is not seq_plan and seq.plan(4).kernels is m.kernels
    m.set_kernels(kernels)                      # two changes since: the first is named
    assert "(and 1 later change)" in str(_raised(infer.forward))


def _gpt(kernels: str) -> Model:
    net = GPT(vocab_size=40, d_model=16, n_layers=2, n_heads=2, max_len=24, d_ff=24)
    return Model(net, (1,), "i32", seed=3, kernels=kernels)


def test_a_generator_keeps_going_after_set_kernels_and_after_binding_an_optimizer(kernels):
    """Past the captured decode step (C): the generator recompiles over its own KV cache (the
    moved weights, the new kernels) and gives bit for bit what a generator made after gives."""
    m = _gpt(kernels)
    gen = Generator(m)
    logits = gen.feed([1, 2, 3])
    tokens = [1, 2, 3]
    for _ in range(5):                          # on C the step is captured by now
        tokens.append(int(logits.argmax()))
        logits = gen.step(tokens[-1])
    m.set_kernels(kernels)                      # the same set again: every plan goes stale
    for _ in range(2):
        tokens.append(int(logits.argmax()))
        logits = gen.step(tokens[-1])
    m.reserve_optimizer_state(2)                # the weights move
    for _ in range(4):
        tokens.append(int(logits.argmax()))
        logits = gen.step(tokens[-1])
    ref = Generator(m)
    ref_logits = ref.feed(tokens[:3])
    for t in tokens[3:]:
        ref_logits = ref.step(t)
    np.testing.assert_array_equal(logits, ref_logits)
    assert gen.pos == ref.pos == len(tokens)


class _File:
    """A stand-in mapped file: ``check_unchanged`` raises once ``changed`` is set."""

    def __init__(self) -> None:
        self.changed, self.calls = False, 0

    def check_unchanged(self) -> None:
        self.calls += 1
        if self.changed:
            raise GGUFError("fake.gguf: the file changed while in use: it shrank")


def test_weight_files_are_checked_before_every_forward():
    f = _File()
    m = Model(Linear(6, 3), (6,), weight_files=(f,))
    assert m.weight_files == (f,)
    x, _ = _data(5)
    m.predict(x, batch_size=2)                  # three chunks, three forwards
    assert f.calls == 3
    plan, seq = m.plan(2), m.sequence()
    seq.predict(x[:2])
    f.changed = True
    for call in (lambda: m.predict(x), plan.forward, lambda: seq.predict(x), m.check_weight_files):
        with pytest.raises(GGUFError, match="fake.gguf: the file changed"):
            call()


@pytest.mark.parametrize("bad", [(object(),), ("model.gguf",), "model.gguf", None])
def test_weight_files_must_be_checkable(bad):
    with pytest.raises(ConfigError, match="weight_files must be a tuple|check_unchanged"):
        Model(Linear(6, 3), (6,), weight_files=bad)
