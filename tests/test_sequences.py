"""Several sequences on one loaded model (issue 12): each Generator, Conversation or
``model.sequence()`` owns its KV caches, position, plans and captured decode step, so
sequences stepped in any order, or from several threads, each give exactly (bit for bit)
what they give alone; the model's own state buffers are never replaced under a plan."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from smollm2 import SMOL, needs_smollm2
from tiny_llama import write_tiny_llama

from qorus_core import Layer, Model
from qorus_core.errors import ConfigError, ShapeError
from qorus_core.testing import trace_allocations
from qorus_layers_llm import GPT
from qorus_layers_llm.chat import Conversation
from qorus_layers_llm.generate import Generator
from qorus_layers_llm.llama import load_llama

PROMPTS = ["the tin man and the ant", "an ant", "hello there, the"]


@pytest.fixture(scope="module")
def tiny_q8(tmp_path_factory):
    return write_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny_q8.gguf", "q8_0", tied=False)


@pytest.fixture(scope="module")
def smol():
    return load_llama(SMOL, kernels="c", context=256)


def _greedy(gen: Generator, ids: list[int], n: int) -> tuple[list[int], np.ndarray]:
    """``n`` greedy tokens after ``ids`` and every step's logits (run alone)."""
    logits, out, steps = gen.feed(ids), [], []
    for _ in range(n):
        out.append(int(logits.argmax()))
        logits = gen.step(out[-1])
        steps.append(logits.copy())
    return out, np.array(steps)


def _interleaved(gens: list[Generator], prompts: list[list[int]], n: int):
    """The same as ``_greedy`` for every generator, one step of each in turn."""
    logits = [g.feed(p) for g, p in zip(gens, prompts)]
    outs, steps = [[] for _ in gens], [[] for _ in gens]
    for _ in range(n):
        for i, g in enumerate(gens):
            outs[i].append(int(logits[i].argmax()))
            logits[i] = g.step(outs[i][-1])
            steps[i].append(logits[i].copy())
    return outs, [np.array(s) for s in steps]


def test_two_generators_stepping_alternately_equal_each_alone(tiny_q8, kernels):
    llm = load_llama(tiny_q8, kernels=kernels)
    prompts = [llm.tokenizer.encode(p) for p in PROMPTS]
    alone = [_greedy(Generator(llm.model), p, 12) for p in prompts]
    gens = [Generator(llm.model) for _ in prompts]
    outs, steps = _interleaved(gens, prompts, 12)
    for (want_ids, want_logits), got_ids, got_logits in zip(alone, outs, steps):
        assert got_ids == want_ids
        np.testing.assert_array_equal(got_logits, want_logits)
    if kernels == "c":                       # each captured its own decode step
        assert all(g.replay is not None for g in gens), [g.replay_error for g in gens]
        assert len({id(g.replay) for g in gens}) == len(gens)
    caches = [g._chunks[1][0].arena.buf.ctypes.data for g in gens]
    assert len(set(caches)) == len(gens)     # activation arenas are per generator too
    weights = {id(g.seq.model.store) for g in gens}
    assert weights == {id(llm.model.store)}  # ... the weights are the model's, shared


def test_a_generator_reset_and_reused_between_others(tiny_q8, ck):
    """A sequence restarted (reset) while another one runs gives its alone result again."""
    llm = load_llama(tiny_q8, kernels="c")
    a_ids, b_ids = (llm.tokenizer.encode(p) for p in PROMPTS[:2])
    want = _greedy(Generator(llm.model), a_ids, 8)[0]
    a, b = Generator(llm.model), Generator(llm.model)
    _interleaved([a, b], [a_ids, b_ids], 5)
    a.reset()
    assert _interleaved([b, a], [[3], a_ids], 8)[0][1] == want


def test_two_conversations_on_one_model(tmp_path):
    llm = load_llama(write_tiny_llama(tmp_path / "tiny.gguf", "f32"))
    turns = [["the ant", "and the tin man"], ["hello", "an ant the"]]

    def chat(conv: Conversation, user: str) -> str:
        return conv.reply(user, 6, temperature=0)

    alone = []
    for t in turns:
        conv = Conversation(llm)
        alone.append([chat(conv, u) for u in t])
    convs = [Conversation(llm), Conversation(llm)]
    together = [[], []]
    for step in range(2):
        for i, conv in enumerate(convs):
            together[i].append(chat(conv, turns[i][step]))
    assert together == alone
    assert convs[0].gen.seq is not convs[1].gen.seq


