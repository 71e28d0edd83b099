"""GGUF reader/writer: round trip, interop with gguf-py, zero-copy, corruption, fuzz."""

from __future__ import annotations

import mmap
import struct
import time

import numpy as np
import pytest
from smollm2 import SMOL, needs_smollm2

from qorus_core.errors import CheckpointError, GGUFError, QorusError
from qorus_core.io.gguf import GGUFFile, write_gguf
from qorus_core.kernels.numpy_quant import QWeight, _quantize_blocks


def _quant(x: np.ndarray, qtype: str) -> QWeight:
    n, k = x.shape
    blocks = _quantize_blocks(qtype, x.reshape(-1, 32).astype(np.float32))
    return QWeight(np.ascontiguousarray(blocks).reshape(-1), qtype, n, k)


def _sample(tmp_path, name="m.gguf", **kw):
    rng = np.random.default_rng(0)
    meta = {
        "general.architecture": "llama", "general.name": "tiny", "llama.block_count": np.uint32(2),
        "llama.rope.freq_base": np.float32(10000.0), "x.i64": np.int64(-(1 << 40)),
        "x.f64": np.float64(1.5), "x.u8": np.uint8(7), "x.i8": np.int8(-3), "x.u16": np.uint16(9),
        "x.i16": np.int16(-9), "x.u64": np.uint64(1 << 63), "x.bool": True, "x.int": 5,
        "tokenizer.ggml.tokens": ["<s>", "a", "é", "🙂", ""],
        "tokenizer.ggml.scores": np.arange(5, dtype=np.float32),
        "x.nested": [["a", "b"], ["c"]], "x.bools": np.array([True, False]),
    }
    tensors = {
        "w32": rng.standard_normal((3, 5)).astype(np.float32),
        "w16": rng.standard_normal((4, 2, 3)).astype(np.float16),
        "ids": np.arange(6, dtype=np.int32),
        "q8": _quant(rng.standard_normal((3, 64)).astype(np.float32), "q8_0"),
        "q40": _quant(rng.standard_normal((2, 32)).astype(np.float32), "q4_0"),
        "q41": _quant(rng.standard_normal((2, 96)).astype(np.float32), "q4_1"),
    }
    p = tmp_path / name
    write_gguf(p, meta, tensors, **kw)
    return p, meta, tensors


def _base_is_mmap(a) -> bool:
    while isinstance(a, np.ndarray):
        a = a.base
    if isinstance(a, memoryview):
        a = a.obj
    return isinstance(a, mmap.mmap)


def test_round_trip(tmp_path):
    p, meta, tensors = _sample(tmp_path)
    with GGUFFile(p) as f:
        assert f.version == 3 and f.architecture == "llama" and f.alignment == 32
        assert f.metadata["llama.block_count"] == 2
        assert type(f.metadata["llama.block_count"]) is np.uint32
        assert type(f.metadata["x.i64"]) is np.int64 and f.metadata["x.i64"] == -(1 << 40)
        assert f.metadata["x.u64"] == 1 << 63 and f.metadata["x.bool"] is True
        assert type(f.metadata["x.int"]) is np.int32
        assert f.metadata["tokenizer.ggml.tokens"] == meta["tokenizer.ggml.tokens"]
        np.testing.assert_array_equal(f.metadata["tokenizer.ggml.scores"], np.arange(5))
        assert f.metadata["x.nested"] == [["a", "b"], ["c"]]
        assert f.metadata["x.bools"].tolist() == [True, False]
        assert list(f.tensors) == list(tensors)
        for name in ("w32", "w16", "ids"):
            a = f.tensor(name)
            assert a.dtype == tensors[name].dtype and a.shape == tensors[name].shape
            np.testing.assert_array_equal(a, tensors[name])
            assert not a.flags.writeable and _base_is_mmap(a)
            assert f.tensors[name].dims == tuple(reversed(tensors[name].shape))
        for name in ("q8", "q40", "q41"):
            q = f.tensor(name)
            assert isinstance(q, QWeight) and q.shape == tensors[name].shape
            assert q.qtype == tensors[name].qtype
            np.testing.assert_array_equal(q.a, tensors[name].a)
            assert _base_is_mmap(q.a) and f.tensors[name].data_offset % 32 == 0
        assert f.tensors["q41"].type_name == "Q4_1" and f.tensors["q41"].dims == (96, 2)
    with pytest.raises(GGUFError, match="closed"):
        f.tensor("w32")
    np.testing.assert_array_equal(a, tensors["ids"])      # views outlive close(): still mapped
    with GGUFFile(p) as g:
        assert g.metadata["x.int"] == 5
    assert g._mm is None                                    # no views held: the map is closed


