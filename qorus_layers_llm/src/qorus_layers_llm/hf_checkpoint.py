"""A Hugging Face model directory: config.json and the weights of model.safetensors (or a
sharded model.safetensors.index.json), as float32 arrays by name.

Float32 tensors stay zero-copy views of the mmapped files; F16 and BF16 ones are widened to
float32 (one copy each). Only safetensors are read: a pytorch_model.bin is a pickle, which
can run code, so it is refused with the way out (``save_pretrained(safe_serialization=True)``).
Every bad input is a CheckpointError naming the file and the field or tensor at fault.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from qorus_core.errors import CheckpointError
from qorus_core.io.safetensors import SafeTensorsFile

MISSING = object()


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON object from ``path``, or CheckpointError naming it."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def field(cfg: dict[str, Any], name: str, path: Path, kind: type = int,
          default: Any = MISSING) -> Any:
    """``cfg[name]`` checked to be a ``kind`` (an int > 0 for int, a float for float)."""
    if name not in cfg or cfg[name] is None:
        if default is MISSING:
            raise CheckpointError(f"{path}: field {name!r} is missing")
        return default
    v = cfg[name]
    if kind is int and not (isinstance(v, int) and not isinstance(v, bool) and v > 0):
        raise CheckpointError(f"{path}: field {name!r} must be a positive integer, got {v!r}")
    if kind is float and not (isinstance(v, (int, float)) and not isinstance(v, bool)):
        raise CheckpointError(f"{path}: field {name!r} must be a number, got {v!r}")
    if kind is str and not isinstance(v, str):
        raise CheckpointError(f"{path}: field {name!r} must be a string, got {v!r}")
    return float(v) if kind is float else v


def model_dir(path: str | os.PathLike) -> Path:
    """``path`` as a directory; CheckpointError when it is not one."""
    d = Path(path)
    if not d.is_dir():
        raise CheckpointError(f"{d}: not a model directory (expected config.json and "
                              "model.safetensors in it)")
    return d


def weight_files(directory: str | os.PathLike) -> list[Path]:
    """The directory's safetensors files: model.safetensors, or the shards its index names
    (each inside the directory); CheckpointError for a pickled checkpoint or none."""
    d = model_dir(directory)
    index = d / "model.safetensors.index.json"
    if index.exists():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{index}: field 'weight_map' must map tensor names to files")
        files = sorted({str(f) for f in weight_map.values()})
    elif (d / "model.safetensors").exists():
        files = ["model.safetensors"]
    elif any((d / n).exists() for n in ("pytorch_model.bin", "model.bin")):
        raise CheckpointError(f"{d}: only a pickled pytorch_model.bin, which Qorus does not load "
                              "(unpickling can run code); save it with save_pretrained("
                              "safe_serialization=True) to get model.safetensors")
    else:
        raise CheckpointError(f"{d}: no model.safetensors or model.safetensors.index.json")
    paths = []
    for name in files:
        p = (d / name).resolve()
        if p.parent != d.resolve():
            raise CheckpointError(f"{index}: shard {name!r} is outside the model directory")
        paths.append(p)
    return paths


def load_tensors(directory: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every tensor of the directory's safetensors weights, float32 (views where they are)."""
    out: dict[str, np.ndarray] = {}
    for p in weight_files(directory):
        st = SafeTensorsFile(p)
        for key in st.keys():
            a = st.get(key)
            if a.dtype == np.float16:
                a = a.astype(np.float32)
            elif a.dtype != np.float32:
                continue                      # integer buffers (position_ids): not weights
            out[key] = a
    return out
