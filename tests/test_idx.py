"""IDX files (MNIST's format): round trips plain and gzipped, zero-copy reads, corrupt files,
the ``idx:`` and ``fashion-mnist`` data sources, and ``qorus train`` on IDX data."""

from __future__ import annotations

import gzip
import mmap
import textwrap
from pathlib import Path

import numpy as np
import pytest

from qorus_core.errors import ConfigError, DataError
from qorus_core.io.datasets import load_source
from qorus_core.io.idx import FASHION_MNIST_DIR, load_fashion_mnist, load_idx, read_idx, write_idx

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, size=(7, 4, 3)).astype(np.uint8)
LABELS = RNG.integers(0, 10, size=7).astype(np.uint8)


def idx_bytes(code: int, shape: tuple[int, ...], payload: bytes) -> bytes:
    return bytes([0, 0, code, len(shape)]) + np.asarray(shape, ">u4").tobytes() + payload


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_round_trip(tmp_path, suffix, dtype):
    a = (RNG.standard_normal((3, 5, 2)) * 100).astype(dtype)
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, a)
    b = read_idx(path)
    assert b.shape == a.shape and b.dtype.kind == np.dtype(dtype).kind
    np.testing.assert_array_equal(b, a)
    assert not b.flags.writeable


def test_file_layout_is_big_endian_mnist(tmp_path):
    path = tmp_path / "labels-idx1-ubyte"
    write_idx(path, np.array([1, 2, 3], np.int32))
    assert path.read_bytes() == idx_bytes(0x0C, (3,), b"\0\0\0\1\0\0\0\2\0\0\0\3")
    gz = tmp_path / "labels-idx1-ubyte.gz"
    write_idx(gz, np.array([1, 2, 3], np.int32))
    assert gzip.decompress(gz.read_bytes()) == path.read_bytes()


def test_plain_file_is_memory_mapped(tmp_path):
    path = tmp_path / "images-idx3-ubyte"
    write_idx(path, IMAGES)
    a = read_idx(path)
    base = a
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    assert isinstance(base, mmap.mmap)                # no copy of the file was made


def test_gzip_is_detected_from_content_not_name(tmp_path):
    path = tmp_path / "no-suffix"
    path.write_bytes(gzip.compress(idx_bytes(0x08, (2, 2), bytes([1, 2, 3, 4]))))
    np.testing.assert_array_equal(read_idx(path), [[1, 2], [3, 4]])


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_load_idx_pair_and_source(tmp_path, suffix):
    write_idx(tmp_path / f"img{suffix}", IMAGES)
    write_idx(tmp_path / f"lab{suffix}", LABELS)
    x, y = load_idx(tmp_path / f"img{suffix}", tmp_path / f"lab{suffix}")
    assert (x.dtype, y.dtype, x.shape, y.shape) == (np.float32, np.int32, (7, 4, 3), (7,))
    np.testing.assert_array_equal(x, IMAGES.astype(np.float32))
    np.testing.assert_array_equal(y, LABELS)
    x2, y2 = load_source(f"idx:img{suffix},lab{suffix}", base=tmp_path)   # relative to base
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(y2, y)


def corrupt_cases() -> dict[str, tuple[bytes, str]]:
    good = idx_bytes(0x08, (2, 3), bytes(range(6)))
    return {
        "empty": (b"", "truncated IDX file: 0 bytes"),
        "short header": (b"\0\0", "truncated IDX file: 2 bytes"),
        "bad magic": (b"\1\2" + good[2:], "bad magic 01020802"),
        "unknown type": (b"\0\0\x07\x02" + good[4:], "not an IDX file"),
        "rank 0": (b"\0\0\x08\x00", "not an IDX file"),
        "truncated dims": (good[:8], "header of a rank-2 array needs 12"),
        "truncated data": (good[:-1], "truncated IDX file: shape (2, 3) of uint8 needs 18 bytes, "
                                      "the file has 17"),
        "trailing bytes": (good + b"\0\0", "size mismatch: shape (2, 3) of uint8 needs 18 bytes, "
                                           "the file has 20 (2 trailing)"),
    }


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("case", list(corrupt_cases()))
def test_corrupt_files_are_data_errors_naming_the_file(tmp_path, case, gz):
    data, message = corrupt_cases()[case]
    path = tmp_path / f"bad-{case.replace(' ', '-')}"
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(DataError, match="bad-") as info:
        read_idx(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_truncated_gzip_stream_and_missing_file(tmp_path):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(idx_bytes(0x08, (64,), bytes(64)))[:-12])
    with pytest.raises(DataError, match=r"cut\.gz: corrupt or truncated gzip"):
        read_idx(path)
    with pytest.raises(DataError, match="nope: cannot read IDX file"):
        read_idx(tmp_path / "nope")


