"""``qorus convert IN OUT --type q4_0|q4_1|q8_0|f16|f32``: safetensors or GGUF in, GGUF out.

Every 2-D tensor whose rows split into blocks of 32 is stored as the target type (quantized
bit-exactly like the ``gguf`` package's reference quantizers); other tensors (norm vectors,
biases, odd widths) stay float32, as llama.cpp's converter does. Metadata is kept: GGUF keys as
they are (``general.file_type`` updated), safetensors ``__metadata__`` strings as
``safetensors.<key>``. The output is written atomically.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from ..errors import CheckpointError, ConfigError
from ..kernels import get_kernels
from ..kernels.numpy_quant import QWeight, to_float32
from ..tensor import Tensor
from .gguf import GGUFFile, write_gguf
from .safetensors import SafeTensorsFile

TYPES = ("q4_0", "q4_1", "q8_0", "f16", "f32")
FILE_TYPE = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7}   # llama.cpp's LLAMA_FTYPE_*


def _as_f32(w, kernels) -> np.ndarray:
    return to_float32(w, kernels) if isinstance(w, QWeight) else np.asarray(w, dtype=np.float32)


def _convert_tensor(a: np.ndarray, qtype: str, kernels) -> np.ndarray | QWeight:
    if a.ndim != 2 or qtype == "f32" or (qtype != "f16" and a.shape[1] % 32):
        return np.ascontiguousarray(a, dtype=np.float32)
    out = QWeight.empty(qtype, a.shape[0], a.shape[1])
    kernels.quantize(Tensor(np.ascontiguousarray(a, dtype=np.float32)), out, qtype)
    return out


def convert(src: str | os.PathLike, dst: str | os.PathLike, qtype: str, kernels=None,
            echo=None) -> dict[str, int]:
    """Convert ``src`` (.gguf or .safetensors) to a GGUF of ``qtype``; returns counts."""
    qtype = qtype.lower()
    if qtype not in TYPES:
        raise ConfigError(f"convert: --type {qtype!r}; expected one of {', '.join(TYPES)}")
    k = get_kernels(kernels)
    src, dst = Path(src), Path(dst)
    _check_output(dst)
    if src.resolve() == dst.resolve():
        raise ConfigError(f"convert: {src} would overwrite itself; choose another output")
    tensors: dict[str, np.ndarray | QWeight] = {}
    if src.suffix == ".safetensors":
        f: SafeTensorsFile | GGUFFile = SafeTensorsFile(src)   # only regular files are opened
        meta: dict = {f"safetensors.{key}": v for key, v in f.metadata.items()}
        get = f.get
    else:
        f = GGUFFile(src)
        meta = {key: v for key, v in f.metadata.items() if key != "general.alignment"}
        get = f.tensor
    counts = {"quantized": 0, "float32": 0}
    try:
        for name in f.keys():
            out = _convert_tensor(_as_f32(get(name), k), qtype, k)
            tensors[name] = out
            counts["quantized" if isinstance(out, QWeight) else "float32"] += 1
            if echo is not None:
                echo(f"{name}: {out.qtype if isinstance(out, QWeight) else 'f32'}")
        meta["general.file_type"] = np.uint32(FILE_TYPE[qtype])
        meta["general.quantization_version"] = np.uint32(2)
        try:
            write_gguf(dst, meta, tensors)
        except OSError as exc:     # ENOSPC, a read-only file system: the old output survives
            raise CheckpointError(f"convert: cannot write {dst}: {exc.strerror or exc}") from None
    finally:
        f.close()
    return counts


def _check_output(dst: Path) -> None:
    """The output's directory exists and is writable, and the output is not a directory:
    checked before any tensor is read."""
    parent = dst.parent
    if not parent.is_dir():
        raise ConfigError(f"convert: the output directory {parent} does not exist"
                          if not parent.exists() else f"convert: {parent} is not a directory")
    if dst.is_dir():
        raise ConfigError(f"convert: the output {dst} is a directory; give a file name")
    if dst.exists() and not dst.is_file():
        raise ConfigError(f"convert: the output {dst} exists and is not a regular file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"convert: the output directory {parent} is not writable")


def _setup(p) -> None:
    p.add_argument("input", help="a .gguf or .safetensors file")
    p.add_argument("output", help="the GGUF file to write")
    p.add_argument("--type", required=True, choices=TYPES, help="storage type of 2-D weights")
    p.add_argument("--verbose", action="store_true", help="print each tensor's type")


def _run(args) -> int:
    counts = convert(args.input, args.output, args.type,
                     echo=(lambda s: print(s, file=sys.stderr)) if args.verbose else None)
    size = Path(args.output).stat().st_size
    print(f"wrote {args.output}: {counts['quantized']} tensors as {args.type}, "
          f"{counts['float32']} as f32, {size / 1e6:.1f} MB")
    return 0
