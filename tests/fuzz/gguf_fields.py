"""GGUF-aware mutations: the fields of a (valid) file's layout, to overwrite with boundary
values, and metadata/tensor-level edits written back through ``write_gguf`` (a well-formed
file whose values lie: a head count of "four", NaN epsilon, tokens of the wrong type).
"""

from __future__ import annotations

import copy
import random
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .mutate import BOUNDARY_FLOATS, BOUNDARY_INTS, WEIRD_STRINGS, boundary_int, pack_int

_WIDTH = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_FLOAT = {6: "<f", 12: "<d"}


@dataclass(frozen=True)
class Field:
    """An integer or float field: ``kind`` is count, type, value, dims or offset."""

    off: int
    width: int
    kind: str
    label: str
    fmt: str = ""            # struct format of a float field


@dataclass(frozen=True)
class Span:
    """A string: its uint64 length at ``len_off``, its bytes at ``start:end``."""

    len_off: int
    start: int
    end: int
    label: str


@dataclass
class Layout:
    fields: list[Field]
    spans: list[Span]
    data_start: int


def walk(data: bytes) -> Layout:
    """Every field of a valid GGUF file (as ``write_gguf`` writes them)."""
    fields: list[Field] = [Field(4, 4, "type", "version"), Field(8, 8, "count", "tensor count"),
                           Field(16, 8, "count", "metadata count")]
    spans: list[Span] = []
    n_tensors, n_kv = struct.unpack_from("<QQ", data, 8)
    pos = 24

    def string(label: str) -> str:
        nonlocal pos
        (n,) = struct.unpack_from("<Q", data, pos)
        fields.append(Field(pos, 8, "count", f"length of {label}"))
        spans.append(Span(pos, pos + 8, pos + 8 + n, label))
        s = data[pos + 8:pos + 8 + n].decode("utf-8")
        pos += 8 + n
        return s

    def value(vt: int, label: str, depth: int = 0) -> None:
        nonlocal pos
        if vt == 8:
            string(label)
        elif vt == 9:
            (et,) = struct.unpack_from("<I", data, pos)
            fields.append(Field(pos, 4, "type", f"element type of {label}"))
            (n,) = struct.unpack_from("<Q", data, pos + 4)
            fields.append(Field(pos + 4, 8, "count", f"length of {label}"))
            pos += 12
            for i in range(n):
                if et in (8, 9) or i in (0, n - 1):
                    value(et, f"{label}[{i}]", depth + 1)
                else:
                    pos += _WIDTH[et]
        else:
            fields.append(Field(pos, _WIDTH[vt], "value", label, _FLOAT.get(vt, "")))
            pos += _WIDTH[vt]

    for _ in range(n_kv):
        key = string("a metadata key")
        (vt,) = struct.unpack_from("<I", data, pos)
        fields.append(Field(pos, 4, "type", f"value type of {key}"))
        pos += 4
        value(vt, key)
    for _ in range(n_tensors):
        name = string("a tensor name")
        (nd,) = struct.unpack_from("<I", data, pos)
        fields.append(Field(pos, 4, "type", f"n_dims of {name}"))
        pos += 4
        for d in range(nd):
            fields.append(Field(pos, 8, "dims", f"dims[{d}] of {name}"))
            pos += 8
        fields.append(Field(pos, 4, "type", f"ggml type of {name}"))
        fields.append(Field(pos + 4, 8, "offset", f"offset of {name}"))
        pos += 12
    return Layout(fields, spans, pos)


def mutate_field(rng: random.Random, data: bytes, layout: Layout) -> tuple[bytes, str]:
    """A boundary value in one header field, or a string's bytes or length replaced."""
    b = bytearray(data)
    if rng.random() < 0.25:
        sp = rng.choice(layout.spans)
        new = rng.choice(WEIRD_STRINGS).encode("utf-8") if rng.random() < 0.7 else rng.choice(
            (b"\xff", b"\xc3", b"\xed\xa0\x80", b"a\x00b", bytes(data[sp.start:sp.end])[::-1]))
        if rng.random() < 0.3 and sp.end > sp.start:           # same length: no shift
            new = (new * (sp.end - sp.start))[:sp.end - sp.start] or new
        b[sp.len_off:sp.end] = pack_int(len(new), 8) + new
        return bytes(b), f"{sp.label} := {new[:40]!r}"
    kind = rng.choice(sorted({f.kind for f in layout.fields}))
    f = rng.choice([f for f in layout.fields if f.kind == kind])
    if f.fmt:
        v: Any = rng.choice(BOUNDARY_FLOATS)
        with np.errstate(over="ignore"):                   # 1e308 as a float32 is inf
            raw = np.array(v, f.fmt).tobytes()
    else:
        old = int.from_bytes(data[f.off:f.off + f.width], "little")
        if kind == "type":
            v = rng.choice(BOUNDARY_INTS + tuple(range(32)))
        else:
            v = boundary_int(rng, old)
        raw = pack_int(v, f.width)
    b[f.off:f.off + f.width] = raw
    return bytes(b), f"{f.label} := {v}"


