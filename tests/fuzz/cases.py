"""Case generation: ``make_case(format, seed, index)`` -> the mutated file(s), a pure function
of the triple and the seed files. Each format mixes blind byte mutations with mutations that
understand its structure (GGUF fields and metadata, JSON headers and documents, TOML tables).
"""

from __future__ import annotations

import json
import random
import struct
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from . import gguf_fields
from .mutate import WEIRD_STRINGS, boundary_int, mutate_bytes, pack_int
from .seeds import seed_names

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from .structured import JSON_WEIRD, TOML_WEIRD, Dup, Raw, dumps_json, dumps_toml, mutate_tree, paths

SPECIALS = ("fifo", "directory", "dangling symlink", "empty")


@dataclass(frozen=True)
class Special:
    """A path that is not a regular file with contents: a FIFO, a directory, a dangling link."""

    kind: str


@dataclass
class Case:
    fmt: str
    seed: int
    index: int
    seed_name: str
    desc: str
    target: str                                   # the path the loader opens, relative
    files: dict[str, bytes | Special] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.fmt}:{self.seed}:{self.index}"


def case_rng(fmt: str, seed: int, index: int) -> random.Random:
    return random.Random(f"qorus-fuzz:{fmt}:{seed}:{index}")


def write_case(case: Case, directory: Path) -> Path:
    """Materialize ``case`` under ``directory``; returns the path the loader opens."""
    import os

    for rel, content in case.files.items():
        p = directory / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Special):
            if content.kind == "fifo":
                os.mkfifo(p)
            elif content.kind == "directory":
                p.mkdir()
            elif content.kind == "dangling symlink":
                p.symlink_to(directory / "no-such-file")
            else:
                p.write_bytes(b"")
        else:
            p.write_bytes(content)
    return directory / case.target


# -- seeds, parsed once per process ------------------------------------------------------------
@cache
def _seed_bytes(root: str, fmt: str, name: str) -> bytes:
    return (Path(root) / fmt / name).read_bytes()


@cache
def _gguf_layout(root: str, name: str) -> gguf_fields.Layout:
    return gguf_fields.walk(_seed_bytes(root, "gguf", name))


@cache
def _gguf_parsed(root: str, name: str):
    return gguf_fields.parse(Path(root) / "gguf" / name)


@cache
def _checkpoint_files(root: str) -> dict[str, bytes]:
    d = Path(root) / "checkpoint" / "mlp"
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


# -- formats ---------------------------------------------------------------------------------
def _gguf(rng: random.Random, root: str, scratch: Path) -> tuple[str, str, bytes | Special]:
    name = rng.choice(seed_names(Path(root), "gguf"))
    data = _seed_bytes(root, "gguf", name)
    layout = _gguf_layout(root, name)
    r = rng.random()
    if r < 0.02:
        kind = rng.choice(SPECIALS)
        return name, f"replaced by a {kind}", Special(kind)
    if r < 0.32:
        out, desc = mutate_bytes(rng, data, layout.data_start)
        return name, f"bytes: {desc}", out
    if r < 0.57:
        out, desc = gguf_fields.mutate_field(rng, data, layout)
        return name, f"field: {desc}", out
    from qorus_core.io.gguf import write_gguf

    meta, tensors = _gguf_parsed(root, name)
    tmp = scratch / "semantic.gguf"
    for _ in range(8):                  # an edit the writer cannot store: draw another
        m, t, desc = gguf_fields.mutate_semantic(rng, meta, tensors)
        try:
            write_gguf(tmp, m, t)
        except Exception:               # noqa: BLE001 - the writer's refusal, not a finding
            continue
        return name, f"metadata: {desc}", tmp.read_bytes()
    out, desc = gguf_fields.mutate_field(rng, data, layout)
    return name, f"field: {desc}", out


def _st_focus(header) -> list[tuple]:
    return [p for p in paths(header) if any(k in ("shape", "data_offsets", "dtype") for k in p)]


