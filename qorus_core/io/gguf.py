"""The GGUF format (v2, v3): read by mmap (zero-copy views), written atomically.

Layout (little-endian): magic ``GGUF``, uint32 version, uint64 tensor count, uint64 metadata
count; the metadata (``string key, uint32 value type, value``; strings are a uint64 length and
UTF-8 bytes, arrays a uint32 element type, a uint64 count and the elements, arrays of arrays
and of strings included); the tensor infos (``string name, uint32 n_dims, uint64 dims[n_dims],
uint32 ggml type, uint64 offset``); padding to ``general.alignment`` (default 32); the data
section, each tensor at its (aligned) offset from the data start.

GGUF dims are ggml's ``ne``: ``ne[0]`` is the fastest-varying, so the NumPy shape is the dims
reversed. A quantized 2-D tensor with dims ``(K, N)`` is ``N`` rows of ``K`` values: a
``QWeight(bytes, qtype, N, K)`` over the mapped bytes.

Everything is validated before any view is made, and every length field is checked against the
bytes left in the file before it is used, so a corrupt or hostile file raises ``GGUFError``
(naming the file and the cause) and never makes the reader allocate more than the file holds.
Only regular files are opened (a FIFO would block); ``check_unchanged()`` detects a file
truncated or rewritten under the map (``qorus_core.io.mapped`` says what stays inherent).
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import GGUFError
from ..kernels.numpy_qformats import FORMATS
from ..kernels.numpy_quant import QWeight
from .mapped import MappedFile
from .safetensors import write_atomic

__all__ = ["GGML_TYPES", "GGUFError", "GGUFFile", "TensorInfo", "write_gguf"]

MAGIC = b"GGUF"
VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4            # GGML_MAX_DIMS
MAX_NESTING = 4         # arrays of arrays of ...: real files use 2
MAX_NAME = 65535        # bytes of a tensor name (ggml uses 64; be lenient but bounded)

# ggml type number -> (name, values a block, bytes a block); the layouts llama.cpp defines
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2),
}
_TYPE_NUMBERS = {v[0]: k for k, v in GGML_TYPES.items()}
# ggml types a tensor() call returns as a NumPy view
_PLAIN = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "F64": np.dtype("<f8"),
          "I8": np.dtype("i1"), "I16": np.dtype("<i2"), "I32": np.dtype("<i4"),
          "I64": np.dtype("<i8"), "BF16": np.dtype("<u2")}
# the block formats the kernels compute with -> QWeight (numpy_qformats.FORMATS)
_QUANT = {n.upper(): n for n, f in FORMATS.items() if f.block_values > 1}

# metadata value types: number -> (name, struct format or None)
_VT = {0: ("uint8", "<B"), 1: ("int8", "<b"), 2: ("uint16", "<H"), 3: ("int16", "<h"),
       4: ("uint32", "<I"), 5: ("int32", "<i"), 6: ("float32", "<f"), 7: ("bool", "<B"),
       8: ("string", None), 9: ("array", None), 10: ("uint64", "<Q"), 11: ("int64", "<q"),
       12: ("float64", "<d")}
_VT_NP = {0: np.dtype("u1"), 1: np.dtype("i1"), 2: np.dtype("<u2"), 3: np.dtype("<i2"),
          4: np.dtype("<u4"), 5: np.dtype("<i4"), 6: np.dtype("<f4"), 7: np.dtype("u1"),
          10: np.dtype("<u8"), 11: np.dtype("<i8"), 12: np.dtype("<f8")}
_NP_VT = {np.dtype(v).newbyteorder("="): k for k, v in _VT_NP.items() if k != 7}
_NP_VT[np.dtype(bool)] = 7
_STRING, _ARRAY, _BOOL = 8, 9, 7
_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a GGUF file. ``shape`` is NumPy order (``dims`` reversed); ``offset`` is
    relative to the data section, ``data_offset`` absolute in the file."""

    name: str
    dims: tuple[int, ...]
    ggml_type: int
    type_name: str
    offset: int
    data_offset: int
    nbytes: int

    @property
    def shape(self) -> tuple[int, ...]:
        """The NumPy shape: GGUF's dims reversed."""
        return tuple(reversed(self.dims))

    @property
    def n_elements(self) -> int:
        """The number of values the tensor holds."""
        return math.prod(self.dims)