# -- metadata- and tensor-level mutations ----------------------------------------------------
_SPECIAL_IDS = ("bos", "eos", "eot", "unknown", "padding", "seperator")
_ADD_KEYS = ("general.alignment", "llama.rope.scaling.type", "llama.expert_count",
             "llama.attention.key_length", "llama.rope.dimension_count", "llama.vocab_size",
             "llama.context_length", "tokenizer.ggml.add_space_prefix", "tokenizer.ggml.pre",
             "tokenizer.ggml.eot_token_id", "tokenizer.chat_template", "general.file_type")
_TEMPLATES = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}",
    "{% for %}", "{{ 1 / 0 }}", "{{ raise_exception('refused') }}", "{{ messages[99].content }}",
    "{{ undefined_name.attr }}", "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ 'x' * 10**10 }}", "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
)


def _weird_meta(rng: random.Random, old: Any) -> Any:
    """A metadata value of another GGUF type, or at its type's boundary."""
    if isinstance(old, np.integer) and rng.random() < 0.5:
        info = np.iinfo(old.dtype)
        lo, span = int(info.min), int(info.max) - int(info.min) + 1
        v = rng.choice((int(old) + 1, int(old) - 1, int(old) * 2, int(old) // 2, 0, int(info.max),
                        int(info.min), int(old) * 1000))
        return old.dtype.type((v - lo) % span + lo)         # wrapped into the type's range
    pool = [np.uint32(2**32 - 1), np.uint32(2**31), np.uint32(0), np.int32(-1), np.int32(0),
            np.uint64(2**64 - 1), np.int64(-(2**63)), np.uint8(255), np.int8(-128), np.int16(-1),
            np.float32("nan"), np.float32("inf"), np.float32("-inf"), np.float32(-1),
            np.float32(0), np.float32(1e-45), np.float32(2.5), np.float64("nan"),
            np.float64(1e300), True, False, "four", "", "32", [1, 2],
            np.array([4, 4], np.uint32), [["a"]], np.array([], np.float32), ["a", "b"]]
    if isinstance(old, str):
        pool += list(WEIRD_STRINGS)
    return copy.deepcopy(rng.choice(pool))


