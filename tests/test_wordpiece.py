"""BERT WordPiece (qorus_layers_llm.wordpiece) against the tokenizers library's
BertWordPieceTokenizer, the tokenizer.json wrapper and load_tokenizer (hf_tokenizer)."""

from __future__ import annotations

import json
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from qorus_core.errors import CheckpointError, ConfigError, DataError, QorusError
from qorus_layers_llm.bert_basic import BasicTokenizer
from qorus_layers_llm.hf_tokenizer import HFTokenizer, load_tokenizer
from qorus_layers_llm.wordpiece import WordPieceTokenizer

ROOT = Path(__file__).resolve().parents[1]

TEXTS = [
    "Hello, World! How are you?!?", "héllo wörld, Ça va? naïve café résumé façade Ångström",
    "Ελληνικά ΟΔΟΣ σοφία οδοσ οδος", "unassigned x\u0378y \U000E0080", "Привет, мир! ЁЖИК",
    "İstanbul ß ẞ ǅ Ǆ ﬁ ﬃ Ⅷ ½ ² ℃",
    "日本語のテキスト、中文字符。汉字！", "한국어 텍스트 ㄱㄴ",
    "ext-E \U0002B820\U0002B821 ext-F \U0002B920x",
    "emoji 👍🏽 👩‍👩‍👧 ❤️ 🥲 🇫🇷", "مرحبا بالعالم، كيف حالك؟", "שָׁלוֹם עוֹלָם", "नमस्ते दुनिया",
    "e\u0301 a\u0308 n\u0303 combining\u0327 \u0301alone", "a\tb\nc\r\nd   e\u00a0f\u2003g\u3000h\u2028i",
    "\t\t  tabs\n\n\nand\x0bvtab\x0cff\x85nel  ", "x\x00y\x07z\x1b[0m\ufffd\u200bq\u200d\ufeffw\ue000p",
    "tag\U000E0001chars\U000E007F", "a" * 100, "a" * 101, "supercalifragilistic" * 6,
    "ok " + "é" * 101 + " ok", "?!?...,,;;--(()) [[]] {}<> @#$%^&*~`|\\/_+=\"'",
    "¿¡«»„“”‘’—–…·§¶†‡•‰′″", "don't you're I'm it's we've", "[MASK] is [MASK].",
    "a[MASK]b [SEP][CLS]", "[mask] lower [Mask]", "[CLS][SEP][PAD][UNK][MASK]", "[[MASK]]",
    "", " ", "   ", "\n\t", "\x00\x07", "The model's tokens: 1234, 3.14159; x=y+z.",
    "Qorus: deep learning on CPUs. Tokenizers for Hugging Face checkpoints.",
]

#: Unicode 3.2 characters whose category changed after Unicode 8.0 (the tables tokenizers has)
RECATEGORISED = {0x1734, 0x1885, 0x1886, 0x166D}

HANDMADE = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "!", "hello",
            "##s", "run", "##ning", "日", "本", "cafe", "a", "##a"]

CONFIGS = [(True, None), (False, None), (True, False), (False, True), (True, True), (False, False)]


@pytest.fixture(scope="module")
def vocab_txt(tmp_path_factory) -> Path:
    """A vocab trained by tokenizers on the README and the test strings, cased and with
    accents (so every configuration finds its characters)."""
    tokenizers = pytest.importorskip("tokenizers")
    corpus = (ROOT / "README.md").read_text(encoding="utf-8").splitlines() + TEXTS * 2
    hf = tokenizers.BertWordPieceTokenizer(lowercase=False, strip_accents=False)
    hf.train_from_iterator(corpus, vocab_size=900, min_frequency=1, limit_alphabet=1000,
                           show_progress=False)
    d = tmp_path_factory.mktemp("bert")
    hf.save_model(str(d))
    return d / "vocab.txt"


def reference(vocab_txt: Path, lowercase: bool, strip_accents: bool | None):
    from tokenizers import BertWordPieceTokenizer

    return BertWordPieceTokenizer(str(vocab_txt), lowercase=lowercase, strip_accents=strip_accents)


def write_config(path: Path, **fields) -> Path:
    path.write_text(json.dumps(fields), encoding="utf-8")
    return path


