"""Model file formats under hostile or careless input (issue 12): every bad GGUF, safetensors
header, tokenizer or argument is a QorusError naming the file and the field, refused up front;
a mapped file changed under the model is detected instead of killing the process (SIGBUS)."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from tiny_llama import write_tiny_llama

from qorus_core.cli import main
from qorus_core.errors import CheckpointError, ConfigError, DataError, GGUFError
from qorus_core.io.convert import convert
from qorus_core.io.gguf import GGUFFile, write_gguf
from qorus_core.io.safetensors import SafeTensorsFile
from qorus_layers_llm import llama
from qorus_layers_llm.llama import load_llama
from qorus_layers_llm.tokenizer import Tokenizer

TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny.gguf", "f32")


def _variant(base: Path, out: Path, meta: dict | None = None, drop: tuple[str, ...] = (),
             tensors: dict | None = None) -> Path:
    """``base`` rewritten with metadata keys replaced (value None: removed) and tensors
    dropped or replaced."""
    with GGUFFile(base) as f:
        md = {k: v for k, v in f.metadata.items() if k != "general.alignment"}
        ts = {n: np.array(f.tensor(n)) for n in f.tensors if n not in drop}
    for k, v in (meta or {}).items():
        if v is None:
            md.pop(k, None)
        else:
            md[k] = v
    ts.update(tensors or {})
    write_gguf(out, md, ts)
    return out


# -- 1. a mapped file that shrinks or is rewritten while in use ---------------------------------
_SHRINK = r"""
import faulthandler, os, sys
faulthandler.enable()
sys.path.insert(0, sys.argv[2])
from pathlib import Path
import numpy as np
from tiny_llama import write_tiny_llama
from qorus_core.errors import CheckpointError, GGUFError
from qorus_core.io.gguf import GGUFFile
from qorus_core.io.safetensors import SafeTensorsFile, save_file
from qorus_layers_llm.llama import load_llama

d = Path(sys.argv[1])

def expect(fn, cls, what):
    try:
        fn()
    except cls as exc:
        assert "changed while in use" in str(exc), exc
        print(what, "ok", exc.__class__.__name__, str(exc).split(":")[0].endswith(".gguf") or
              str(exc).split(":")[0].endswith(".safetensors"))
    else:
        raise SystemExit(f"{what}: no error")

# cp over the same inode: truncated, then the pages are gone
p = write_tiny_llama(d / "a.gguf", "f32")
llm = load_llama(p)
f = GGUFFile(p)
f.check_unchanged(); llm.check_unchanged()
os.truncate(p, 64)
expect(f.check_unchanged, GGUFError, "gguf-check")
expect(lambda: f.tensor("output_norm.weight"), GGUFError, "gguf-tensor")
expect(lambda: f.raw("output_norm.weight"), GGUFError, "gguf-raw")
expect(llm.check_unchanged, GGUFError, "llm-check")

# same size, new content (a finished cp): the modification time tells
q = write_tiny_llama(d / "b.gguf", "f32")
g = GGUFFile(q)
st = os.stat(q)
with open(q, "r+b") as w:
    w.seek(st.st_size - 4); w.write(b"\x00\x00\xc0\x7f")