def test_alignment_and_rewrite(tmp_path):
    p, _, tensors = _sample(tmp_path, alignment=64)
    f = GGUFFile(p)
    assert f.alignment == 64 and all(t.data_offset % 64 == 0 for t in f.tensors.values())
    # a read file's metadata and tensors can be written back unchanged (what convert does)
    p2 = tmp_path / "copy.gguf"
    write_gguf(p2, f.metadata, {n: f.tensor(n) for n in f.tensors})
    assert p2.read_bytes() == p.read_bytes()


def test_gguf_py_reads_ours(tmp_path):
    gguf = pytest.importorskip("gguf")
    p, meta, tensors = _sample(tmp_path)
    r = gguf.GGUFReader(p)
    assert r.fields["general.architecture"].contents() == "llama"
    assert r.fields["tokenizer.ggml.tokens"].contents() == meta["tokenizer.ggml.tokens"]
    assert r.fields["llama.block_count"].types == [gguf.GGUFValueType.UINT32]
    by = {t.name: t for t in r.tensors}
    np.testing.assert_array_equal(by["w32"].data.reshape(3, 5), tensors["w32"])
    np.testing.assert_array_equal(by["w16"].data.reshape(4, 2, 3), tensors["w16"])
    for name, qt in (("q8", "Q8_0"), ("q40", "Q4_0"), ("q41", "Q4_1")):
        t = by[name]
        assert t.tensor_type == gguf.GGMLQuantizationType[qt]
        assert list(t.shape) == [tensors[name].k, tensors[name].n]
        np.testing.assert_array_equal(np.asarray(t.data).reshape(-1), tensors[name].a)


def test_reads_gguf_py_files(tmp_path):
    gguf = pytest.importorskip("gguf")
    Q = gguf.GGMLQuantizationType
    rng = np.random.default_rng(1)
    p = tmp_path / "ref.gguf"
    w = gguf.GGUFWriter(p, "llama")
    w.add_uint32("llama.context_length", 128)
    w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    w.add_bool("x.b", True)
    w.add_string("tokenizer.chat_template", "{{ messages }}")
    w.add_array("tokenizer.ggml.tokens", ["<s>", "hello", " wörld"])
    w.add_array("tokenizer.ggml.token_type", [1, 1, 1])
    data = {"f32": rng.standard_normal((4, 64)).astype(np.float32),
            "f16": rng.standard_normal((2, 3, 32)).astype(np.float16)}
    w.add_tensor("f32", data["f32"])
    w.add_tensor("f16", data["f16"])
    quants = {}
    for qt in ("Q8_0", "Q4_0", "Q4_1"):
        x = rng.standard_normal((5, 64)).astype(np.float32)
        quants[qt] = gguf.quants.quantize(x, Q[qt])
        w.add_tensor(qt.lower(), quants[qt], raw_dtype=Q[qt])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with GGUFFile(p) as f:
        assert f.architecture == "llama" and f.metadata["llama.context_length"] == 128
        assert f.metadata["x.b"] is True
        assert f.metadata["tokenizer.ggml.tokens"] == ["<s>", "hello", " wörld"]
        assert f.metadata["tokenizer.chat_template"] == "{{ messages }}"
        assert f.metadata["tokenizer.ggml.token_type"].tolist() == [1, 1, 1]
        for n, a in data.items():
            np.testing.assert_array_equal(f.tensor(n), a)
            assert np.shares_memory(f.tensor(n), f.raw(n))
        for qt, ref in quants.items():
            q = f.tensor(qt.lower())
            assert isinstance(q, QWeight) and q.shape == (5, 64) and q.qtype == qt.lower()
            np.testing.assert_array_equal(q.a, ref.reshape(-1))
            np.testing.assert_array_equal(gguf.quants.dequantize(q.a.reshape(5, -1), Q[qt]),
                                          gguf.quants.dequantize(ref, Q[qt]))


# -- corruption ------------------------------------------------------------------------------
def _hdr(version=3, n_t=0, n_kv=0):
    return b"GGUF" + struct.pack("<IQQ", version, n_t, n_kv)


def _s(x: bytes) -> bytes:
    return struct.pack("<Q", len(x)) + x


def _tinfo(name, dims, t, off):
    return _s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims) + \
        struct.pack("<IQ", t, off)


def _pad(b: bytes, a=32) -> bytes:
    return b + b"\0" * (-len(b) % a)


