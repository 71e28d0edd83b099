"""The safetensors format: read by mmap (zero-copy views), written atomically.

Layout: an 8-byte little-endian header length N, N bytes of JSON (``{name: {"dtype", "shape",
"data_offsets": [begin, end]}, "__metadata__": {str: str}}``, space-padded so the data starts
8-byte aligned), then the tensors' bytes; offsets are relative to the data start and must
cover it exactly, without overlap (as the reference implementation requires). Everything is
validated before any view is made; a bad file raises CheckpointError naming it and the cause.
"""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from ..errors import CheckpointError
from . import strict_json
from .mapped import MappedFile

DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # raw bits; ``get(..., bf16_as_f32=True)`` widens them
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_CODES = {np.dtype(v).newbyteorder("<") if v.itemsize > 1 else v: k
          for k, v in DTYPES.items() if k != "BF16"}
MAX_HEADER = 100 * 1024 * 1024   # the reference implementation's limit


def _code(a: np.ndarray, name: str, path: Path) -> str:
    dt = a.dtype.newbyteorder("<") if a.dtype.itemsize > 1 else a.dtype
    code = _CODES.get(dt)
    if code is None:
        raise CheckpointError(f"{path}: tensor {name!r} has dtype {a.dtype}, which safetensors cannot store")
    return code