@pytest.mark.parametrize("lowercase,strip_accents", CONFIGS)
def test_ids_match_the_tokenizers_library(vocab_txt, lowercase, strip_accents):
    hf = reference(vocab_txt, lowercase, strip_accents)
    ours = WordPieceTokenizer.from_files(vocab_txt)
    ours = WordPieceTokenizer(ours.tokens, lowercase=lowercase, strip_accents=strip_accents)
    unk = ours.unk_id
    n_unk = 0
    for text in TEXTS:
        want = hf.encode(text)
        assert ours.encode(text) == want.ids, repr(text)
        assert ours.encode(text, add_special_tokens=False) == want.ids[1:-1], repr(text)
        n_unk += want.ids.count(unk)
        for skip in (False, True):
            assert ours.decode(want.ids, skip_special=skip) == hf.decode(
                want.ids, skip_special_tokens=skip), repr(text)
    assert 0 < n_unk < 40      # the long words are [UNK]; the vocabulary covers the rest


def test_special_tokens_long_words_and_whitespace(vocab_txt):
    ours = WordPieceTokenizer.from_files(vocab_txt)
    v = ours.vocab
    # a special token ends a word: "b" after it is a word start, not "##b"
    assert "##b" in v and ours.encode("a[MASK]b", add_special_tokens=False) == [
        v["a"], v["[MASK]"], v["b"]]
    assert v["[MASK]"] not in ours.encode("[mask]")
    assert ours.encode("a" * 101) == [ours.cls_id, ours.unk_id, ours.sep_id]
    assert ours.unk_id not in ours.encode("a" * 100)
    assert ours.encode("") == ours.encode(" \t\n\x00\ufffd ") == [ours.cls_id, ours.sep_id]
    assert ours.encode("x\ty\n\nz") == ours.encode("x y z")


@pytest.mark.parametrize("lowercase,strip_accents", CONFIGS[:4])
def test_basic_tokenizer_matches_on_every_character(lowercase, strip_accents):
    """Each character assigned by Unicode 3.2 (so by tokenizers' 8.0 tables too) between two
    letters: the same normalised text and the same words."""
    tokenizers = pytest.importorskip("tokenizers")
    old = unicodedata.ucd_3_2_0
    chars = [chr(c) for c in range(1, 0x30000) if not 0xD800 <= c < 0xE000
             and old.category(chr(c)) != "Cn" and c not in RECATEGORISED]
    norm = tokenizers.normalizers.BertNormalizer(lowercase=lowercase, strip_accents=strip_accents)
    pre = tokenizers.pre_tokenizers.BertPreTokenizer()
    ours = BasicTokenizer(lowercase, strip_accents)
    for i in range(0, len(chars), 2000):
        text = " ".join(f"a{c}b" for c in chars[i:i + 2000])
        want = norm.normalize_str(text)
        assert ours.normalize(text) == want
        assert ours.split(want) == [w for w, _ in pre.pre_tokenize_str(want)]


def test_documented_unicode_difference():
    """Python's Unicode tables, not tokenizers' 8.0 ones: U+2E52 (punctuation since 13.0)
    is split off here."""
    assert BasicTokenizer()("x\u2e52y") == ["x", "\u2e52", "y"]


def test_handmade_vocabulary_without_the_library():
    tokens = HANDMADE
    tok = WordPieceTokenizer(tokens)
    assert tok.encode("UnAffable! Hellos") == [2, 5, 6, 7, 8, 9, 10, 3]
    assert tok.encode("running日本 Café", add_special_tokens=False) == [11, 12, 13, 14, 15]
    assert tok.encode("unx [MASK]") == [2, 1, 4, 3]           # no piece spells "##x"
    assert tok.encode("a" * 100, add_special_tokens=False) == [16] + [17] * 99
    assert tok.encode("a" * 101, add_special_tokens=False) == [1]
    assert tok.encode_pair("hello", "run!") == ([2, 9, 3, 11, 8, 3], [0, 0, 0, 1, 1, 1])
    assert tok.decode([2, 5, 6, 7, 8, 9, 10, 3]) == "[CLS] unaffable! hellos [SEP]"
    assert tok.decode([2, 5, 6, 7, 8, 3], skip_special=True) == "unaffable!"
    cased = WordPieceTokenizer(tokens, lowercase=False)
    assert cased.encode("Café hello", add_special_tokens=False) == [1, 9]


