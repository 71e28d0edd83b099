"""``qorus convert IN OUT --type q8_0|q4_0|q4_1|q5_0|q5_1|f16|bf16|f32``: safetensors, GGUF (of
any weight format the kernels read: K-quant mixes included) or a model directory in, GGUF out.

Every 2-D tensor whose rows split into blocks of 32 is stored as the target type (quantized
bit-exactly like the ``gguf`` package's reference quantizers: the types it can write); other
tensors (norm vectors,
biases, odd widths) stay float32, as llama.cpp's converter does, and so do the tensors it
always keeps float32 (``*_norm.weight``, ``position_embd.weight``, ``token_types.weight``).
Metadata is kept: GGUF keys as they are (``general.file_type`` updated), safetensors
``__metadata__`` strings as ``safetensors.<key>``. A directory (a Hugging Face model) is read
by the plugin that recognizes it, through the ``qorus_convert`` hook (the llm plugin reads
Hugging Face decoders): core imports no plugin. The output is written atomically.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError, ConfigError
from ..kernels import get_kernels
from ..kernels.numpy_qformats import FORMATS
from ..kernels.numpy_quant import QWeight, to_float32
from ..tensor import Tensor
from .gguf import GGUFFile, write_gguf
from .safetensors import SafeTensorsFile

TYPES = ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "f16", "bf16", "f32")
# llama.cpp's LLAMA_FTYPE_* (general.file_type)
FILE_TYPE = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7, "q5_0": 8, "q5_1": 9, "bf16": 32}
#: GGUF tensors llama.cpp's converter stores as float32 whatever the type asked for
KEEP_F32 = ("position_embd.weight", "token_types.weight")

#: what a source yields: its metadata, and tensor name -> array (or a callable giving one)
Source = tuple[dict[str, Any], Mapping[str, Any]]


def _as_f32(w, kernels) -> np.ndarray:
    return to_float32(w, kernels) if isinstance(w, QWeight) else np.asarray(w, dtype=np.float32)


def _keeps_f32(name: str, a: np.ndarray, qtype: str) -> bool:
    """Whether ``name`` stays float32: not a matrix, a norm or a table llama.cpp keeps, or
    rows that do not split into the 32-value blocks of a quantized type."""
    return (a.ndim != 2 or qtype == "f32" or name.endswith("_norm.weight") or name in KEEP_F32
            or a.shape[1] % FORMATS[qtype].block_values != 0)


def _convert_tensor(name: str, a: np.ndarray, qtype: str, kernels) -> np.ndarray | QWeight:
    if _keeps_f32(name, a, qtype):
        return np.ascontiguousarray(a, dtype=np.float32)
    out = QWeight.empty(qtype, a.shape[0], a.shape[1])
    kernels.quantize(Tensor(np.ascontiguousarray(a, dtype=np.float32)), out, qtype)
    return out


def convert(src: str | os.PathLike, dst: str | os.PathLike, qtype: str, kernels=None,
            echo=None) -> dict[str, int]:
    """Convert ``src`` (.gguf, .safetensors, or a directory a plugin reads) to a GGUF of
    ``qtype``; returns the counts of quantized and float32 tensors."""
    qtype = qtype.lower() if isinstance(qtype, str) else qtype
    if qtype not in TYPES:
        raise ConfigError(f"convert: --type {qtype!r}; expected one of {', '.join(TYPES)}")
    k = get_kernels(kernels)
    src, dst = Path(src), Path(dst)
    _check_output(dst)
    if src.resolve() == dst.resolve():
        raise ConfigError(f"convert: {src} would overwrite itself; choose another output")
    with _open_source(src, qtype) as (meta, tensors):
        out, counts = _convert_all(tensors, qtype, k, echo)
        meta["general.file_type"] = np.uint32(FILE_TYPE[qtype])
        meta["general.quantization_version"] = np.uint32(2)
        try:
            write_gguf(dst, meta, out)
        except OSError as exc:     # ENOSPC, a read-only file system: the old output survives
            raise CheckpointError(f"convert: cannot write {dst}: {exc.strerror or exc}") from None
    return counts


def _convert_all(tensors: Mapping[str, Any], qtype: str, kernels,
                 echo: Callable[[str], Any] | None) -> tuple[dict, dict[str, int]]:
    """Each tensor stored as ``_convert_tensor`` says (a callable is called first: read one
    at a time), with the counts of each kind."""
    out: dict[str, np.ndarray | QWeight] = {}
    counts = {"quantized": 0, "float32": 0}
    for name, t in tensors.items():
        t = _convert_tensor(name, _as_f32(t() if callable(t) else t, kernels), qtype, kernels)
        out[name] = t
        counts["quantized" if isinstance(t, QWeight) else "float32"] += 1
        if echo is not None:
            echo(f"{name}: {t.qtype if isinstance(t, QWeight) else 'f32'}")
    return out, counts


@contextmanager
def _open_source(src: Path, qtype: str) -> Iterator[Source]:
    """The metadata and tensors of ``src``: a safetensors or GGUF file (closed on exit), or
    a directory read by a plugin's ``qorus_convert`` hook."""
    if src.is_dir():
        yield _from_plugins(src, qtype)
        return
    if src.suffix == ".safetensors":
        f: SafeTensorsFile | GGUFFile = SafeTensorsFile(src)   # only regular files are opened
        meta: dict = {f"safetensors.{key}": v for key, v in f.metadata.items()}
        get = f.get
    else:
        f = GGUFFile(src)
        meta = {key: v for key, v in f.metadata.items() if key != "general.alignment"}
        get = f.tensor
    try:
        yield meta, {name: (lambda name=name: get(name)) for name in f.keys()}
    finally:
        f.close()


def _from_plugins(src: Path, qtype: str) -> Source:
    """What the first plugin that recognizes the directory ``src`` reads from it."""
    from ..registry import get_registry

    registry = get_registry()
    registry.plugins()                                 # loads them: their hooks are known
    got = registry.pm.hook.qorus_convert(src=src, qtype=qtype)
    if got is None:
        raise ConfigError(f"convert: {src} is a directory that no installed plugin converts "
                          "(the llm plugin reads Hugging Face decoders: config.json with "
                          "model_type llama, mistral, qwen2 or gpt2)")
    if not (isinstance(got, tuple) and len(got) == 2 and isinstance(got[0], dict)
            and isinstance(got[1], Mapping)):
        raise ConfigError(f"convert: {src}: a plugin's qorus_convert hook returned "
                          f"{type(got).__name__}, not (metadata dict, tensors mapping)")
    return dict(got[0]), got[1]


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
    p.add_argument("input", help="a .gguf or .safetensors file, or a Hugging Face decoder "
                   "directory (config.json, model.safetensors, tokenizer.json)")
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