class _Reader:
    """Bounds-checked cursor over the mapped bytes."""

    def __init__(self, buf, size: int, path: Path) -> None:
        self.buf, self.size, self.path, self.pos = buf, size, path, 0

    def fail(self, msg: str) -> GGUFError:
        return GGUFError(f"{self.path}: {msg}")

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise self.fail(f"truncated: {what} needs {n} bytes at offset {self.pos}, the file has "
                            f"{self.size - self.pos} left")

    def u32(self, what: str) -> int:
        self.need(4, what)
        (v,) = _U32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return v

    def u64(self, what: str) -> int:
        self.need(8, what)
        (v,) = _U64.unpack_from(self.buf, self.pos)
        self.pos += 8
        return v

    def string(self, what: str) -> str:
        n = self.u64(f"the length of {what}")
        self.need(n, f"{what} ({n} bytes)")
        raw = self.buf[self.pos:self.pos + n]
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail(f"{what} is not valid UTF-8: {exc.reason} at byte {exc.start}") from None

    def strings(self, n: int, what: str) -> list[str]:
        """n strings in a tight loop (a vocabulary holds ~50k-250k of them)."""
        buf, pos, size, unpack = self.buf, self.pos, self.size, _U64.unpack_from
        out = []
        for i in range(n):
            if pos + 8 > size:
                self.pos = pos
                raise self.fail(f"truncated: the length of {what}[{i}] at offset {pos}")
            (ln,) = unpack(buf, pos)
            end = pos + 8 + ln
            if end > size:
                self.pos = pos
                raise self.fail(f"truncated: {what}[{i}] ({ln} bytes) at offset {pos + 8} runs "
                                f"past the end of the file ({size} bytes)")
            out.append(buf[pos + 8:end])
            pos = end
        self.pos = pos
        try:
            return [b.decode("utf-8") for b in out]
        except UnicodeDecodeError:
            for i, b in enumerate(out):
                try:
                    b.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise self.fail(f"{what}[{i}] is not valid UTF-8: {exc.reason}") from None
            raise

    def value(self, vt: int, what: str, depth: int = 0):
        if vt == _STRING:
            return self.string(what)
        if vt == _ARRAY:
            return self.array(what, depth)
        if vt not in _VT:
            raise self.fail(f"{what}: unknown metadata value type {vt}")
        fmt = _VT[vt][1]
        size = struct.calcsize(fmt)
        self.need(size, what)
        (v,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        if vt == _BOOL:
            if v > 1:
                raise self.fail(f"{what}: bool value {v} is neither 0 nor 1")
            return bool(v)
        return _VT_NP[vt].type(v)   # numpy scalar: keeps the exact type for a round trip

    def array(self, what: str, depth: int):
        if depth >= MAX_NESTING:
            raise self.fail(f"{what}: arrays nested deeper than {MAX_NESTING}")
        et = self.u32(f"the element type of {what}")
        n = self.u64(f"the length of {what}")
        if et not in _VT:
            raise self.fail(f"{what}: unknown array element type {et}")
        if et == _STRING:
            # every string takes at least its 8-byte length: bound n before the loop
            self.need(8 * n, f"{what} ({n} strings)")
            return self.strings(n, what)
        if et == _ARRAY:
            self.need(12 * n, f"{what} ({n} arrays)")
            return [self.array(f"{what}[{i}]", depth + 1) for i in range(n)]
        dt = _VT_NP[et]
        self.need(n * dt.itemsize, f"{what} ({n} x {_VT[et][0]})")
        a = np.frombuffer(self.buf, dt, count=n, offset=self.pos).copy()
        self.pos += n * dt.itemsize
        if et == _BOOL:
            if a.size and a.max() > 1:
                raise self.fail(f"{what}: a bool element is neither 0 nor 1")
            a = a.astype(bool)
        return a.astype(dt.newbyteorder("=")) if et != _BOOL else a


class GGUFFile:
    """An opened, validated GGUF file; tensors are views into one read-only mmap.

    ``metadata``: key -> value (numpy scalars keep their exact GGUF type; strings; bools;
    numeric arrays as NumPy arrays; string and nested arrays as lists). ``tensors``: name ->
    ``TensorInfo`` in file order; ``metadata_types``: key -> GGUF value type number.
    ``tensor(name)``: a zero-copy view (F32, F16, F64, I8..I64;
    BF16 widened to a float32 copy) or a ``QWeight`` (Q4_0, Q4_1, Q8_0); ``raw(name)`` the
    bytes of any tensor. Use as a context manager or call ``close()``."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._buf: np.ndarray | None = None
        self._file = MappedFile(self.path, GGUFError)   # refuses FIFOs, directories, devices
        self._mm = self._file.mm
        try:
            self._parse(self._file.size)
        except BaseException:
            self.close()
            raise
        self._buf = np.frombuffer(self._mm, np.uint8) if self._mm is not None else np.zeros(0, np.uint8)

    def check_unchanged(self) -> None:
        """Raise ``GGUFError`` if the file was truncated or rewritten since it was opened (one
        ``fstat``, no allocation). ``tensor``/``raw`` call it; a model running over the map
        should call it before each forward pass (see ``qorus_core.io.mapped``)."""
        self._file.check_unchanged()

    def _parse(self, size: int) -> None:
        r = _Reader(self._mm if self._mm is not None else b"", size, self.path)
        self.size = size
        r.need(4, "the magic")
        magic = bytes(r.buf[0:4])
        if magic != MAGIC:
            raise r.fail(f"bad magic {magic!r}: not a GGUF file (expected {MAGIC!r})")
        r.pos = 4
        version = r.u32("the version")
        if version not in VERSIONS:
            if version & 0xFFFF == 0 and (version >> 24) in VERSIONS:
                raise r.fail(f"big-endian GGUF (version {version >> 24}) is not supported")
            raise r.fail(f"unsupported GGUF version {version} (supported: {', '.join(map(str, VERSIONS))})")
        self.version = version
        n_tensors = r.u64("the tensor count")
        n_kv = r.u64("the metadata count")
        # each metadata entry takes >= 13 bytes, each tensor info >= 24: reject absurd counts
        if n_kv * 13 > size - r.pos:
            raise r.fail(f"absurd metadata count {n_kv} for a file of {size} bytes")
        if n_tensors * 24 > size - r.pos:
            raise r.fail(f"absurd tensor count {n_tensors} for a file of {size} bytes")

        meta: dict = {}
        self.metadata_types: dict[str, int] = {}
        for i in range(n_kv):
            key = r.string(f"metadata key #{i}")
            if key in meta:
                raise r.fail(f"duplicate metadata key {key!r}")
            vt = r.u32(f"the value type of {key!r}")
            meta[key] = r.value(vt, f"metadata {key!r}")
            self.metadata_types[key] = vt
        self.metadata = meta

        alignment = meta.get("general.alignment", DEFAULT_ALIGNMENT)
        if (isinstance(alignment, bool) or not isinstance(alignment, (np.integer, int))
                or int(alignment) <= 0 or int(alignment) & (int(alignment) - 1)
                or int(alignment) > 1 << 20):
            raise r.fail(f"general.alignment {alignment!r} is not a power of two integer")
        self.alignment = int(alignment)

        infos = []
        names = set()
        for i in range(n_tensors):
            name = r.string(f"the name of tensor #{i}")
            if len(name.encode("utf-8")) > MAX_NAME:
                raise r.fail(f"tensor #{i}: name of {len(name)} characters is too long")
            if name in names:
                raise r.fail(f"duplicate tensor name {name!r}")
            names.add(name)
            nd = r.u32(f"n_dims of tensor {name!r}")
            if nd > MAX_DIMS:
                raise r.fail(f"tensor {name!r}: {nd} dims, more than ggml's {MAX_DIMS}")
            dims = tuple(r.u64(f"dims of tensor {name!r}") for _ in range(nd))
            t = r.u32(f"the type of tensor {name!r}")
            off = r.u64(f"the offset of tensor {name!r}")
            if t not in GGML_TYPES:
                raise r.fail(f"tensor {name!r}: unknown ggml tensor type {t}")
            infos.append((name, dims, t, off))
        self.data_start = -(-r.pos // self.alignment) * self.alignment

        tensors: dict[str, TensorInfo] = {}
        for name, dims, t, off in infos:
            tname, bk, bb = GGML_TYPES[t]
            where = f"tensor {name!r} ({tname}, dims {list(dims)})"
            ne = math.prod(dims)
            if math.prod(max(d, 1) for d in dims) > 1 << 56:   # also with a zero dim: no view
                raise r.fail(f"{where}: absurd dims (more than 2**56 elements)")
            if dims and dims[0] % bk:
                raise r.fail(f"{where}: dims[0]={dims[0]} is not a multiple of the block size {bk}")
            if not dims and bk != 1:
                raise r.fail(f"{where}: a 0-d tensor cannot be block-quantized")
            nbytes = ne // bk * bb
            if off % self.alignment:
                raise r.fail(f"{where}: offset {off} is not a multiple of the alignment {self.alignment}")
            if self.data_start + off + nbytes > size:
                raise r.fail(f"{where}: data at {self.data_start + off}..{self.data_start + off + nbytes} "
                             f"runs past the end of the file ({size} bytes): truncated")
            tensors[name] = TensorInfo(name, dims, t, tname, off, self.data_start + off, nbytes)
        end = 0
        prev = None
        for ti in sorted(tensors.values(), key=lambda ti: (ti.offset, ti.nbytes)):
            if ti.nbytes and ti.offset < end:
                raise r.fail(f"tensor {ti.name!r} at offset {ti.offset} overlaps tensor {prev!r} "
                             f"(which ends at {end})")
            if ti.nbytes:
                end, prev = ti.offset + ti.nbytes, ti.name
        self.tensors = tensors

    # -- access ------------------------------------------------------------------------------
    @property
    def architecture(self) -> str | None:
        """``general.architecture`` (``llama``, ``qwen2``, ...), or None when the file does not say."""
        a = self.metadata.get("general.architecture")
        return a if isinstance(a, str) else None

    def keys(self) -> list[str]:
        """The tensor names, in file order."""
        return list(self.tensors)

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def __iter__(self) -> Iterator[str]:
        return iter(self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)

    def _info(self, name: str) -> TensorInfo:
        if self._buf is None:
            raise GGUFError(f"{self.path}: the file is closed")
        self._file.check_unchanged()
        if name not in self.tensors:
            raise GGUFError(f"{self.path}: no tensor {name!r}; it has {list(self.tensors)[:10]}")
        return self.tensors[name]

    def raw(self, name: str) -> np.ndarray:
        """The tensor's bytes: a read-only uint8 view of the mapped file."""
        ti = self._info(name)
        return self._buf[ti.data_offset:ti.data_offset + ti.nbytes]

    def tensor(self, name: str) -> np.ndarray | QWeight:
        """F32/F16/F64/I8..I64: a read-only zero-copy view in NumPy shape (BF16: a float32
        copy). The block formats (Q4_0, Q8_0, Q4_K, Q6_K, IQ4_NL, ...): a QWeight [N, K] over
        the mapped bytes (K = dims[0], N the product of the other dims). Other ggml types
        (IQ2_XXS, ...): GGUFError naming the type (``raw`` gives their bytes)."""
        ti = self._info(name)
        b = self._buf[ti.data_offset:ti.data_offset + ti.nbytes]
        if ti.type_name in _PLAIN:
            a = b.view(_PLAIN[ti.type_name]).reshape(ti.shape)
            if ti.type_name == "BF16":
                return (a.astype(np.uint32) << 16).view(np.float32)
            return a
        if ti.type_name in _QUANT:
            k = ti.dims[0]
            return QWeight(b, _QUANT[ti.type_name], math.prod(ti.dims[1:]), k)
        raise GGUFError(f"{self.path}: tensor {name!r} has ggml type {ti.type_name}, which Qorus "
                        f"cannot compute with yet (supported: {', '.join([*_PLAIN, *_QUANT])})")

    def close(self) -> None:
        """Drop the map. Views still held elsewhere keep their pages mapped until released."""
        self._buf = None
        self._mm = None
        self._file.close()

    def __enter__(self) -> GGUFFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"GGUFFile({str(self.path)!r}, v{self.version}, arch={self.architecture!r}, "
                f"{len(self.tensors)} tensors, {len(self.metadata)} metadata keys)")