def test_predict_with_another_batch_size_between_generation_steps(tiny_q8, kernels):
    llm = load_llama(tiny_q8, kernels=kernels, context=64)
    ids = llm.tokenizer.encode(PROMPTS[0])
    want_ids, want_logits = _greedy(Generator(llm.model), ids, 8)
    gen = Generator(llm.model)
    logits, got = gen.feed(ids), []
    batch = np.random.default_rng(0).integers(0, 200, (3, 64)).astype(np.int32)
    for i in range(8):
        got.append(int(logits.argmax()))
        llm.model.predict(batch[: 1 + i % 3], batch_size=2)     # batches of 1 and 2 rows
        logits = gen.step(got[-1])
    assert got == want_ids
    np.testing.assert_array_equal(logits, want_logits[-1])


def _kv(plan) -> int:
    """The address of the first attention layer's KV cache in ``plan``."""
    return next(op.ctx.k_cache.p for op in plan.ops if hasattr(op.ctx, "k_cache"))


def test_the_models_own_cache_is_never_replaced_under_its_plans():
    """model.plan() plans of one batch size share their KV cache; a plan of another batch
    size gets its own instead of replacing it (decoding by hand through the model's plans,
    as tests/test_replay.py does, with a predict of another batch in between)."""
    net = GPT(vocab_size=40, d_model=16, n_layers=2, n_heads=2, max_len=12, d_ff=24)
    tokens = [5, 7, 11, 13, 17, 19]
    runs = []
    for interrupt in (False, True):
        m = Model(net, (1,), "i32", seed=3)
        step, prompt = m.plan(1, shape=(1,)), m.plan(1, shape=(4,))
        assert _kv(step) == _kv(prompt)
        prompt.x.a[...] = [[3, 9, 27, 1]]
        m.run.pos = 0
        prompt.forward()
        out = []
        for pos, token in zip(range(4, 10), tokens):
            if interrupt:
                m.predict(np.full((3, 1), 2, np.int32))      # batch 3: another cache
                m.run.pos = pos
            step.x.a[...] = token
            m.run.pos = pos
            out.append(step.forward().a.copy())
        assert _kv(m.plan(3)) != _kv(step)
        assert _kv(m.plan(1, shape=(2,))) == _kv(step)      # batch 1 still shares it
        runs.append(np.array(out))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_a_generator_follows_weights_that_moved(kernels):
    """Growing the parameter arena for training moves the weights: a generator made before
    recompiles over its own KV cache instead of reading the old memory."""
    net = GPT(vocab_size=40, d_model=16, n_layers=2, n_heads=2, max_len=12, d_ff=24)
    m = Model(net, (1,), "i32", seed=3, kernels=kernels)
    old = Generator(m)
    old.feed([1, 2, 3])
    m.reserve_optimizer_state(2)                # the arena moves
    for w in m.parameters().values():
        w *= 0.5                                # new values, in the new arena
    assert old.step(4) is not None              # continues the same sequence
    old.reset()                                 # the plans it compiled first, re-run
    new = Generator(m)
    np.testing.assert_array_equal(old.feed([1, 2, 3]), new.feed([1, 2, 3]))
    np.testing.assert_array_equal(old.step(4), new.step(4))


def test_token_ids_are_refused_not_truncated(tiny_q8):
    llm = load_llama(tiny_q8)
    gen = Generator(llm.model)
    for bad in ([1.7], [True], [np.float32(3)], "ab", [None]):
        with pytest.raises(ConfigError, match="not an integer"):
            gen.feed(bad)
    assert gen.pos == 0
    gen.feed(np.array([3, 4], np.int64))       # NumPy integers are ids
    for bad in (1.7, 2.0, False, np.bool_(True), "3"):
        with pytest.raises(ConfigError, match="not an integer"):
            gen.step(bad)
    with pytest.raises(ShapeError, match="outside the vocabulary"):
        gen.step(-1)
    assert gen.pos == 2
    gen.step(np.int32(5))
    with pytest.raises(ConfigError, match="max_new_tokens"):
        from qorus_layers_llm.generate import generate

        generate(llm.model, [3], 2.5)