os.utime(q, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
expect(lambda: g.tensor("output_norm.weight"), GGUFError, "gguf-rewritten")

# mv over it: a new inode; the mapped one lives on and stays valid
r = write_tiny_llama(d / "c.gguf", "f32")
h = GGUFFile(r)
before = np.array(h.tensor("output_norm.weight"))
write_tiny_llama(d / "other.gguf", "f32", seed=5)
os.replace(d / "other.gguf", r)
h.check_unchanged()
np.testing.assert_array_equal(h.tensor("output_norm.weight"), before)
print("gguf-mv ok")

s = d / "w.safetensors"
save_file({"w": np.arange(4096, dtype=np.float32)}, s)
sf = SafeTensorsFile(s)
sf.check_unchanged()
os.truncate(s, 100)
expect(lambda: sf.get("w"), CheckpointError, "st-get")
print("done")
"""


def test_a_file_that_shrinks_while_mapped_is_an_error_not_sigbus(tmp_path):
    # in a subprocess: if the check ever stopped working, the SIGBUS kills that one, not pytest
    r = subprocess.run([sys.executable, "-c", _SHRINK, str(tmp_path), str(TESTS)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    for what in ("gguf-check", "gguf-tensor", "gguf-raw", "llm-check", "gguf-rewritten"):
        assert f"{what} ok GGUFError True" in lines, r.stdout
    assert "gguf-mv ok" in lines and "st-get ok CheckpointError True" in lines, r.stdout
    assert lines[-1] == "done"


# -- 2. GGUF metadata of the wrong type or value ------------------------------------------------
A = "llama."
BAD_META = [
    ({A + "attention.head_count": "four"}, "head_count: the string 'four', expected an integer"),
    ({A + "attention.head_count": np.array([4, 4], np.uint32)}, "head_count: an array of 2"),
    ({A + "attention.head_count": np.uint32(0)}, "head_count: 0 is less than 1"),
    ({A + "attention.head_count": np.uint32(3)}, "3 heads do not divide"),
    ({A + "attention.head_count_kv": np.uint32(3)}, "3 KV heads do not divide"),
    ({A + "attention.head_count_kv": np.uint32(8)}, "8 KV heads do not divide"),
    ({A + "embedding_length": np.float32("nan")}, "embedding_length: float32 nan, expected an integer"),
    ({A + "block_count": "2"}, "block_count: the string '2'"),
    ({A + "block_count": True}, "block_count: the bool True"),
    ({A + "feed_forward_length": np.float32(96)}, "feed_forward_length: float32"),
    ({A + "feed_forward_length": np.uint32(128)}, r"'blk.0.ffn_gate.weight' has shape \(96, 64\), "
                                                  r"the metadata implies \(128, 64\)"),
    ({A + "attention.layer_norm_rms_epsilon": np.float32("nan")}, "epsilon: nan is not a finite"),
    ({A + "attention.layer_norm_rms_epsilon": np.float32(-1e-5)}, "epsilon: -1e-05 is not a finite"),
    ({A + "attention.layer_norm_rms_epsilon": np.float32(0)}, "epsilon: 0.0 is not a finite"),
    ({A + "attention.layer_norm_rms_epsilon": "1e-5"}, "epsilon: the string"),
    ({A + "rope.freq_base": np.float32(0)}, "freq_base: 0.0 is not a finite number"),
    ({A + "rope.freq_base": np.float32("inf")}, "freq_base: inf is not a finite number"),
    ({A + "rope.freq_base": np.float64("nan")}, "freq_base: nan"),
    ({A + "context_length": np.uint32(0)}, "context_length: 0 is less than 1"),
    ({A + "context_length": np.int32(-5)}, "context_length: -5 is less than 1"),
    ({A + "vocab_size": np.uint32(300)}, "tokens but the vocabulary has 300"),
    ({A + "rope.dimension_count": "16"}, "dimension_count: the string"),
]


@pytest.mark.parametrize("meta,match", BAD_META, ids=[str(m)[:50] for m, _ in BAD_META])
def test_bad_hyperparameters_name_file_and_key(base, tmp_path, meta, match, monkeypatch):
    p = _variant(base, tmp_path / "bad.gguf", meta)
    monkeypatch.setattr(llama.LlamaHParams, "network", _never_built)
    with pytest.raises(GGUFError, match=match) as e:
        load_llama(p)
    assert str(e.value).startswith(str(p))


def _never_built(*_):
    raise AssertionError("the network was built before the metadata was checked")


@pytest.mark.parametrize("n", [20_000, 2**32 - 1])
def test_block_count_is_checked_against_the_tensors_first(base, tmp_path, n, monkeypatch):
    p = _variant(base, tmp_path / "blocks.gguf", {A + "block_count": np.uint32(n)})
    monkeypatch.setattr(llama.LlamaHParams, "network", _never_built)
    with pytest.raises(GGUFError, match=f"'blk.2.attn_norm.weight' is missing .*promises {n} blocks"):
        load_llama(p)


def test_non_finite_norm_weights_are_refused(base, tmp_path):
    w = np.ones(64, np.float32)
    w[7] = np.nan
    p = _variant(base, tmp_path / "nan.gguf", tensors={"blk.1.ffn_norm.weight": w})
    with pytest.raises(GGUFError, match=r"'blk.1.ffn_norm.weight' holds a non-finite value "
                                        r"\(nan at index 7\)"):
        load_llama(p)


def test_a_context_that_cannot_fit_is_refused_up_front(base, monkeypatch):
    monkeypatch.setattr(llama.LlamaHParams, "network", _never_built)
    with pytest.raises(ConfigError, match=r"context 1000000000000: the KV cache of 1000000000000 "
                                          r"positions .*: 512,000,000,000,000 bytes .* needed"):
        load_llama(base, context=10**12)
    for bad in (2.5, True, "64"):
        with pytest.raises(ConfigError, match="context must be an integer"):
            load_llama(base, context=bad)
    with pytest.raises(ConfigError, match="context must be positive"):
        load_llama(base, context=0)
    assert main(["generate", str(base), "--prompt", "x", "--ctx", "100000000000"]) == 2


def test_the_valid_model_still_loads(base):
    llm = load_llama(base, context=32)
    assert llm.context == 32 and llm.hparams.kv_cache_bytes(32) == 2 * 2 * 32 * 2 * 16 * 4
    assert llm.tokenizer.decode(llm.tokenizer.encode("the ant")) == "the ant"


# -- 3. tokenizer metadata ----------------------------------------------------------------------
T = "tokenizer.ggml."
BAD_TOKENIZER = [
    ({T + "tokens": np.arange(265, dtype=np.int32)},
     "tokens: expected an array of strings, got an array of 265 int32"),
    ({T + "tokens": [["a"]] * 265}, r"tokens: element #0 is an array of 1 strs, expected a string"),
    ({T + "token_type": ["1"] * 265}, "token_type: expected an array of 265 integers"),
    ({T + "token_type": np.full(265, 1.0, np.float32)}, "token_type: expected an array of 265 integers"),
    ({T + "token_type": np.full(10, 1, np.int32)}, "token_type: 10 values for 265 tokens"),
    ({T + "token_type": np.full(265, 9, np.int32)}, "token #0 has type 9"),
    ({T + "merges": np.arange(3, dtype=np.int32)}, "merges: expected an array of strings"),
    ({T + "merges": ["ab"]}, "BPE merge #0 'ab' is not two symbols"),
    ({T + "bos_token_id": np.uint32(5000)}, "bos_token_id: token id 5000 outside the vocabulary"),
    ({T + "eos_token_id": "2"}, "eos_token_id: expected a token id, got the string"),
    ({T + "add_bos_token": "false"}, "add_bos_token: expected a bool, got the string 'false'"),
    ({T + "pre": np.uint32(1)}, "pre: expected a string"),
    ({T + "model": np.uint32(1)}, "model: expected a string"),
    ({"tokenizer.chat_template": np.uint32(1)}, "chat_template: expected a string"),
]


@pytest.mark.parametrize("meta,match", BAD_TOKENIZER, ids=[str(m)[:40] for m, _ in BAD_TOKENIZER])
def test_bad_tokenizer_metadata(base, tmp_path, meta, match):
    p = _variant(base, tmp_path / "tok.gguf", meta)
    with GGUFFile(p) as f, pytest.raises(ConfigError, match=match) as e:
        Tokenizer.from_gguf(f)
    assert str(e.value).startswith(str(p))


def _spm(base: Path, out: Path, tokens: list[str] | None = None, scores=None, types=None,
         unk: bool = True) -> Path:
    toks = ["<unk>", "<s>", "</s>", "<0x41>", "<0x42>", "\u2581", "a", "b", "\u2581a", "ab"]
    toks = toks if tokens is None else tokens
    ty = np.array([2, 3, 3, 6, 6, 1, 1, 1, 1, 1], np.int32) if types is None else types
    meta = {T + "model": "llama", T + "tokens": toks, T + "token_type": ty,
            T + "scores": np.arange(len(toks), dtype=np.float32) if scores is None else scores,
            T + "merges": None, T + "pre": None, T + "unknown_token_id": np.uint32(0) if unk else None,
            A + "vocab_size": None}
    return _variant(base, out, meta)


def test_sentencepiece_byte_tokens_and_scores(base, tmp_path):
    with GGUFFile(_spm(base, tmp_path / "ok.gguf")) as f:
        tok = Tokenizer.from_gguf(f)
        assert tok.encode("ab", add_bos=False) == [5, 9] and tok.token_bytes(3) == b"A"
        assert tok.encode("A", add_bos=False) == [5, 3]          # byte fallback
    bad = ["<unk>", "<s>", "</s>", "<0x!E>", "<0x42>", "\u2581", "a", "b", "\u2581a", "ab"]
    for tokens, scores, match in [
            (bad, None, r"token #3 '<0x!E>' is of type BYTE but is not spelled <0xHH>"),
            (["<0x+1>" if t == "<0x!E>" else t for t in bad], None, "token #3 '<0x\\+1>'"),
            (None, ["1"] * 10, "scores: expected an array of 10 numbers, got an array of 10 strs"),
            (None, np.ones(9, np.float32), "scores: 9 values for 10 tokens"),
            (None, np.full(10, np.nan, np.float32), "scores: token #0 has the non-finite value nan")]:
        p = _spm(base, tmp_path / "bad.gguf", tokens, scores)
        with GGUFFile(p) as f, pytest.raises(ConfigError, match=match) as e:
            Tokenizer.from_gguf(f)
        assert str(e.value).startswith(str(p))


def test_text_the_vocabulary_cannot_spell_is_refused_not_dropped(base, tmp_path):
    with GGUFFile(_spm(base, tmp_path / "unk.gguf")) as f:
        assert Tokenizer.from_gguf(f).encode("c", add_bos=False) == [5, 0]     # <unk>
    with GGUFFile(_spm(base, tmp_path / "nounk.gguf", unk=False)) as f:
        tok = Tokenizer.from_gguf(f)
        with pytest.raises(DataError, match=r"cannot spell 'c' \(no token, no byte token <0x63>"):
            tok.encode("ac", add_bos=False)
    with GGUFFile(base) as f:
        tokens = list(f.metadata[T + "tokens"])
    tokens[3 + ord("z")] = "<not z>"          # the byte-level vocabulary loses the byte 'z'
    with GGUFFile(_variant(base, tmp_path / "noz.gguf", {T + "tokens": tokens})) as f:
        tok = Tokenizer.from_gguf(f)
        assert tok.decode(tok.encode("the ant")) == "the ant"
        with pytest.raises(DataError, match="no token for byte 0x7A of ' zebra'"):
            tok.encode("a zebra")


def test_lone_surrogates_are_refused_with_their_position(base, capsys):
    tok = load_llama(base, context=16).tokenizer
    with pytest.raises(ConfigError, match=r"character 2 is a lone surrogate U\+DC80 \(byte 0x80"):
        tok.encode("ab\udc80c")
    with pytest.raises(ConfigError, match=r"character 0 is a lone surrogate U\+D800"):
        tok.encode("\ud800")
    assert tok.encode("é🙂") and tok.decode(tok.encode("é🙂")) == "é🙂"
    assert main(["generate", str(base), "--prompt", "x\udcff"]) == 2
    assert "--prompt: character 1 is a lone surrogate U+DCFF (byte 0xFF" in capsys.readouterr().err


def test_undecodable_argv_and_stdin(base, monkeypatch, capsys):
    # argv bytes that are not UTF-8 reach Python as surrogates: a real process, real argv
    r = subprocess.run([sys.executable, "-c", "import sys; from qorus_core.cli import main; "
                        "sys.exit(main())", "generate", str(base), "--prompt", b"caf\xe9"],
                       capture_output=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert b"--prompt: character 3 is a lone surrogate U+DCE9 (byte 0xE9" in r.stderr
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"hi\xff\n"), encoding="utf-8"))
    assert main(["chat", str(base), "--max-tokens", "1"]) == 2
    assert "stdin line 1: not valid UTF-8" in capsys.readouterr().err


# -- 4. safetensors headers ---------------------------------------------------------------------
def _st(path: Path, header: str | bytes, data: bytes = b"", n: int | None = None) -> Path:
    h = header.encode() if isinstance(header, str) else header
    path.write_bytes(struct.pack("<Q", len(h) if n is None else n) + h + data)
    return path


def _entry(dtype='"F32"', shape="[1]", offs="[0, 4]") -> str:
    return f'{{"dtype": {dtype}, "shape": {shape}, "data_offsets": {offs}}}'


def _hdr(*pairs: tuple[str, str], **entries: str) -> str:
    """A JSON object written by hand (so keys may repeat): name -> raw JSON text."""
    return "{" + ", ".join(f'"{k}": {v}' for k, v in [*pairs, *entries.items()]) + "}"


BAD_HEADERS = [
    (_hdr(a=_entry(dtype="[]")), b"\0" * 4, r"tensor 'a': field dtype: unsupported dtype \[\]"),
    (_hdr(a=_entry(dtype="{}")), b"\0" * 4, "field dtype"),
    (_hdr(a=_entry(shape=f"[{2**63}]")), b"\0" * 4, "field shape: bad shape"),
    (_hdr(a=_entry(shape=f"[{2**64 + 1}]")), b"\0" * 4, "field shape"),
    (_hdr(a=_entry(shape=f"[{2**62}, 4]", offs="[0, 0]")), b"",
     r"field data_offsets: \[0, 0\] hold 0 bytes, F32\[4611686018427387904, 4\] needs"),
    (_hdr(a=_entry(shape=f"[{2**32 + 1}, {2**32 - 1}, {2**32 + 1}, 0, 4]", offs="[0, 0]")), b"",
     "describes more than 2\\*\\*63 bytes"),   # empty, yet NumPy refuses the shape (fuzz)
    (_hdr(a=_entry(shape="[1.0]")), b"\0" * 4, "a number with a fraction or exponent"),
    (_hdr(a=_entry(shape="[NaN]")), b"\0" * 4, "NaN is not JSON"),
    (_hdr(a=_entry(shape=str([1] * 33))), b"\0" * 4, "at most 32"),
    (_hdr(a=_entry(offs=f"[0, {'9' * 5000}]")), b"\0" * 4, "an integer of 5000 digits"),
    (_hdr(("a", _entry()), ("a", _entry())), b"\0" * 4, "duplicate key 'a'"),
    ('{"a": {"dtype": "F32", "dtype": "F64", "shape": [1], "data_offsets": [0, 4]}}', b"\0" * 4,
     "duplicate key 'dtype'"),
    ('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", b"", "nested too deeply"),
    (_hdr(a=_entry(offs="[0, 8]", shape="[2]")), b"\0" * 4, "run past the end of the data"),
    (_hdr(a=_entry(offs="[4, 0]")), b"\0" * 4, "bad data_offsets"),
    (_hdr(a=_entry(shape="[2]", offs="[0, 8]"), b=_entry(offs="[4, 8]")), b"\0" * 8,
     "overlaps"),
    (_hdr(a=_entry(offs="[-4, 0]")), b"\0" * 4, "bad data_offsets"),
    (_hdr(__metadata__="[]", a=_entry()), b"\0" * 4, "__metadata__ must map strings"),
    (_hdr(__metadata__='{"k": 1}', a=_entry()), b"\0" * 4, "__metadata__ must map strings"),
    ("[]", b"", "header must be a JSON object"),
    (b'{"\xff": 1}', b"", "not valid JSON"),
]


@pytest.mark.parametrize("header,data,match", BAD_HEADERS, ids=[m for _, _, m in BAD_HEADERS])
def test_bad_safetensors_headers(tmp_path, header, data, match):
    p = _st(tmp_path / "bad.safetensors", header, data)
    with pytest.raises(CheckpointError, match=match) as e:
        SafeTensorsFile(p)
    assert str(e.value).startswith(str(p))


def test_absurd_header_length_and_bool_bytes(tmp_path):
    for n in (2**63, 2**64 - 1, 200 * 1024 * 1024):
        with pytest.raises(CheckpointError, match=f"bad header length {n}"):
            SafeTensorsFile(_st(tmp_path / "n.safetensors", "{}", n=n))
    p = _st(tmp_path / "b.safetensors", _hdr(m=_entry('"BOOL"', "[2]", "[0, 2]")), b"\x01\x02")
    with pytest.raises(CheckpointError, match="'m' \\(BOOL\\) holds a byte other than 0 or 1"):
        SafeTensorsFile(p).get("m")
    ok = _st(tmp_path / "ok.safetensors", _hdr(__metadata__="null", m=_entry('"BOOL"', "[2]", "[0, 2]")),
             b"\x01\x00")
    with SafeTensorsFile(ok) as f:
        assert f.metadata == {} and f.get("m").tolist() == [True, False]


# -- 5. convert, and files that are not regular files -------------------------------------------
def test_convert_into_a_missing_directory_fails_before_any_work(base, tmp_path):
    with pytest.raises(ConfigError, match="output directory .*nowhere does not exist"):
        convert(tmp_path / "absent.gguf", tmp_path / "nowhere" / "out.gguf", "q8_0")
    with pytest.raises(ConfigError, match="is a directory; give a file name"):
        convert(base, tmp_path, "q8_0")
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(ConfigError, match="is not a directory"):
        convert(base, tmp_path / "file" / "out.gguf", "q8_0")
    assert main(["convert", str(base), str(tmp_path / "nowhere" / "o.gguf"), "--type", "q8_0"]) == 2
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this OS")
def test_a_fifo_or_directory_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.gguf"
    os.mkfifo(fifo)
    sfifo = tmp_path / "w.safetensors"
    os.mkfifo(sfifo)

    def unblock() -> None:   # were a reader blocked in open(), this lets it go (and fail the test)
        for p in (fifo, sfifo):
            os.close(os.open(p, os.O_RDWR | os.O_NONBLOCK))

    timer = threading.Timer(10.0, unblock)
    timer.start()
    try:
        for fn, path, cls in [(GGUFFile, fifo, GGUFError), (load_llama, fifo, GGUFError),
                              (SafeTensorsFile, sfifo, CheckpointError),
                              (lambda p: convert(p, tmp_path / "o.gguf", "f32"), fifo, GGUFError),
                              (GGUFFile, tmp_path, GGUFError), (SafeTensorsFile, tmp_path, CheckpointError)]:
            with pytest.raises(cls, match=r"is a (FIFO \(named pipe\)|directory), not a regular file") as e:
                fn(path)
            assert str(e.value).startswith(str(path))
        assert timer.is_alive(), "a reader blocked on the FIFO until the timer opened it"
    finally:
        timer.cancel()
    if os.path.exists("/dev/zero"):
        with pytest.raises(GGUFError, match="is a character device"):
            GGUFFile("/dev/zero")



# -- 6. one strict JSON and one regular-file reader for every format ----------------------------
@pytest.mark.parametrize("text,kw,match", [
    ('{"a": 1, "a": 1}', {}, "duplicate key 'a'"),
    ('{"a": {"b": 1, "b": 2}}', {}, "duplicate key 'b'"),
    ("9" * 4301, {}, "an integer of 4301 digits \\(at most 4300\\)"),
    ("-" + "9" * 21, {"max_digits": 20}, "an integer of 21 digits \\(at most 20\\)"),
    ("[" * 100_000 + "]" * 100_000, {}, "JSON nested too deeply"),
    (b'{"\xff": 1}', {}, "not valid JSON: 'utf-8' codec"),
    ("{not json", {}, "not valid JSON: Expecting"),
    ("[1.5]", {"integers_only": True}, "a number with a fraction or exponent"),
    ("[NaN]", {"integers_only": True}, "NaN is not JSON"),
    ("[-Infinity]", {"integers_only": True}, "-Infinity is not JSON"),
])
def test_strict_json_refuses_naming_where(text, kw, match):
    from qorus_core.io import strict_json

    with pytest.raises(DataError, match=f"^somewhere: {match}"):
        strict_json.loads(text, "somewhere", DataError, **kw)


def test_strict_json_accepts_what_the_writers_write():
    from qorus_core.io import strict_json

    doc = {"a": [1, 2.5, None, True, "x"], "b": {"c": -(10 ** 40)}, "nan": float("nan")}
    import json as _json

    back = strict_json.loads(_json.dumps(doc).encode(), "w", DataError)
    assert back["a"] == doc["a"] and back["b"] == doc["b"] and back["nan"] != back["nan"]
    assert strict_json.loads("[" * 50 + "]" * 50, "w", DataError, integers_only=True)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this OS")
def test_read_regular_refuses_a_fifo_a_directory_and_a_huge_file(tmp_path):
    from qorus_core.io.mapped import read_regular

    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    timer = threading.Timer(10.0, lambda: os.close(os.open(fifo, os.O_RDWR | os.O_NONBLOCK)))
    timer.start()
    try:
        with pytest.raises(ConfigError, match=r"config\.toml: is a FIFO \(named pipe\), not a "
                                              "regular file"):
            read_regular(fifo, ConfigError)
        assert timer.is_alive()
    finally:
        timer.cancel()
    with pytest.raises(DataError, match="is a directory, not a regular file"):
        read_regular(tmp_path, DataError)
    with pytest.raises(DataError, match="cannot open: No such file"):
        read_regular(tmp_path / "absent", DataError)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 101)
    with pytest.raises(DataError, match="big: 101 bytes, over the 100"):
        read_regular(big, DataError, max_bytes=100)
    assert read_regular(big, DataError, max_bytes=101) == b"x" * 101


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this OS")
def test_training_configs_are_read_through_the_same_checks(tmp_path):
    from qorus_core.train.config import MAX_CONFIG_BYTES, load_config

    path = tmp_path / "run.toml"
    path.write_text("[model]\ninput_shape = [" + "9" * 5000 + "]\n")
    with pytest.raises(ConfigError, match=r"run\.toml: invalid TOML: .*4300"):
        load_config(path)                        # was a raw ValueError from tomllib
    path.write_bytes(b"# " + b"x" * MAX_CONFIG_BYTES)
    with pytest.raises(ConfigError, match=r"run\.toml: .* bytes, over the"):
        load_config(path)
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(ConfigError, match=r"run\.toml: is a FIFO"):
        load_config(path)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="no /proc/self/fd")
def test_read_metadata_closes_the_file(tmp_path):
    from qorus_core.io.safetensors import read_metadata, save_file

    path = tmp_path / "m.safetensors"
    save_file({"a": np.zeros(3, np.float32)}, path, {"k": "v"})
    assert read_metadata(path) == {"k": "v"}
    held = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
            if os.path.exists(f"/proc/self/fd/{fd}")]
    assert str(path) not in held
