"""safetensors IO: round trip, interop with the reference package, mmap views, bad files."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest

from qorus_core import CheckpointError
from qorus_core.io import safetensors as st


def _tensors():
    rng = np.random.default_rng(0)
    return {
        "w": rng.standard_normal((3, 5)).astype(np.float32),
        "half": rng.standard_normal((7,)).astype(np.float16),
        "ids": np.arange(6, dtype=np.int32).reshape(2, 3),
        "big": np.array([-(2 ** 40), 5], np.int64),
        "bytes": np.arange(5, dtype=np.uint8),
        "f64": np.array([1.5], np.float64),
        "flag": np.array([True, False]),
        "scalar": np.array(2.5, np.float32),
        "empty": np.zeros((0, 4), np.float32),
    }


def test_round_trip_with_metadata(tmp_path):
    path = tmp_path / "a.safetensors"
    data = _tensors()
    st.save_file(data, path, metadata={"format": "pt", "note": "hi"})
    f = st.SafeTensorsFile(path)
    assert f.metadata == {"format": "pt", "note": "hi"}
    assert sorted(f.keys()) == sorted(data)
    for name, a in data.items():
        got = f.get(name)
        assert got.dtype == a.dtype and got.shape == a.shape, name
        np.testing.assert_array_equal(got, a)
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert (8 + n) % 8 == 0                      # data starts 8-byte aligned
    assert st.read_metadata(path)["note"] == "hi"
    assert not list(tmp_path.glob(".*tmp"))     # no temp file left behind


def test_views_are_zero_copy_mmap(tmp_path):
    path = tmp_path / "m.safetensors"
    big = np.arange(1 << 16, dtype=np.float32).reshape(256, 256)
    st.save_file({"big": big, "small": np.ones(3, np.float32)}, path)
    f = st.SafeTensorsFile(path)
    a = f.get("big")
    b = f.get("big")
    assert np.shares_memory(a, b)               # both views of the one mapping
    assert np.shares_memory(a, f._mm)
    assert not a.flags.writeable and not a.flags.owndata
    assert type(a) is np.ndarray
    assert a.ctypes.data % 4 == 0
    np.testing.assert_array_equal(a, big)


def test_interop_reference_package_reads_ours(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    path = tmp_path / "ours.safetensors"
    data = {k: v for k, v in _tensors().items() if k != "flag"}
    st.save_file(data, path, metadata={"k": "v"})
    back = safetensors_numpy.load_file(str(path))
    for name, a in data.items():
        np.testing.assert_array_equal(back[name], a)
        assert back[name].dtype == a.dtype


def test_interop_we_read_reference_files(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    path = tmp_path / "ref.safetensors"
    data = _tensors()
    safetensors_numpy.save_file(data, str(path), metadata={"m": "1"})
    f = st.SafeTensorsFile(path)
    assert f.metadata == {"m": "1"}
    for name, a in data.items():
        np.testing.assert_array_equal(f.get(name), a)


def test_bf16_is_widened(tmp_path):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    path = tmp_path / "bf16.safetensors"
    t = torch.tensor([1.0, -2.5, 3.140625, 1e-3], dtype=torch.bfloat16)
    safetensors_torch.save_file({"t": t}, str(path))
    f = st.SafeTensorsFile(path)
    assert f.dtype("t") == "BF16"
    np.testing.assert_array_equal(f.get("t"), t.float().numpy())
    assert f.get("t", bf16_as_f32=False).dtype == np.uint16


def _write_raw(path, header: dict | bytes, data: bytes = b"", n: int | None = None):
    blob = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob) if n is None else n) + blob + data)
    return path


@pytest.mark.parametrize("header,data,n,match", [
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4, None, "truncated"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, 10 ** 12, "header length"),
    (b"{not json", b"", None, "not valid JSON"),
    (b"[1, 2]", b"", None, "JSON object"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8, None, "overlaps"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4, None, "needs 8"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8, None, "belong to no tensor"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 8, None, "trailing"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}}, b"\0" * 8, None, "data_offsets"),
    ({"a": {"dtype": "Q9", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4, None, "unsupported dtype"),
    ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4, None, "bad shape"),
    ({"a": {"dtype": "F32", "shape": [1]}}, b"\0" * 4, None, "exactly"),
    ({"__metadata__": {"k": 1}}, b"", None, "__metadata__"),
])
def test_corrupt_files_raise_checkpoint_error(tmp_path, header, data, n, match):
    path = _write_raw(tmp_path / "bad.safetensors", header, data, n)
    with pytest.raises(CheckpointError, match=match) as info:
        st.SafeTensorsFile(path)
    assert "bad.safetensors" in str(info.value)


def test_truncated_real_file_and_tiny_files(tmp_path):
    path = tmp_path / "t.safetensors"
    st.save_file(_tensors(), path)
    raw = path.read_bytes()
    for cut in (len(raw) - 1, len(raw) // 2, 20, 7, 0):
        path.write_bytes(raw[:cut])
        with pytest.raises(CheckpointError, match="t.safetensors"):
            st.load_file(path)
    with pytest.raises(CheckpointError, match="cannot open"):
        st.load_file(tmp_path / "missing.safetensors")


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    st.save_file({"a": np.ones(4, np.float32)}, path)

    def boom(fd):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk on fire"):
        st.save_file({"a": np.zeros(4, np.float32)}, path)
    monkeypatch.undo()
    np.testing.assert_array_equal(st.load_file(path)["a"], np.ones(4, np.float32))
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


def test_unstorable_dtype(tmp_path):
    with pytest.raises(CheckpointError, match="complex"):
        st.save_file({"c": np.zeros(2, np.complex64)}, tmp_path / "c.safetensors")


def test_big_endian_input_is_stored_little_endian(tmp_path):
    path = tmp_path / "be.safetensors"
    a = np.arange(4, dtype=">f4")
    st.save_file({"a": a}, path)
    np.testing.assert_array_equal(st.load_file(path)["a"], a.astype("<f4"))
