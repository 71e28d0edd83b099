"""IDX files, the format of MNIST and Fashion-MNIST: read (mmap, zero-copy) and write.

Layout (all big-endian): two zero bytes, a data type code, the rank ``n``; then ``n`` uint32
dimensions; then the values in C order. Type codes: 0x08 uint8, 0x09 int8, 0x0B int16,
0x0C int32, 0x0D float32, 0x0E float64. A file may be gzip-compressed (``.gz`` as distributed);
that is detected from its first bytes, not its name.

``read_idx`` returns a read-only array over the file's bytes: a memory map for a plain file
(nothing is read until used), the decompressed buffer for a gzipped one. Multi-byte types keep
their big-endian dtype (still zero-copy); ``load_idx`` converts once to float32 inputs and
int32 labels. Every problem is a DataError naming the file.
"""

from __future__ import annotations

import gzip
import mmap
import os
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError

#: IDX type code -> NumPy dtype (big-endian where it matters).
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder(">") if dt.itemsize > 1 else dt: code for code, dt in IDX_TYPES.items()}
_CODE_LIST = " ".join(f"{c:02x}" for c in IDX_TYPES)
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> memoryview | mmap.mmap | bytes:
    """The file's (decompressed) bytes: an mmap for a plain file, bytes for a gzipped one."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            if head == _GZIP_MAGIC:
                f.seek(0)
                with gzip.GzipFile(fileobj=f) as g:
                    return g.read()
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                return b""
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: corrupt or truncated gzip data: {exc}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read IDX file: {exc.strerror or exc}") from None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The array stored in IDX file ``path`` (plain or gzipped), read-only, without a copy."""
    path = Path(path)
    buf = _read_bytes(path)
    size = len(buf)
    if size < 4:
        raise DataError(f"{path}: truncated IDX file: {size} bytes, the header alone needs 4")
    zero, code, ndim = bytes(buf[0:2]), buf[2], buf[3]
    if zero != b"\x00\x00" or code not in IDX_TYPES or ndim == 0:
        raise DataError(f"{path}: not an IDX file: bad magic {bytes(buf[0:4]).hex()} (expected "
                        f"00 00, a type code in {_CODE_LIST}, a rank >= 1)")
    header = 4 + 4 * ndim
    if size < header:
        raise DataError(f"{path}: truncated IDX file: {size} bytes, the header of a rank-{ndim} "
                        f"array needs {header}")
    dims = tuple(int(d) for d in np.frombuffer(buf, ">u4", ndim, 4))
    dtype = IDX_TYPES[code]
    count = 1
    for d in dims:
        count *= d
    need = header + count * dtype.itemsize
    if size < need:
        raise DataError(f"{path}: truncated IDX file: shape {dims} of {dtype.name} needs {need} "
                        f"bytes, the file has {size}")
    if size > need:
        raise DataError(f"{path}: size mismatch: shape {dims} of {dtype.name} needs {need} bytes, "
                        f"the file has {size} ({size - need} trailing)")
    return np.frombuffer(buf, dtype, count, header).reshape(dims)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (gzip-compressed when ``path`` ends in ``.gz``)."""
    path = Path(path)
    a = np.asarray(array)
    dt = a.dtype.newbyteorder(">") if a.dtype.itemsize > 1 else a.dtype
    if dt not in _CODES:
        raise DataError(f"{path}: IDX cannot store dtype {a.dtype}; it takes uint8, int8, "
                        "int16, int32, float32, float64")
    if a.ndim == 0 or a.ndim > 255:
        raise DataError(f"{path}: IDX stores arrays of rank 1 to 255, got rank {a.ndim}")
    data = (bytes([0, 0, _CODES[dt], a.ndim]) + np.asarray(a.shape, ">u4").tobytes()
            + np.ascontiguousarray(a, dt).tobytes())
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(data)


def load_idx(images: str | os.PathLike, labels: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``(N, ...)`` float32 (raw values: 0..255 for MNIST pixels) and labels ``(N,)``
    int32 from a pair of IDX files, e.g. ``train-images-idx3-ubyte.gz`` and its labels."""
    x, y = read_idx(images), read_idx(labels)
    if y.ndim != 1:
        raise DataError(f"{labels}: labels must be a rank-1 IDX array, got shape {y.shape}")
    if y.dtype.kind not in "iu":
        raise DataError(f"{labels}: labels must be integers, got {y.dtype.name}")
    if len(x) != len(y):
        raise DataError(f"{images}: {len(x)} inputs but {labels}: {len(y)} labels")
    return x.astype(np.float32), y.astype(np.int32)


FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def load_fashion_mnist(directory: str | os.PathLike | None = None, part: str = "train"
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST (Debian package ``dataset-fashion-mnist``): ``part`` "train" (60000) or
    "test" (10000) images ``(N, 28, 28)`` float32 0..255 and labels int32 0..9. Unzipped
    files (the same names without ``.gz``) are used where the gzipped ones are absent."""
    if part not in FASHION_MNIST_FILES:
        raise DataError(f"fashion-mnist: part must be 'train' or 'test', got {part!r}")
    d = Path(directory if directory is not None else FASHION_MNIST_DIR).expanduser()
    paths = []
    for name in FASHION_MNIST_FILES[part]:
        p = d / name
        if not p.exists() and (d / name[:-3]).exists():
            p = d / name[:-3]
        if not p.exists():
            hint = (" (apt-get install dataset-fashion-mnist)" if directory is None else "")
            raise DataError(f"fashion-mnist: {p} not found{hint}")
        paths.append(p)
    return load_idx(*paths)