def test_encode_batch_pads_and_truncates_like_the_library(vocab_txt):
    texts = ["Hello, World!", "", "supercalifragilistic expialidocious words " * 3, "日本語"]
    ours = WordPieceTokenizer.from_files(vocab_txt)
    for padding, kwargs in ((True, {}), ("max_length", {"length": 9})):
        hf = reference(vocab_txt, True, None)
        hf.enable_truncation(max_length=9)
        hf.enable_padding(pad_id=ours.pad_id, pad_token="[PAD]", **kwargs)
        want = hf.encode_batch(texts)
        ids, mask = ours.encode_batch(texts, max_length=9, padding=padding)
        assert ids.dtype == np.int32 and mask.dtype == bool and ids.shape == (4, 9)
        np.testing.assert_array_equal(ids, [e.ids for e in want])
        np.testing.assert_array_equal(mask, [e.attention_mask for e in want])
        assert (ids[2, -1], ids[1, :3].tolist()) == (ours.sep_id, [ours.cls_id, ours.sep_id,
                                                                    ours.pad_id])
    ids, mask = ours.encode_batch(["a b", "a"], padding=True)
    assert ids.shape == (2, 4) and mask.sum(1).tolist() == [4, 3]
    ids, _ = ours.encode_batch(texts, max_length=2)
    assert ids.tolist() == [[ours.cls_id, ours.sep_id]] * 4
    assert ours.encode_batch([], max_length=4)[0].shape == (0, 0)


def test_tokenizer_config_fields(vocab_txt, tmp_path):
    cfg = write_config(tmp_path / "tokenizer_config.json", do_lower_case=False, strip_accents=True,
                       model_max_length=6, tokenize_chinese_chars=True,
                       mask_token={"content": "[MASK]", "__type": "AddedToken"},
                       added_tokens_decoder={"0": {"content": "[PAD]", "special": True}})
    ours = WordPieceTokenizer.from_files(vocab_txt, cfg)
    hf = reference(vocab_txt, False, True)
    for text in TEXTS:
        assert ours.encode(text) == hf.encode(text).ids
    assert ours.model_max_length == 6
    assert ours.encode_batch(["a b c d e f g h"])[0].shape == (1, 6)
    big = write_config(tmp_path / "big.json", model_max_length=int(1e30))
    assert WordPieceTokenizer.from_files(vocab_txt, big).model_max_length is None


@pytest.mark.parametrize("fields,match", [
    ({"do_lower_case": "yes"}, "'do_lower_case' must be true or false"),
    ({"model_max_length": -1}, "'model_max_length' must be a positive integer"),
    ({"unk_token": "<nope>"}, "unk token '<nope>' is not in the vocabulary"),
    ({"cls_token": 3}, "'cls_token' must be a token string"),
    ({"additional_special_tokens": ["<x>"]}, "special token '<x>' is not in the vocabulary"),
    ({"added_tokens_decoder": {"5": {"content": "[PAD]"}}}, "added_tokens_decoder"),
])
def test_bad_config_names_file_and_field(tmp_path, fields, match):
    vocab_txt = tmp_path / "vocab.txt"
    vocab_txt.write_text("\n".join(HANDMADE), encoding="utf-8")
    cfg = write_config(tmp_path / "tokenizer_config.json", **fields)
    with pytest.raises(ConfigError, match=match) as exc:
        WordPieceTokenizer.from_files(vocab_txt, cfg)
    assert str(cfg) in str(exc.value)


