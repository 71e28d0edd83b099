"""The llm plugin's review round: one metadata reader for the hyperparameters and the
tokenizer; tokenizer values checked once, in the constructors (so for any caller); a bounded
BPE word cache; a greedy sampler that finds non-finite logits without an extra pass; the
tensor shapes a file must hold produced lazily; a kernel-size set refused."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest
from tiny_llama import vocabulary, write_tiny_llama

from qorus_core.errors import ConfigError, GGUFError, NumericsError
from qorus_core.testing import trace_allocations
from qorus_layers_llm import bpe
from qorus_layers_llm.bpe import ByteBPETokenizer
from qorus_layers_llm.chat import _compile, render_chat
from qorus_layers_llm.feedforward import FeedForward
from qorus_layers_llm.gguf_metadata import MetadataReader, describe
from qorus_layers_llm.llama import LlamaHParams, load_llama
from qorus_layers_llm.sampler import Sampler
from qorus_layers_llm.spm import SentencePieceTokenizer


def _reader(error=ConfigError, **md):
    return MetadataReader(SimpleNamespace(metadata=md, path="m.gguf"), error)


# -- one metadata reader ------------------------------------------------------------------------
@pytest.mark.parametrize("error", [ConfigError, GGUFError])
def test_the_reader_raises_its_own_error_class_naming_file_and_key(error):
    md = _reader(error, n="4", f=np.float32("nan"), b=np.uint32(1), t=np.uint32(9),
                 s=np.uint32(1), a=[1, 2], e=[], x=np.full(3, 1.0, np.float32))
    cases = [(lambda: md.integer("n"), "m.gguf: metadata n: the string '4', expected an integer"),
             (lambda: md.integer("missing"), "m.gguf: metadata missing is missing"),
             (lambda: md.real("f", 1.0), "metadata f: nan is not a finite number"),
             (lambda: md.flag("b", False), "metadata b: expected a bool, got uint32 1"),
             (lambda: md.token_id("t", 5), r"metadata t: token id 9 outside the vocabulary \[0, 5\)"),
             (lambda: md.string("s"), "metadata s: expected a string, got uint32 1"),
             (lambda: md.strings("a"), "metadata a: element #0 is int 1, expected a string"),
             (lambda: md.strings("e"), "metadata e: the array is empty"),
             (lambda: md.numbers("x", 3, "i"), "metadata x: expected an array of 3 integers")]
    for read, match in cases:
        with pytest.raises(error, match=match):
            read()
    assert md.integer("absent", 7) == 7 and md.token_id("absent", 5) is None
    assert md.string("absent", "default") == "default" and md.strings("e", allow_empty=True) == []
    assert type(md.integer("b")) is int and md.numbers("x", 3, "iuf") is not None


def test_a_value_is_described_briefly():
    assert describe(["ab"] * 10**5) == "an array of 100000 strs"
    assert describe(np.zeros(10**6, np.int32)) == "an array of 1000000 int32"
    assert describe(True) == "the bool True" and describe("x" * 1000) == f"the string {'x' * 40!r}"


# -- tokenizer values: checked in the constructors ----------------------------------------------
def _bpe(**kw):
    tokens, merges, types = vocabulary()
    args = dict(merges=merges, tokens=tokens, types=types, bos_id=1, eos_id=2, add_bos=False)
    return ByteBPETokenizer(**{**args, **kw})


def test_token_types_are_checked_before_the_int32_cast():
    n = len(vocabulary()[0])
    wraps = np.full(n, 1, np.int64)
    wraps[4] = 2**32 + 1                  # int32 of it is 1 (NORMAL): must not pass as that
    with pytest.raises(ConfigError, match=r"token_type: token #4 has type 4294967297"):
        _bpe(types=wraps)
    with pytest.raises(ConfigError, match=f"token_type: 3 values for {n} tokens"):
        _bpe(types=np.ones(3, np.int32))
    with pytest.raises(ConfigError, match="token_type: expected .* integers, got an array of float"):
        _bpe(types=np.ones(n, np.float32))
    assert _bpe(types=np.ones(n, np.uint8)).types.dtype == np.int32


def _spm(scores):
    toks = ["<unk>", "<s>", "</s>", "\u2581a", "a"]
    return SentencePieceTokenizer(tokens=toks, types=np.array([2, 3, 3, 1, 1], np.int32),
                                  scores=scores, bos_id=1, eos_id=2, add_bos=False, unk_id=0)


def test_sentencepiece_scores_are_checked_after_the_float32_cast():
    assert _spm(np.arange(5, dtype=np.float64)).scores.dtype == np.float32
    big = np.zeros(5)
    big[3] = 1e300                         # finite in float64, inf in float32
    with pytest.raises(ConfigError, match="scores: token #3 has the non-finite value inf"):
        _spm(big)
    with pytest.raises(ConfigError, match="scores: 4 values for 5 tokens"):
        _spm(np.zeros(4, np.float32))
    with pytest.raises(ConfigError, match="scores: expected 5 numbers"):
        _spm(np.array(["1"] * 5))


# -- the BPE word cache is bounded --------------------------------------------------------------
def test_the_bpe_word_cache_stays_bounded(monkeypatch):
    monkeypatch.setattr(bpe, "CACHE_WORDS", 8)
    tok = _bpe()
    words = [" " + "".join(p) for p in itertools.product("thean", repeat=3)]   # 125 words
    first = [tok.encode(w) for w in words]
    assert len(tok._cache) <= 8
    assert [tok.encode(w) for w in words] == first                # the same ids after eviction
    long = " " + "the" * bpe.CACHE_WORD_CHARS
    assert tok.encode(long) == tok.encode(long) and long not in tok._cache
    assert tok.decode(tok.encode(long)) == long


# -- the greedy sampler: argmax finds NaN and +inf, the min finds -inf ----------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_non_finite_logits_are_refused_greedy_or_not(bad, temperature):
    s = Sampler(6, temperature=temperature)
    logits = np.arange(6, dtype=np.float32)
    logits[2] = bad
    with pytest.raises(NumericsError, match=r"logits\[2\] \(token id 2\) is"):
        s.sample(logits)


def test_greedy_is_the_first_argmax_and_allocates_nothing():
    s = Sampler(5, temperature=0.0)
    logits = np.array([1, 7, 3, 7, -2], np.float32)
    assert s.sample(logits) == 1 and s.steps == 1
    assert Sampler(5, temperature=1e-40).sample(logits) == 1      # below GREEDY_BELOW: greedy
    trace = trace_allocations(lambda: s.sample(logits), repeat=50)
    assert trace.array_bytes == 0, trace.where


# -- llama: shapes produced lazily, the context an int -------------------------------------------
def test_tensor_shapes_are_produced_lazily():
    hp = LlamaHParams(vocab_size=10, d_model=8, n_layers=2**40, n_heads=2, n_kv_heads=1, d_ff=16,
                      rope_theta=1e4, eps=1e-5, context_length=16, tied=True)
    first = list(itertools.islice(hp.tensor_shapes(), 4))
    assert first == [("token_embd.weight", (10, 8)), ("output_norm.weight", (8,)),
                     ("blk.0.attn_norm.weight", (8,)), ("blk.0.ffn_norm.weight", (8,))]


def test_load_llama_keeps_the_context_as_a_python_int(tmp_path):
    llm = load_llama(write_tiny_llama(tmp_path / "tiny.gguf", "f32"), context=np.int64(32))
    assert type(llm.context) is int and llm.context == 32
    n = sum(1 for _ in llm.hparams.tensor_shapes())
    assert n == 2 + 9 * llm.hparams.n_layers + (not llm.hparams.tied)
    with pytest.raises(ConfigError, match="load_llama: context must be an integer, got 2.5"):
        load_llama(tmp_path / "tiny.gguf", context=2.5)


# -- layer arguments ------------------------------------------------------------------------------
def test_feedforward_activation_goes_through_validate():
    with pytest.raises(ConfigError, match="llm.FeedForward: activation must be one of 'gelu'"):
        FeedForward(8, activation="swish")
    with pytest.raises(ConfigError, match="llm.FeedForward: activation"):
        FeedForward(8, activation=["gelu"])
    assert FeedForward(8, activation="relu").activation == "relu"


def test_a_kernel_size_set_is_refused_its_order_not_being_the_callers():
    from qorus_layers_cnn import Conv2d

    with pytest.raises(ConfigError, match=r"cnn.Conv2d: kernel_size=\{.*\} must be an int or a pair"):
        Conv2d(3, 4, {5, 3})
    with pytest.raises(ConfigError, match=r"cnn.Conv2d: stride=\[1, 2, 3\] must be"):
        Conv2d(3, 4, 3, stride=[1, 2, 3])
    assert Conv2d(3, 4, np.array([5, 3])).kernel_size == [5, 3]
    assert Conv2d(3, 4, (np.int64(3), 2)).kernel_size == [3, 2]


# -- compiled chat templates: a bounded cache ------------------------------------------------------
def test_compiled_templates_are_kept_in_a_bounded_cache():
    msgs = [{"role": "user", "content": "hi"}]
    for i in range(40):
        assert render_chat(msgs, f"{{{{ messages[0].content }}}}{i}") == f"hi{i}"
    info = _compile.cache_info()
    assert info.maxsize is not None and info.currsize <= info.maxsize
    assert math.isfinite(info.maxsize)


@pytest.mark.parametrize("template,match", [
    ("{{ range(10**6)|list|length }}", r"MAX_RANGE \(100000\)"),        # Jinja's own sandbox
    ("{{ ('%' ~ '9' * 5000 ~ 'd') % 1 }}", "chat template"),             # a width past int()
    ("{{ ('{:' ~ '9' * 5000 ~ '}').format(1) }}", "chat template"),
    ("{{ ('%' ~ '9' * 3000 ~ 'd') % 1 }}", "max_chars"),
    ("{{ ('{:>' ~ '9' * 3000 ~ '}').format(1) }}", "max_chars"),
])
def test_ranges_and_huge_format_widths_are_config_errors(template, match):
    with pytest.raises(ConfigError, match=match):
        render_chat([{"role": "user", "content": "x"}], template)