def _mutate_safetensors(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    (n,) = struct.unpack_from("<Q", data, 0)
    text, body = data[8:8 + n], data[8 + n:]
    r = rng.random()
    if r < 0.3:
        out, desc = mutate_bytes(rng, data, 8 + n)
        return f"bytes: {desc}", out
    if r < 0.4:
        v = boundary_int(rng, n) if rng.random() < 0.6 else n + rng.choice((-8, -1, 1, 8))
        return f"header length := {v}", pack_int(v, 8) + data[8:]
    if r < 0.5:
        new, desc = mutate_bytes(rng, text, len(text), ops=("flip", "setbyte", "truncate", "insert",
                                                               "delete", "splice"))
        return f"header text: {desc}", pack_int(len(new), 8) + new + body
    if r < 0.56:
        header = json.loads(text)
        name = rng.choice(sorted(k for k in header if k != "__metadata__"))
        a, b = 2**32 + 1, 2**32 - 1               # a * b * a * b == 1 (mod 2**64)
        lie = rng.choice(([a, b, a, b], [2**32, 2**32], [2**62, 4], [2**31, 2**31, 4], [2**63 - 1, 2]))
        header[name]["shape"] = lie + header[name]["shape"]
        blob = dumps_json(header).encode()
        blob += b" " * (-len(blob) % 8)
        return f"header: {name}/shape := {header[name]['shape']} (int64 product wraps)", (
            pack_int(len(blob), 8) + blob + body)
    if r < 0.92:
        header = json.loads(text)
        doc, desc = mutate_tree(rng, header, JSON_WEIRD, ("F32", "F16", "BF16", "I64", "U8", "BOOL",
                                                          "F8_E4M3", "f32", "Q8_0"), focus=_st_focus(header))
        blob = dumps_json(doc).encode("utf-8", "surrogatepass")
        if rng.random() < 0.8:
            blob += b" " * (-len(blob) % 8)
        length = len(blob) if rng.random() < 0.95 else n
        return f"header: {desc}", pack_int(length, 8) + blob + body
    op = rng.choice(("cut", "append", "shift"))
    k = rng.choice((1, 2, 4, 8, len(body) // 2 or 1))
    new_body = {"cut": body[:-k], "append": body + bytes(k), "shift": body[k:]}[op]
    return f"data: {op} {k} bytes", data[:8 + n] + new_body


def _safetensors(rng: random.Random, root: str, scratch: Path) -> tuple[str, str, bytes | Special]:
    name = rng.choice(seed_names(Path(root), "safetensors"))
    if rng.random() < 0.02:
        kind = rng.choice(SPECIALS)
        return name, f"replaced by a {kind}", Special(kind)
    desc, out = _mutate_safetensors(rng, _seed_bytes(root, "safetensors", name))
    return name, desc, out


_CK_FOCUS = ("net", "layers", "config", "out_features", "in_features", "input_shape", "epoch",
             "global_step", "run_step", "steps", "rng", "format", "type", "optimizer", "trainer")


def _checkpoint(rng: random.Random, root: str) -> tuple[str, dict[str, bytes | Special]]:
    files: dict[str, bytes | Special] = dict(_checkpoint_files(root))
    r = rng.random()
    if r < 0.05:
        victim = rng.choice(sorted(files))
        op = rng.choice(("delete", "swap") + SPECIALS)
        if op == "delete":
            del files[victim]
        elif op == "swap":
            files["model.safetensors"], files["optimizer.safetensors"] = (
                files["optimizer.safetensors"], files["model.safetensors"])
            victim = "model.safetensors and optimizer.safetensors"
        else:
            files[victim] = Special(op)
        return f"{victim}: {op}", files
    victim = rng.choice(sorted(files))
    data = files[victim]
    assert isinstance(data, bytes)
    if victim.endswith(".json"):
        if rng.random() < 0.25:
            out, desc = mutate_bytes(rng, data, len(data))
            files[victim] = out
            return f"{victim} bytes: {desc}", files
        doc = json.loads(data)
        focus = [p for p in paths(doc) if any(k in _CK_FOCUS for k in p)]
        doc, desc = mutate_tree(rng, doc, JSON_WEIRD, ("mlp.Linear", "mlp.ReLU", "core.Sequential",
                                                       "core.AdamW", "core.SGD", "cosine", "PCG64",
                                                       "MT19937", "collections:OrderedDict",
                                                       "qorus_fuzz_no_such_module:Layer"), focus=focus)
        files[victim] = dumps_json(doc).encode("utf-8", "surrogatepass")
        return f"{victim}: {desc}", files
    desc, files[victim] = _mutate_safetensors(rng, data)
    return f"{victim} {desc}", files


LAYER_TYPES = ("mlp.Linear", "mlp.ReLU", "mlp.Dropout", "mlp.LayerNorm", "mlp.GELU", "mlp.Softmax",
               "mlp.Flatten", "cnn.Conv2d", "cnn.BatchNorm2d", "cnn.MaxPool2d", "cnn.Flatten",
               "cnn.GlobalAvgPool2d", "llm.GPT", "llm.Embedding", "llm.RMSNorm", "llm.TransformerBlock",
               "rnn.LSTM", "rnn.GRU", "core.Sequential", "core.Residual", "tpl.PReLU",
               "mlp.Linaer", "Linear", "", "mlp.", ".Linear", "collections:OrderedDict",
               "qorus_fuzz_no_such_module:Layer", "mlp.Linear:x", "MLP.LINEAR")
_SHAPES = ([], [0], [-1], [2**31 - 1], [65536, 65536], [1] * 9, [16.0], ["16"], [True], [1, 1, 1],
           [10**12], [3, 0, 2], 16, "16", {"a": 1})
_SIZES = (0, -1, 10**6, 10**12, 2**31, 2**63, 2.5, True, "12", None, [12], 1e300)


def _toml_aware(rng: random.Random, doc: dict) -> tuple[dict, str]:
    model = doc.get("model", {})
    layers = model.get("layers") if isinstance(model, dict) else None
    op = rng.choice(("layer type", "layer arg", "layer arg", "input shape", "dtype", "section",
                     "section", "sample"))
    if op in ("layer type", "layer arg") and isinstance(layers, list) and layers:
        i = rng.randrange(len(layers))
        layer = layers[i]
        if op == "layer type":
            layer["type"] = rng.choice(LAYER_TYPES)
            return doc, f"layers[{i}].type := {layer['type']!r}"
        keys = [k for k in layer if k != "type"] or ["out_features"]
        key = rng.choice(keys + ["out_features", "in_features", "bias", "p", "vocab_size",
                                 "d_model", "n_heads", "max_len", "kernel_size", "stride", "padding"])
        val = rng.choice(_SIZES)
        if val is None:
            layer.pop(key, None)
            return doc, f"layers[{i}]: delete {key}"
        layer[key] = val
        return doc, f"layers[{i}].{key} := {val!r}"
    if op == "input shape" and isinstance(model, dict):
        model["input_shape"] = rng.choice(_SHAPES)
        return doc, f"input_shape := {model['input_shape']!r}"
    if op == "dtype" and isinstance(model, dict):
        model["input_dtype"] = rng.choice(("f64", "i64", "i32", "f32", "x", "", 1, "F32"))
        return doc, f"input_dtype := {model['input_dtype']!r}"
    if op == "sample":
        table = doc.setdefault("sample", {})
        key = rng.choice(("prompt", "tokens", "temperature", "top_k", "top_p", "seed", "extra"))
        table[key] = rng.choice((0, -1, 1e-40, float("nan"), 10**9, "hot", "", "\u2581", 1.5, [1], True))
        return doc, f"[sample] {key} := {table[key]!r}"
    name = rng.choice(("model", "data", "loss", "optimizer", "schedule", "train", "sample", "extra"))
    what = rng.choice(("delete", "empty", "scalar", "array", "type"))
    if what == "delete":
        doc.pop(name, None)
    elif what == "type" and isinstance(doc.get(name), dict):
        doc[name]["type"] = rng.choice(("MSE", "SGD", "Adam", "linear_warmup", "constant", "cosine",
                                        "CrossEntropy", "AdamW", "nope", "", "core.AdamW", 3))
    else:
        doc[name] = {"empty": {}, "scalar": 3, "array": [{"type": "AdamW"}], "type": {}}[what]
    return doc, f"[{name}] {what}"


def _toml(rng: random.Random, root: str) -> tuple[str, str, bytes | Special]:
    name = rng.choice(seed_names(Path(root), "toml"))
    data = _seed_bytes(root, "toml", name)
    r = rng.random()
    if r < 0.02:
        kind = rng.choice(SPECIALS)
        return name, f"replaced by a {kind}", Special(kind)
    if r < 0.22:
        out, desc = mutate_bytes(rng, data, len(data))
        return name, f"bytes: {desc}", out
    if r < 0.32:
        lines = data.decode("utf-8").splitlines(keepends=True)
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        op = rng.choice(("duplicate", "delete", "swap"))
        if op == "duplicate":
            lines.insert(j, lines[i])
        elif op == "delete":
            del lines[i]
        else:
            lines[i], lines[j] = lines[j], lines[i]
        return name, f"lines: {op} {i} ({j})", "".join(lines).encode("utf-8")
    doc = tomllib.loads(data.decode("utf-8"))
    if r < 0.6:
        doc, desc = _toml_aware(rng, doc)
    else:
        focus = [p for p in paths(doc) if p and p[0] in ("model", "train", "optimizer", "loss", "schedule")]
        doc, desc = mutate_tree(rng, doc, TOML_WEIRD, WEIRD_STRINGS[:8], focus=focus)
    return name, f"toml: {desc}", dumps_toml(doc).encode("utf-8", "surrogatepass")


def make_case(fmt: str, seed: int, index: int, root: Path, scratch: Path) -> Case:
    """The mutated file(s) of case ``(fmt, seed, index)`` from the seeds under ``root``
    (``scratch``: a directory for the generator's own temporary files)."""
    rng = case_rng(fmt, seed, index)
    r = str(root)
    if fmt == "checkpoint":
        desc, files = _checkpoint(rng, r)
        return Case(fmt, seed, index, "mlp", desc, "ck", {f"ck/{k}": v for k, v in files.items()})
    if fmt == "canary":
        from .targets import CANARY

        return Case(fmt, seed, index, "canary", CANARY[index % len(CANARY)], "canary",
                    {"canary": str(index % len(CANARY)).encode()})
    if fmt == "gguf":
        name, desc, out = _gguf(rng, r, scratch)
    elif fmt == "safetensors":
        name, desc, out = _safetensors(rng, r, scratch)
    elif fmt == "toml":
        name, desc, out = _toml(rng, r)
    else:
        raise ValueError(f"unknown fuzz format {fmt!r}")
    return Case(fmt, seed, index, name, desc, name, {name: out})


__all__ = ["Case", "Dup", "Raw", "Special", "case_rng", "make_case", "write_case"]