def test_file_errors(tmp_path):
    with pytest.raises(CheckpointError, match="vocab.txt: not found"):
        WordPieceTokenizer.from_files(tmp_path / "vocab.txt")
    (tmp_path / "vocab.txt").write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="vocabulary is empty"):
        WordPieceTokenizer.from_files(tmp_path / "vocab.txt")
    (tmp_path / "vocab.txt").write_text("[CLS]\n[SEP]\nhello\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"vocab.txt: the unk token '\[UNK\]'"):
        WordPieceTokenizer.from_files(tmp_path / "vocab.txt")
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "vocab.txt").write_text("[UNK]\n[CLS]\n[SEP]\nhello\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="bad.json: not readable JSON"):
        WordPieceTokenizer.from_files(tmp_path / "vocab.txt", tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[]", encoding="utf-8")
    with pytest.raises(ConfigError, match="list.json: expected a JSON object"):
        WordPieceTokenizer.from_files(tmp_path / "vocab.txt", tmp_path / "list.json")


def test_call_errors():
    tok = WordPieceTokenizer(["[UNK]", "[CLS]", "[SEP]", "a", "b"])   # no [PAD]
    assert tok.pad_id is None
    with pytest.raises(ConfigError, match="no pad token"):
        tok.encode_batch(["a", "a b"])
    assert tok.encode_batch(["a", "b"])[0].tolist() == [[1, 3, 2], [1, 4, 2]]
    with pytest.raises(ConfigError, match="max_length must be an integer >= 2"):
        tok.encode_batch(["a"], max_length=1)
    with pytest.raises(ConfigError, match="padding must be"):
        tok.encode_batch(["a"], padding="left")
    with pytest.raises(ConfigError, match="padding=False"):
        WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"]).encode_batch(
            ["a", "a a"], padding=False)
    with pytest.raises(ConfigError, match="needs a max_length"):
        tok.encode_batch(["a"], padding="max_length")
    with pytest.raises(DataError, match="token id 5 outside"):
        tok.decode([1, 5])
    with pytest.raises(ConfigError, match="lone surrogate"):
        tok.encode("a\udc80")
    with pytest.raises(ConfigError, match=r"texts\[1\]: expected a str"):
        tok.encode_batch(["a", None])
    with pytest.raises(ConfigError, match="texts must be a list of str, got str"):
        tok.encode_batch("a b")


# ---------------------------------------------------------------- tokenizer.json, load_tokenizer
def test_load_tokenizer_reads_tokenizer_json(vocab_txt, tmp_path):
    hf = reference(vocab_txt, True, None)
    hf.save(str(tmp_path / "tokenizer.json"))
    tok = load_tokenizer(tmp_path)
    assert isinstance(tok, HFTokenizer)
    ours = WordPieceTokenizer.from_files(vocab_txt)
    for text in TEXTS:
        assert tok.encode(text) == ours.encode(text), repr(text)
        assert tok.decode(tok.encode(text)) == ours.decode(ours.encode(text))
    assert tok.encode_pair("Hello", "World!") == ours.encode_pair("Hello", "World!")
    assert (tok.pad_id, tok.special_tokens["cls"], tok.special_tokens["sep"]) == (
        ours.pad_id, ours.cls_id, ours.sep_id)
    assert tok.special_ids == ours.special_ids and tok.vocab_size == ours.vocab_size
    texts = ["Hello, World!", "", "supercalifragilistic expialidocious words " * 3]
    for got, want in zip(tok.encode_batch(texts, max_length=7), ours.encode_batch(texts, 7)):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(DataError, match="token id 100000 outside"):
        tok.decode([100000])
    with pytest.raises(ConfigError, match="texts must be a list of str"):
        tok.encode_batch("Hello")
    (tmp_path / "vocab.txt").write_bytes(vocab_txt.read_bytes())
    assert isinstance(load_tokenizer(tmp_path), HFTokenizer)   # tokenizer.json comes first


def test_tokenizer_json_of_another_model(tmp_path):
    """A byte-level BPE with its own truncation and padding saved in the file: ids as the
    library gives them, the file's length as model_max_length, its pad id."""
    tokenizers = pytest.importorskip("tokenizers")
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(TEXTS * 3, vocab_size=400, special_tokens=["<pad>", "</s>"],
                            show_progress=False)
    bpe.enable_truncation(max_length=5)
    bpe.enable_padding(pad_id=0, pad_token="<pad>")
    bpe.save(str(tmp_path / "tokenizer.json"))
    tok = load_tokenizer(tmp_path)
    bpe.no_truncation()
    for text in TEXTS:
        assert tok.encode(text) == bpe.encode(text).ids, repr(text)
    assert (tok.model_max_length, tok.pad_id, tok.special_tokens.get("eos")) == (
        5, 0, bpe.token_to_id("</s>"))
    ids, mask = tok.encode_batch(["Hello, World! " * 4, "a"])
    assert ids.shape == (2, 5) and mask.sum(1).tolist() == [5, len(bpe.encode("a").ids)]


def test_tokenizer_json_errors(tmp_path, monkeypatch):
    pytest.importorskip("tokenizers")
    (tmp_path / "tokenizer.json").write_text('{"version": "1.0"}', encoding="utf-8")
    with pytest.raises(ConfigError, match="tokenizer.json: not a tokenizer.json"):
        load_tokenizer(tmp_path)
    with pytest.raises(CheckpointError, match="nope.json: not found"):
        HFTokenizer.from_file(tmp_path / "nope.json")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match=r"empty: no tokenizer: looked for tokenizer.json "
                                              r".* and vocab.txt"):
        load_tokenizer(empty)
    with pytest.raises(CheckpointError, match="not a model directory"):
        load_tokenizer(tmp_path / "missing")


def test_without_the_tokenizers_library(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tokenizers", None)      # import tokenizers: ImportError
    (tmp_path / "tokenizer.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"tokenizer.json: .*pip install qorus-layers-llm\[hf\]"):
        load_tokenizer(tmp_path)
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(HANDMADE) + "\n", encoding="utf-8")
    tok = load_tokenizer(tmp_path)         # falls back to our WordPiece on vocab.txt
    assert isinstance(tok, WordPieceTokenizer) and tok.encode("Hellos!") == [2, 9, 10, 8, 3]
    assert issubclass(ConfigError, QorusError)