def _edit_list(rng: random.Random, seq: Any, pool: tuple, special: list[int]) -> tuple[Any, str]:
    """One edit of a token-like list or array (an element, the length, the element type)."""
    n = len(seq)
    op = rng.choice(("element", "element", "element", "truncate", "append", "retype"))
    if op == "element" and n:
        i = rng.choice(special) if special and rng.random() < 0.5 else rng.randrange(n)
        v = rng.choice(pool)
        if isinstance(seq, np.ndarray):
            seq = seq.copy()
            try:
                seq[i] = v
            except (ValueError, OverflowError, TypeError):
                seq = list(seq.tolist())
                seq[i] = v
        else:
            seq = list(seq)
            seq[i] = v
        return seq, f"[{i}] := {v!r}"
    if op == "truncate":
        k = rng.choice((1, 2, n // 2, n))
        return seq[:n - k], f"drop the last {k}"
    if op == "append":
        extra = seq[-1:] if n else seq
        if isinstance(seq, np.ndarray):
            return np.concatenate([seq, extra]), "append a copy of the last"
        return list(seq) + list(extra) + [rng.choice(pool)], "append two"
    new = rng.choice((np.arange(n, dtype=np.int32), np.zeros(n, np.float32),
                      [[x] for x in (seq.tolist() if isinstance(seq, np.ndarray) else seq)],
                      [str(x) for x in (seq.tolist() if isinstance(seq, np.ndarray) else seq)], []))
    return new, f"retyped as {type(new).__name__} of {len(new)}"


def mutate_semantic(rng: random.Random, meta: dict, tensors: dict) -> tuple[dict, dict, str]:
    """A metadata or tensor edit of a parsed GGUF (copies are changed)."""
    from qorus_core.kernels.numpy_quant import QWeight, _quantize_blocks

    meta = dict(meta)
    tensors = dict(tensors)
    arch = meta.get("general.architecture", "llama")
    vocab = len(meta.get("tokenizer.ggml.tokens", ()))
    op = rng.choice(("value", "value", "value", "delete", "add", "tokens", "tokens", "types",
                     "scores", "merges", "special", "template", "tensor", "tensor", "tensor"))
    if op == "value":
        hot = [k for k in meta if k.startswith(f"{arch}.") or k.startswith("general.")]
        key = rng.choice(hot if hot and rng.random() < 0.7 else list(meta))
        meta[key] = _weird_meta(rng, meta[key])
        return meta, tensors, f"metadata {key} := {_show(meta[key])}"
    if op == "delete":
        key = rng.choice(list(meta))
        del meta[key]
        return meta, tensors, f"delete metadata {key}"
    if op == "add":
        key = rng.choice(_ADD_KEYS).replace("llama.", f"{arch}.")
        meta[key] = _weird_meta(rng, meta.get(key, np.uint32(8)))
        return meta, tensors, f"metadata {key} := {_show(meta[key])}"
    if op in ("tokens", "types", "scores", "merges"):
        lists = {"tokens": ("tokenizer.ggml.tokens", WEIRD_STRINGS + ("<0x0A>", "<|im_start|>")),
                 "types": ("tokenizer.ggml.token_type", (99, -1, 0, 6, 3, 2**31 - 1)),
                 "scores": ("tokenizer.ggml.scores", (float("nan"), float("inf"), -1e30)),
                 "merges": ("tokenizer.ggml.merges", ("abc", "a b c", "", " ", "Ġ Ġ", "h e"))}
        key, pool = lists[op]
        if key not in meta:
            key, pool = lists["tokens"]
        types = np.asarray(meta.get("tokenizer.ggml.token_type", ()))
        special = [int(i) for i in np.flatnonzero(types != 1)][:512]
        new, what = _edit_list(rng, meta[key], pool, special)
        meta[key] = new
        return meta, tensors, f"{key} {what}"
    if op == "special":
        key = f"tokenizer.ggml.{rng.choice(_SPECIAL_IDS)}_token_id"
        meta[key] = rng.choice((np.uint32(vocab), np.uint32(max(vocab - 1, 0)), np.uint32(2**32 - 1),
                                np.int32(-1), np.float32(1.5), "1", True, np.uint64(2**63)))
        return meta, tensors, f"{key} := {_show(meta[key])}"
    if op == "template":
        meta["tokenizer.chat_template"] = rng.choice(_TEMPLATES)
        return meta, tensors, f"chat template := {meta['tokenizer.chat_template'][:50]!r}"
    name = rng.choice(list(tensors))
    t = tensors[name]
    top = rng.choice(("drop", "rename", "shape", "dtype", "nan", "extra"))
    if top == "drop":
        del tensors[name]
        return meta, tensors, f"drop tensor {name}"
    if top == "rename":
        tensors[name + ".x" if rng.random() < 0.5 else name.replace("blk.0", "blk.7")] = tensors.pop(name)
        return meta, tensors, f"rename tensor {name}"
    if top == "extra":
        tensors[rng.choice(("zzz", f"blk.{rng.choice((2, 99))}.attn_q.weight", "output.weight"))] = (
            np.ones((rng.choice((1, 3, 64)), 64), np.float32))
        return meta, tensors, "an extra tensor"
    if isinstance(t, QWeight):
        if top == "nan":
            a = np.array(t.a)
            a[0:2] = rng.choice(((0x00, 0x7E), (0x00, 0x7C), (0x00, 0xFC)))   # f16 NaN / +-inf scale
            tensors[name] = QWeight(a, t.qtype, t.n, t.k)
            return meta, tensors, f"tensor {name}: block 0 scale := NaN/inf"
        if top == "shape" and t.n > 1:
            rb = t.a.size // t.n
            tensors[name] = QWeight(np.array(t.a[:(t.n - 1) * rb]), t.qtype, t.n - 1, t.k)
            return meta, tensors, f"tensor {name}: one row fewer"
        other = "q4_0" if t.qtype != "q4_0" else "q8_0"
        x = np.random.default_rng(0).standard_normal((t.n * t.k // 32, 32)).astype(np.float32)
        tensors[name] = QWeight(np.ascontiguousarray(_quantize_blocks(other, x)).reshape(-1), other, t.n, t.k)
        return meta, tensors, f"tensor {name}: {t.qtype} -> {other}"
    a = np.asarray(t)
    if top == "nan":
        a = a.astype(np.float32 if a.dtype.kind != "f" else a.dtype)
        if a.size:
            a.reshape(-1)[rng.randrange(a.size)] = rng.choice((np.nan, np.inf, -np.inf))
        tensors[name] = a
        return meta, tensors, f"tensor {name}: a NaN/inf element"
    if top == "shape":
        new = rng.choice((a.T, a[:-1], a[None], a.reshape(-1), a[:0]))
        tensors[name] = np.ascontiguousarray(new)
        return meta, tensors, f"tensor {name}: shape {a.shape} -> {new.shape}"
    dt = rng.choice((np.float16, np.float64, np.int32, np.int8))
    tensors[name] = a.astype(dt)
    return meta, tensors, f"tensor {name}: dtype {a.dtype} -> {np.dtype(dt)}"


def _show(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:40] + "..."


def parse(path: Path) -> tuple[dict, dict]:
    """The metadata and tensors of a seed file, copied out of the map."""
    from qorus_core.io.gguf import GGUFFile
    from qorus_core.kernels.numpy_quant import QWeight

    with GGUFFile(path) as f:
        meta = {k: (v.copy() if isinstance(v, np.ndarray) else copy.deepcopy(v))
                for k, v in f.metadata.items()}
        tensors = {}
        for name in f.tensors:
            t = f.tensor(name)
            tensors[name] = (QWeight(np.array(t.a), t.qtype, t.n, t.k) if isinstance(t, QWeight)
                             else np.array(t))
    meta.pop("general.alignment", None)
    return meta, tensors