def test_pairs_that_do_not_fit(tmp_path):
    write_idx(tmp_path / "img", IMAGES)
    write_idx(tmp_path / "lab5", LABELS[:5])
    write_idx(tmp_path / "lab2d", LABELS.reshape(7, 1))
    write_idx(tmp_path / "labf", LABELS.astype(np.float32))
    with pytest.raises(DataError, match="7 inputs but .*lab5: 5 labels"):
        load_idx(tmp_path / "img", tmp_path / "lab5")
    with pytest.raises(DataError, match="lab2d: labels must be a rank-1"):
        load_idx(tmp_path / "img", tmp_path / "lab2d")
    with pytest.raises(DataError, match="labf: labels must be integers"):
        load_idx(tmp_path / "img", tmp_path / "labf")
    with pytest.raises(DataError, match="IDX cannot store dtype bool"):
        write_idx(tmp_path / "b", np.zeros(3, bool))


@pytest.mark.parametrize("source", ["idx:only-one", "idx:a,b,c", "idx:a,", "nope:x"])
def test_bad_sources(source):
    with pytest.raises(DataError, match="expected"):
        load_source(source)


def fake_fashion(directory: Path, n_train: int = 40, n_test: int = 10) -> None:
    """Files named like Fashion-MNIST's (tiny): gzipped train, plain (unzipped) test."""
    rng = np.random.default_rng(1)
    for part, n, suffix in (("train", n_train, ".gz"), ("t10k", n_test, "")):
        y = rng.integers(0, 2, size=n).astype(np.uint8)
        x = np.zeros((n, 4, 4), np.uint8)
        x[y == 1, :2] = 200                        # an easy task: the top half lights up
        x += rng.integers(0, 40, size=x.shape).astype(np.uint8)
        write_idx(directory / f"{part}-images-idx3-ubyte{suffix}", x)
        write_idx(directory / f"{part}-labels-idx1-ubyte{suffix}", y)


def test_fashion_mnist_source_from_a_directory(tmp_path):
    fake_fashion(tmp_path)
    x, y = load_source(f"fashion-mnist:{tmp_path}")
    assert x.shape == (40, 4, 4) and y.shape == (40,)
    xt, yt = load_source("fashion-mnist-test:.", base=tmp_path)
    assert xt.shape == (10, 4, 4)
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz not found"):
        load_fashion_mnist(tmp_path / "empty", "test")
    with pytest.raises(DataError, match="takes no options"):
        load_source("fashion-mnist", label_column=1)


def test_qorus_train_on_idx_data_with_a_test_source(tmp_path):
    from qorus_core.train.config import load_config, load_data, run_training

    fake_fashion(tmp_path, n_train=64, n_test=16)
    cfg = tmp_path / "fm.toml"
    cfg.write_text(textwrap.dedent(f"""\
        [model]
        input_shape = [16]
        layers = [{{type = "mlp.Linear", out_features = 8}}, {{type = "mlp.ReLU"}},
                  {{type = "mlp.Linear", out_features = 2}}]
        [data]
        source = "fashion-mnist:{tmp_path}"
        test_source = "fashion-mnist-test:{tmp_path}"
        validation = 0.25
        scale = 0.00392156862745098
        [loss]
        type = "CrossEntropy"
        [optimizer]
        type = "AdamW"
        lr = 0.01
        [train]
        epochs = 10
        batch_size = 16
        """))
    (xt, yt), (xv, yv), (xs, ys) = load_data(load_config(cfg))
    assert (xt.shape, xv.shape, xs.shape) == ((48, 16), (16, 16), (16, 16))   # 4x4 -> [16]
    assert float(xt.max()) <= 1.0
    metrics = run_training(cfg, tmp_path / "run", progress=False)
    assert metrics["samples"] == {"train": 48, "validation": 16, "test": 16}
    assert metrics["test"]["accuracy"] >= 0.9

    bad = tmp_path / "both.toml"
    bad.write_text(cfg.read_text().replace("validation = 0.25", "test = 0.25"))
    with pytest.raises(ConfigError, match="test_source .* replaces the test fraction"):
        load_config(bad)


@pytest.mark.skipif(not (Path(FASHION_MNIST_DIR) / "t10k-labels-idx1-ubyte.gz").exists(),
                    reason="dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_test_files():
    x, y = load_fashion_mnist(part="test")
    assert x.shape == (10000, 28, 28) and y.shape == (10000,)
    assert np.bincount(y).tolist() == [1000] * 10 and 0 <= x.min() and x.max() <= 255