@pytest.mark.parametrize("replay", [False, True])
def test_alternating_decode_steps_allocate_nothing(tiny_q8, replay):
    llm = load_llama(tiny_q8, kernels="c")
    gens = [Generator(llm.model, replay=replay) for _ in range(2)]
    state = [g.feed(llm.tokenizer.encode(p)) for g, p in zip(gens, PROMPTS)]

    def both():
        for i, g in enumerate(gens):
            state[i] = g.step(int(state[i].argmax()))

    for _ in range(4):                          # compiles; three steps recorded
        both()
    assert all((g.replay is not None) == replay for g in gens), [g.replay_error for g in gens]
    trace = trace_allocations(both, repeat=10)
    assert trace.array_bytes == 0, trace.where
    assert trace.peak_bytes < 16_000, trace


def test_stateful_rnn_sequences_carry_their_own_state():
    rnn = pytest.importorskip("qorus_layers_rnn")
    m = Model(rnn.LSTM(3, 4, stateful=True), (4, 3), seed=2)
    x = np.random.default_rng(1).standard_normal((4, 2, 4, 3)).astype(np.float32)

    def run(seq, xs):
        return [seq.predict(c) for c in xs]

    alone = [run(m.sequence(), x[:2]), run(m.sequence(), x[2:])]
    a, b = m.sequence(), m.sequence()
    got = [[a.predict(x[0])], [b.predict(x[2])]]
    got[0].append(a.predict(x[1]))
    got[1].append(b.predict(x[3]))
    for want, have in zip(alone, got):
        np.testing.assert_array_equal(np.array(have), np.array(want))
    assert "h0" not in m.buffers()              # the model's own state was never touched


class PerBatchPersistent(Layer):
    """A persistent (state_dict) buffer whose shape follows the batch: cannot be saved."""

    def build(self, x, b):
        b.state("seen", (x.shape[0],))
        return x

    def forward(self, x, ctx):
        ctx.y.a[...] = x.a
        return ctx.y

    def backward(self, dy, ctx):
        return None


def test_a_persistent_buffer_is_never_replaced_by_another_shape():
    m = Model(PerBatchPersistent(), (2,))
    m.predict(np.zeros((1, 2), np.float32))
    with pytest.raises(ConfigError, match="persistent state 'seen'.*must not depend on the batch"):
        m.predict(np.zeros((3, 2), np.float32))


# ------------------------------------------------------------------------------ SmolLM2
def _chat_ids(llm, question: str) -> list[int]:
    from qorus_layers_llm.chat import chat_text, encode_chat_text

    return encode_chat_text(llm.tokenizer, chat_text(llm.tokenizer, [{"role": "user",
                                                                       "content": question}]))


QUESTIONS = ["What is the capital of France?", "Name a colour.", "Count to five.",
             "What is 2 + 2?"]


@needs_smollm2
def test_smollm2_two_generators_alternately(smol):
    prompts = [_chat_ids(smol, q) for q in QUESTIONS[:2]]
    alone = [_greedy(Generator(smol.model), p, 10) for p in prompts]
    outs, steps = _interleaved([Generator(smol.model) for _ in prompts], prompts, 10)
    for (want_ids, want_logits), got_ids, got_logits in zip(alone, outs, steps):
        assert got_ids == want_ids
        np.testing.assert_array_equal(got_logits, want_logits)


@needs_smollm2
def test_smollm2_four_threads_each_generate_what_they_generate_alone(smol):
    prompts = [_chat_ids(smol, q) for q in QUESTIONS]
    alone = [_greedy(Generator(smol.model), p, 8) for p in prompts]
    got: list = [None] * len(prompts)
    errors: list = []
    start = threading.Barrier(len(prompts))

    def worker(i: int) -> None:
        try:
            gen = Generator(smol.model)
            start.wait()
            got[i] = _greedy(gen, prompts[i], 8)
        except BaseException as exc:          # reported below, with the thread's index
            errors.append((i, exc))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    for i, ((want_ids, want_logits), (got_ids, got_logits)) in enumerate(zip(alone, got)):
        assert got_ids == want_ids, (i, QUESTIONS[i])
        np.testing.assert_array_equal(got_logits, want_logits)