CASES = {
    "empty": (b"", "truncated"),
    "bad magic": (b"GGML" + b"\0" * 20, "bad magic"),
    "version 1": (_hdr(1), "unsupported GGUF version 1"),
    "big-endian": (b"GGUF" + struct.pack(">IQQ", 3, 0, 0), "big-endian"),
    "short header": (_hdr()[:10], "truncated"),
    "absurd kv count": (_hdr(n_kv=1 << 60), "absurd metadata count"),
    "absurd tensor count": (_hdr(n_t=1 << 62), "absurd tensor count"),
    "huge key length": (_hdr(n_kv=1) + struct.pack("<Q", 1 << 62) + b"\0" * 8, "truncated"),
    "unknown value type": (_hdr(n_kv=1) + _s(b"k") + struct.pack("<I", 13) + b"\0" * 8,
                           "unknown metadata value type 13"),
    "huge array": (_hdr(n_kv=1) + _s(b"k") + struct.pack("<IIQ", 9, 8, 1 << 61) + b"\0" * 8,
                   "truncated"),
    "unknown array type": (_hdr(n_kv=1) + _s(b"k") + struct.pack("<IIQ", 9, 99, 1), "unknown array"),
    "bad utf8": (_hdr(n_kv=1) + _s(b"k") + struct.pack("<I", 8) + _s(b"\xff\xfe"), "UTF-8"),
    "bad bool": (_hdr(n_kv=1) + _s(b"k") + struct.pack("<IB", 7, 2), "bool"),
    "duplicate key": (_hdr(n_kv=2) + (_s(b"k") + struct.pack("<IB", 0, 1)) * 2, "duplicate metadata"),
    "deep nesting": (_hdr(n_kv=1) + _s(b"k") + struct.pack("<IQ", 9, 9) * 0
                     + struct.pack("<I", 9) + struct.pack("<IQ", 9, 1) * 6 + b"\0" * 32, "nested"),
    "bad alignment": (_hdr(n_kv=1) + _s(b"general.alignment") + struct.pack("<II", 4, 24), "alignment"),
    "unknown tensor type": (_pad(_hdr(n_t=1) + _tinfo(b"tok_embd", [32], 77, 0)) + b"\0" * 128,
                            "'tok_embd'.*unknown ggml tensor type 77"),
    "too many dims": (_pad(_hdr(n_t=1) + _tinfo(b"t", [1] * 5, 0, 0)), "dims"),
    "data beyond EOF": (_pad(_hdr(n_t=1) + _tinfo(b"t", [64], 0, 0)) + b"\0" * 100, "past the end"),
    "absurd dims": (_pad(_hdr(n_t=1) + _tinfo(b"t", [0, 1 << 62, 1 << 40], 0, 0)), "absurd dims"),
    "misaligned": (_pad(_hdr(n_t=1) + _tinfo(b"t", [4], 0, 4)) + b"\0" * 64, "not a multiple of the align"),
    "partial block": (_pad(_hdr(n_t=1) + _tinfo(b"t", [16], 8, 0)) + b"\0" * 64, "block size"),
    "overlap": (_pad(_hdr(n_t=2) + _tinfo(b"a", [16], 0, 0) + _tinfo(b"b", [16], 0, 32)) + b"\0" * 128,
                "overlaps"),
    "duplicate tensor": (_pad(_hdr(n_t=2) + _tinfo(b"a", [1], 0, 0) + _tinfo(b"a", [1], 0, 32))
                         + b"\0" * 64, "duplicate tensor"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_corrupt(tmp_path, case):
    data, msg = CASES[case]
    p = tmp_path / "bad.gguf"
    p.write_bytes(data)
    with pytest.raises(GGUFError, match=msg) as ei:
        GGUFFile(p)
    assert str(p) in str(ei.value)
    assert isinstance(ei.value, CheckpointError) and isinstance(ei.value, QorusError)


def test_truncated_everywhere(tmp_path):
    p, _, _ = _sample(tmp_path)
    data = p.read_bytes()
    q = tmp_path / "t.gguf"
    for n in list(range(0, 200)) + list(range(200, len(data), 37)):
        q.write_bytes(data[:n])
        with pytest.raises(GGUFError):
            GGUFFile(q)


def test_missing_file_and_unsupported_type(tmp_path):
    with pytest.raises(GGUFError, match="cannot open"):
        GGUFFile(tmp_path / "nope.gguf")
    p = tmp_path / "k.gguf"
    p.write_bytes(_pad(_hdr(n_t=2) + _tinfo(b"qk", [256], 12, 0) + _tinfo(b"iq", [256], 16, 160))
                  + b"\0" * (160 + 66))
    f = GGUFFile(p)
    assert f.tensors["qk"].type_name == "Q4_K" and f.raw("qk").nbytes == 144
    assert f.tensor("qk").qtype == "q4_k" and f.tensor("qk").shape == (1, 256)
    assert f.tensors["iq"].type_name == "IQ2_XXS" and f.raw("iq").nbytes == 66
    with pytest.raises(GGUFError, match="ggml type IQ2_XXS, which Qorus cannot compute with"):
        f.tensor("iq")
    with pytest.raises(GGUFError, match="no tensor"):
        f.tensor("missing")


def test_writer_errors_keep_the_old_file(tmp_path):
    p, _, _ = _sample(tmp_path)
    before = p.read_bytes()
    with pytest.raises(GGUFError, match="cannot store"):
        write_gguf(p, {"k": object()}, {})
    with pytest.raises(GGUFError, match="dtype complex64"):
        write_gguf(p, {}, {"t": np.zeros(2, np.complex64)})
    with pytest.raises(GGUFError, match="mixes"):
        write_gguf(p, {"k": ["a", 1]}, {})
    assert p.read_bytes() == before and [x.name for x in tmp_path.iterdir()] == [p.name]
    write_gguf(p, {"big": [1, 1 << 40], "empty": [], "e": np.zeros(0, np.float32)}, {"s": np.float32(2)})
    f = GGUFFile(p)
    assert f.metadata["big"].dtype == np.int64 and f.metadata["big"].tolist() == [1, 1 << 40]
    assert f.metadata["empty"] == [] and f.metadata["e"].dtype == np.float32
    assert f.tensor("s").shape == () and f.tensor("s") == 2


def _read_all(path) -> None:
    with GGUFFile(path) as f:
        _ = f.architecture, dict(f.metadata)
        for n in f.tensors:
            try:
                f.tensor(n)
            except GGUFError:
                f.raw(n)


def test_fuzz(tmp_path):
    p, _, _ = _sample(tmp_path)
    base = bytearray(p.read_bytes())
    rng = np.random.default_rng(1234)
    q = tmp_path / "fuzz.gguf"
    t0 = time.perf_counter()
    outcomes = {"ok": 0, "err": 0}
    for _ in range(400):
        b = bytearray(base)
        for _ in range(int(rng.integers(1, 4))):
            kind = int(rng.integers(0, 6))
            i = int(rng.integers(0, len(b))) if b else 0
            if kind == 0 and b:                        # flip bits of a byte
                b[i] ^= int(rng.integers(1, 256))
            elif kind == 1:                            # truncate
                del b[i:]
            elif kind == 2:                            # insert bytes
                b[i:i] = rng.integers(0, 256, int(rng.integers(1, 16)), dtype=np.uint8).tobytes()
            elif kind == 3:                            # delete bytes
                del b[i:i + int(rng.integers(1, 16))]
            elif kind == 4 and len(b) >= 8:            # a huge or random length field
                j = min(i, len(b) - 8)
                v = [1 << 63, (1 << 64) - 1, 1 << 32, int(rng.integers(0, 1 << 40))][int(rng.integers(0, 4))]
                b[j:j + 8] = struct.pack("<Q", v)
            elif kind == 5 and len(b) >= 4:            # a random 32-bit field (types, versions)
                j = min(i, len(b) - 4)
                b[j:j + 4] = struct.pack("<I", int(rng.integers(0, 40)))
        q.write_bytes(bytes(b))
        try:
            _read_all(q)
            outcomes["ok"] += 1
        except GGUFError:
            outcomes["err"] += 1
    assert time.perf_counter() - t0 < 10
    assert outcomes["err"] > 100


@needs_smollm2
def test_smollm2():
    t0 = time.perf_counter()
    with GGUFFile(SMOL) as f:
        ms = (time.perf_counter() - t0) * 1e3
        assert f.architecture == "llama" and len(f.tensors) == 272
        assert f.metadata["llama.attention.head_count_kv"] == 3
        assert len(f.metadata["tokenizer.ggml.tokens"]) == 49152
        emb = f.tensor("token_embd.weight")
        assert isinstance(emb, QWeight) and emb.shape == (49152, 576) and _base_is_mmap(emb.a)
        for n in f.tensors:
            f.tensor(n)
    print(f"SmolLM2 GGUF opened in {ms:.1f} ms")
