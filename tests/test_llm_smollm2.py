"""The real SmolLM2-135M-Instruct (Q4_1 GGUF): answers, logits against an independent PyTorch
reference, tokenizer against Hugging Face's, allocation-free decoding (tox -e parity)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from smollm2 import SMOL, needs_smollm2

from qorus_core.testing import trace_allocations
from qorus_layers_llm.chat import Conversation, chat_text, encode_chat_text
from qorus_layers_llm.generate import Generator
from qorus_layers_llm.llama import load_llama
from qorus_layers_llm.sampler import Sampler

pytestmark = needs_smollm2

TEXTS = [
    "Hello world", "What is the capital of France?", "  leading spaces and trailing   ",
    "tabs\t\tand\nnewlines\n\n\n\r\n", "unicode: héllo wörld ñ 日本語 😀 👩‍👩‍👧 Ωmega ǅ ﬁ",
    "numbers 1234567 3.14159 ½ Ⅻ ² ١٢٣", "don't you'll we've I'M they'RE", "   \n  \t ",
    "a" * 40, "<|im_start|>user\nhi<|im_end|>\n", "def f(x):\n    return x**2  # square\n",
    "Ünïcödé spaces\u00a0nbsp\u2003em\u3000ideo", "emoji🙂🙃mix", "x" * 3 + "\n" * 3 + "y",
]


@pytest.fixture(scope="module")
def smol():
    return load_llama(SMOL)


def _chat_ids(llm, question: str) -> list[int]:
    text = chat_text(llm.tokenizer, [{"role": "user", "content": question}])
    return encode_chat_text(llm.tokenizer, text)


def test_paris_greedy_through_the_chat_template(smol):
    conv = Conversation(smol)
    answer = conv.reply("What is the capital of France?", 24, temperature=0)
    assert "Paris" in answer, answer


def test_prompt_logits_match_an_independent_pytorch_reference(smol):
    pytest.importorskip("torch")
    pytest.importorskip("gguf")
    from llama_reference import llama_logits

    ids = _chat_ids(smol, "What is the capital of France?")
    ours = Generator(smol.model).feed(ids).copy()
    ref = llama_logits(SMOL, ids)[-1]
    rel = np.abs(ours - ref).max() / np.abs(ref).max()
    assert rel < 1e-3, rel
    assert ours.argmax() == ref.argmax()


def test_tokenizer_matches_hugging_face(smol):
    tk = pytest.importorskip("tokenizers")
    md = smol.gguf.metadata
    tokens = list(md["tokenizer.ggml.tokens"])
    merges = [tuple(m.split(" ", 1)) for m in md["tokenizer.ggml.merges"]]
    hf = tk.Tokenizer(tk.models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    hf.pre_tokenizer = tk.pre_tokenizers.Sequence([
        tk.pre_tokenizers.Digits(individual_digits=True),
        tk.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    specials = [t for t, ty in zip(tokens, md["tokenizer.ggml.token_type"]) if ty == 3]
    hf.add_special_tokens([tk.AddedToken(s, special=True, normalized=False) for s in specials])
    tok = smol.tokenizer
    rng = np.random.default_rng(0)
    words = open(__file__, encoding="utf-8").read().split()
    texts = TEXTS + [" ".join(rng.choice(words, 30)) for _ in range(20)]
    for text in texts:
        assert tok.encode(text) == hf.encode(text).ids, repr(text)
        assert tok.decode(tok.encode(text)) == text


@pytest.mark.parametrize("replay", [False, True])
def test_decode_step_allocates_nothing(smol, replay):
    llm = load_llama(SMOL, kernels="c", context=256)
    gen = Generator(llm.model, replay=replay)
    sampler = Sampler(gen.vocab_size, temperature=0.7, top_k=40, top_p=0.95, seed=0)
    state = {"logits": gen.feed(_chat_ids(llm, "Name a colour."))}

    def step():
        state["logits"] = gen.step(sampler.sample(state["logits"]))

    for _ in range(4):                            # the plan, then three recorded steps
        step()
    assert (gen.replay is not None) == replay, gen.replay_error
    trace = trace_allocations(step, repeat=10)
    assert trace.array_bytes == 0, trace.where
    assert trace.peak_bytes < 32_000, trace      # nothing vocabulary-sized (196 KB)


def test_replayed_decoding_is_the_plan_bit_for_bit(smol):
    """Greedy tokens and every step's logits are identical with and without the captured
    decode step."""
    llm = load_llama(SMOL, kernels="c", context=256)
    ids = _chat_ids(llm, "What is the capital of France?")
    runs = []
    for replay in (False, True):
        gen = Generator(llm.model, replay=replay)
        logits, steps = gen.feed(ids), []
        for _ in range(12):
            logits = gen.step(int(logits.argmax()))
            steps.append(logits.copy())
        assert (gen.replay is not None) == replay, gen.replay_error
        runs.append(np.array(steps))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_load_is_fast_and_zero_copy():
    t0 = time.perf_counter()
    llm = load_llama(SMOL)
    ms = (time.perf_counter() - t0) * 1e3
    assert llm.model.memory_report()["params"] <= 64       # no weight in the arena
    assert llm.weight_bytes > 90e6 and llm.hparams.tied and llm.hparams.n_kv_heads == 3
    print(f"SmolLM2 Q4_1 loaded in {ms:.0f} ms")