class SafeTensorsFile:
    """An opened, validated safetensors file; tensors are views into one read-only mmap.
    Only regular files are opened; ``check_unchanged()`` (called by every ``get``) raises if
    the file was truncated or rewritten under the map (see ``qorus_core.io.mapped``)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._file = MappedFile(self.path, CheckpointError)   # refuses FIFOs, directories
        try:
            self._open(self._file.size)
        except BaseException:
            self._file.close()
            raise

    def _open(self, size: int) -> None:
        if size < 8:
            raise CheckpointError(f"{self.path}: truncated: {size} bytes, fewer than the 8-byte "
                                  "header length")
        mm = self._file.mm
        (n,) = struct.unpack_from("<Q", mm, 0)
        if n > MAX_HEADER or 8 + n > size:
            raise CheckpointError(f"{self.path}: bad header length {n} for a file of {size} bytes "
                                  "(truncated or not a safetensors file)")
        header = _parse_header(mm[8:8 + n], self.path)
        meta = header.pop("__metadata__", None)
        meta = {} if meta is None else meta   # null: no metadata, as the reference reads it
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise CheckpointError(f"{self.path}: __metadata__ must map strings to strings")
        self.metadata: dict[str, str] = meta
        self.data_start = 8 + n
        self.entries = _validate(header, size - self.data_start, self.path)
        # a plain ndarray over the read-only map: views of it are zero-copy, never written
        self._mm = np.frombuffer(mm, np.uint8) if size > self.data_start else np.zeros(0, np.uint8)

    def check_unchanged(self) -> None:
        """Raise ``CheckpointError`` if the file was truncated or rewritten since it was
        opened (one ``fstat``, no allocation)."""
        self._file.check_unchanged()

    def close(self) -> None:
        """Drop the map and the descriptor (views still held keep their pages)."""
        self._mm = np.zeros(0, np.uint8)
        self._file.close()

    def __enter__(self) -> SafeTensorsFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def keys(self) -> list[str]:
        """The tensor names, in header order."""
        return list(self.entries)

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, name: str, bf16_as_f32: bool = True) -> np.ndarray:
        """The tensor ``name`` as a read-only view of the mapped file (BF16: a float32 copy,
        unless ``bf16_as_f32=False`` gives the raw uint16 bits)."""
        if name not in self.entries:
            raise CheckpointError(f"{self.path}: no tensor {name!r}; it has {sorted(self.entries)[:10]}")
        code, shape, begin, end = self.entries[name]
        dt = DTYPES[code]
        if begin == end:
            a = np.zeros(shape, dt)
        else:
            self._file.check_unchanged()
            raw = self._mm[self.data_start + begin:self.data_start + end]
            if code == "BOOL" and raw.max() > 1:
                raise CheckpointError(f"{self.path}: tensor {name!r} (BOOL) holds a byte other "
                                      "than 0 or 1")
            a = raw.view(dt).reshape(shape)
        if code == "BF16" and bf16_as_f32:
            return (a.astype(np.uint32) << 16).view(np.float32)
        return a

    def dtype(self, name: str) -> str:
        """The safetensors dtype of tensor ``name`` (``F32``, ``F16``, ``BF16``, ...)."""
        return self.entries[name][0]

    def load(self) -> dict[str, np.ndarray]:
        """Every tensor as a NumPy array (views of the map where the dtype allows)."""
        return {name: self.get(name) for name in self.entries}


MAX_DIGITS = 20         # an offset or a dimension: at most 2**64 - 1
MAX_NDIM = 32           # dims of a tensor (NumPy 1.x's limit)


def _parse_header(raw: bytes, path: Path) -> dict:
    """The JSON header: one object, no duplicate key, integers of at most 20 digits, no
    floats; nesting deeper than the interpreter allows is refused too (a valid header is 3 deep)."""
    header = strict_json.loads(raw, f"{path}: bad header", CheckpointError, integers_only=True,
                               max_digits=MAX_DIGITS)
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: header must be a JSON object, got {type(header).__name__}")
    return header


def _validate(header: dict, data_size: int, path: Path) -> dict[str, tuple[str, tuple[int, ...], int, int]]:
    entries = {}
    for name, info in header.items():
        where = f"{path}: tensor {name!r}"
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise CheckpointError(f"{where}: entry must have exactly dtype, shape, data_offsets; "
                                  f"got {_short(info)}")
        code, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(code, str) or code not in DTYPES:
            raise CheckpointError(f"{where}: field dtype: unsupported dtype {_short(code)}; "
                                  f"supported: {', '.join(DTYPES)}")
        if (not isinstance(shape, list) or len(shape) > MAX_NDIM
                or not all(type(d) is int and 0 <= d < 1 << 63 for d in shape)):
            raise CheckpointError(f"{where}: field shape: bad shape {_short(shape)} (at most "
                                  f"{MAX_NDIM} integers in [0, 2**63))")
        if (not isinstance(offs, list) or len(offs) != 2 or not all(type(o) is int for o in offs)
                or not 0 <= offs[0] <= offs[1]):
            raise CheckpointError(f"{where}: field data_offsets: bad data_offsets {_short(offs)}")
        nbytes = math.prod(shape) * DTYPES[code].itemsize   # exact: Python ints never wrap
        if offs[1] - offs[0] != nbytes:
            raise CheckpointError(f"{where}: field data_offsets: {offs} hold {offs[1] - offs[0]} "
                                  f"bytes, {code}{shape} needs {nbytes}")
        if math.prod(d for d in shape if d) * DTYPES[code].itemsize >= 1 << 63:
            # NumPy refuses such a shape even when a zero dimension leaves it empty
            raise CheckpointError(f"{where}: field shape: {shape} describes more than 2**63 "
                                  "bytes (not counting its zero dimensions)")
        if offs[1] > data_size:
            raise CheckpointError(f"{where}: field data_offsets: {offs} run past the end of the "
                                  f"data ({data_size} bytes): the file is truncated")
        entries[name] = (code, tuple(shape), offs[0], offs[1])
    pos = 0
    for name, (_, _, begin, end) in sorted(entries.items(), key=lambda kv: (kv[1][2], kv[1][3])):
        if begin < pos:
            raise CheckpointError(f"{path}: tensor {name!r} at {[begin, end]} overlaps the previous tensor")
        if begin > pos:
            raise CheckpointError(f"{path}: bytes {pos}..{begin} of the data belong to no tensor")
        pos = end
    if pos != data_size:
        raise CheckpointError(f"{path}: {data_size - pos} trailing bytes after the last tensor")
    return entries


def _short(v: object) -> str:
    """``repr`` of a header value, cut short (a hostile header may hold megabytes)."""
    r = repr(v)
    return r if len(r) <= 80 else r[:77] + "..."


def load_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All tensors of a safetensors file, as zero-copy read-only views (BF16 widened to f32)."""
    return SafeTensorsFile(path).load()


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file (opened, validated and closed again)."""
    with SafeTensorsFile(path) as f:
        return f.metadata


def save_file(tensors: Mapping[str, np.ndarray], path: str | os.PathLike,
              metadata: Mapping[str, str] | None = None) -> None:
    """Write ``tensors`` (name -> array) atomically: a temp file in the same directory,
    fsync, ``os.replace``, fsync of the directory. The previous file survives any failure."""
    path = Path(path)
    arrays = {str(k): np.asarray(v) for k, v in tensors.items()}
    header: dict = {}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise CheckpointError(f"{path}: metadata must map strings to strings")
        header["__metadata__"] = dict(metadata)
    # largest alignment first keeps every tensor naturally aligned (as the reference does)
    order = sorted(arrays, key=lambda k: (-arrays[k].dtype.itemsize, k))
    pos = 0
    for name in order:
        a = arrays[name]
        header[name] = {"dtype": _code(a, name, path), "shape": list(a.shape),
                        "data_offsets": [pos, pos + a.nbytes]}
        pos += a.nbytes
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)
    write_atomic(path, [struct.pack("<Q", len(blob)), blob] + [
        np.ascontiguousarray(arrays[n], arrays[n].dtype.newbyteorder("<")) for n in order])


def write_atomic(path: Path, chunks: list) -> None:
    """Write bytes-like ``chunks`` to ``path`` through a synced temp file and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            for c in chunks:
                if isinstance(c, np.ndarray):
                    if c.size:
                        f.write(memoryview(c.reshape(-1)).cast("B"))
                else:
                    f.write(c)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