# -- writer --------------------------------------------------------------------------------
def _vtype(v, where: str) -> int:
    if isinstance(v, (bool, np.bool_)):
        return _BOOL
    if isinstance(v, str):
        return _STRING
    if isinstance(v, (np.ndarray, list, tuple)):
        return _ARRAY
    if isinstance(v, np.generic):
        vt = _NP_VT.get(v.dtype.newbyteorder("="))
        if vt is None:
            raise GGUFError(f"{where}: numpy type {v.dtype} has no GGUF value type")
        return vt
    if isinstance(v, int):
        return 5 if -(1 << 31) <= v < 1 << 31 else 11   # int32, else int64 (as gguf-py)
    if isinstance(v, float):
        return 6                                        # float32 (as gguf-py)
    raise GGUFError(f"{where}: cannot store a {type(v).__name__} in GGUF metadata")


def _pack_str(s: str) -> bytes:
    b = s.encode("utf-8")
    return _U64.pack(len(b)) + b


def _pack_value(v, vt: int, where: str, out: list) -> None:
    if vt == _STRING:
        if not isinstance(v, str):
            raise GGUFError(f"{where}: expected a string, got {type(v).__name__}")
        out.append(_pack_str(v))
    elif vt == _ARRAY:
        if isinstance(v, np.ndarray):
            if v.ndim != 1:
                raise GGUFError(f"{where}: metadata arrays must be 1-D, got shape {v.shape}")
            et = _NP_VT.get(v.dtype.newbyteorder("=")) if v.dtype.kind != "U" else _STRING
            if et is None:
                raise GGUFError(f"{where}: numpy dtype {v.dtype} has no GGUF value type")
            if et != _STRING:
                out.append(_U32.pack(et) + _U64.pack(v.size))
                out.append(v.astype(_VT_NP[et]).tobytes())
                return
            v = [str(x) for x in v]
        items = list(v)
        et = _vtype(items[0], f"{where}[0]") if items else _STRING
        if et == 5 and any(_vtype(x, where) == 11 for x in items):
            et = 11                                     # Python ints beyond int32: all int64
        out.append(_U32.pack(et) + _U64.pack(len(items)))
        for i, x in enumerate(items):
            xt = _vtype(x, f"{where}[{i}]")
            if xt != et and not (et in (5, 11) and xt in (5, 11)):
                raise GGUFError(f"{where}: array mixes value types ({_VT[et][0]} and {_VT[xt][0]})")
            _pack_value(x, et, f"{where}[{i}]", out)
    else:
        fmt = _VT[vt][1]
        try:
            out.append(struct.pack(fmt, bool(v) if vt == _BOOL else
                                   (float(v) if vt in (6, 12) else int(v))))
        except (struct.error, TypeError, ValueError) as exc:
            raise GGUFError(f"{where}: cannot store {v!r} as {_VT[vt][0]}: {exc}") from None


def write_gguf(path: str | os.PathLike, metadata: Mapping, tensors: Mapping[str, np.ndarray | QWeight],
               alignment: int | None = None) -> None:
    """Write a GGUF v3 file atomically (temp file, fsync, rename).

    ``metadata``: key -> str, bool, int (int32, or int64 beyond), float (float32), a numpy
    scalar (its exact type), a list (array; of str, numbers, or lists) or a 1-D numpy array.
    ``tensors``: name -> a NumPy array (F32, F16, F64, I8..I64; written in its dtype, shape
    reversed into GGUF dims) or a ``QWeight`` [N, K] (dims (K, N), its bytes as they are)."""
    path = Path(path)
    meta = dict(metadata)
    if alignment is not None:
        meta["general.alignment"] = np.uint32(alignment)
    align = int(meta.get("general.alignment", DEFAULT_ALIGNMENT))
    if align <= 0 or align & (align - 1):
        raise GGUFError(f"{path}: alignment {align} is not a power of two")
    if "general.alignment" in meta:
        meta["general.alignment"] = np.uint32(align)
    head = [MAGIC, _U32.pack(3), _U64.pack(len(tensors)), _U64.pack(len(meta))]
    for key, v in meta.items():
        if not isinstance(key, str):
            raise GGUFError(f"{path}: metadata key {key!r} is not a string")
        where = f"{path}: metadata {key!r}"
        vt = _vtype(v, where)
        head += [_pack_str(key), _U32.pack(vt)]
        _pack_value(v, vt, where, head)
    blobs: list = []
    pos = 0
    for name, t in tensors.items():
        where = f"{path}: tensor {name!r}"
        if isinstance(t, QWeight):
            dims, tnum, data = (t.k, t.n), _TYPE_NUMBERS[t.qtype.upper()], t.a
        else:
            a = np.asarray(t)
            tname = next((k for k, dt in _PLAIN.items()
                          if k != "BF16" and dt == a.dtype.newbyteorder("<")), None)
            if tname is None:
                raise GGUFError(f"{where}: dtype {a.dtype} cannot be stored in GGUF "
                                f"(use float32, float16, or a QWeight)")
            if a.ndim > MAX_DIMS:
                raise GGUFError(f"{where}: {a.ndim} dims, more than ggml's {MAX_DIMS}")
            dims, tnum = tuple(reversed(a.shape)), _TYPE_NUMBERS[tname]
            data = np.ascontiguousarray(a, a.dtype.newbyteorder("<")).reshape(-1).view(np.uint8)
        head += [_pack_str(name), _U32.pack(len(dims))] + [_U64.pack(d) for d in dims]
        head += [_U32.pack(tnum), _U64.pack(pos)]
        pad = -data.nbytes % align
        blobs += [data, b"\0" * pad]
        pos += data.nbytes + pad
    hb = b"".join(head)
    hb += b"\0" * (-len(hb) % align)
    write_atomic(path, [hb, *blobs])
