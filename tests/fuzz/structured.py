"""Tree-level mutations of JSON documents and TOML configs, and emitters able to write what
``json.dumps`` refuses to: duplicate keys, NaN/Infinity, 5,000-digit integers, nesting 100k
deep (``Raw`` text spliced in verbatim, ``Dup`` objects with repeated keys).
"""

from __future__ import annotations

import copy
import json
import math
import random
import re
from collections import deque
from dataclasses import dataclass
from typing import Any

from .mutate import BOUNDARY_FLOATS, WEIRD_STRINGS, boundary_int


@dataclass(frozen=True)
class Raw:
    """Text emitted as it is (a literal the emitters cannot produce from a Python value)."""

    text: str


@dataclass
class Dup:
    """An object whose keys may repeat: ``pairs`` emitted in order."""

    pairs: list


DEEP = 100_000
#: JSON values of every type, and the literals parsers disagree on
JSON_WEIRD = (None, True, False, 0, -1, 1, 2.5, -0.0, 1e308, "", "x", "four", [], {}, [1, 2],
              {"a": 1}, [[[]]], Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), Raw("1e999"),
              Raw("-1e999"), Raw("1" * 5000), Raw("-" + "9" * 5000), Raw("1" + "0" * 400 + ".5"),
              Raw('"\\ud800"'), Raw('"\\u0000"'), Raw("[" * DEEP + "]" * DEEP),
              Raw('{"a":' * 20000 + "1" + "}" * 20000))
#: TOML has no null; it has dates and times (which load as datetime objects)
TOML_WEIRD = (True, False, 0, -1, 1, 2.5, -0.0, 1e308, "", "x", "four", [], {}, [1, 2], {"a": 1},
              [[[]]], Raw("nan"), Raw("inf"), Raw("-inf"), Raw("9" * 40), Raw("-" + "9" * 40),
              Raw("1979-05-27T07:32:00Z"), Raw("1979-05-27"), Raw("07:32:00"), Raw("0x7fffffffffffffff"),
              Raw("[" * 2000 + "]" * 2000), Raw('"\\ud800"'))


# -- walking ---------------------------------------------------------------------------------
def paths(obj: Any, limit: int = 20000) -> list[tuple]:
    """Every node's path (keys and indices), the root first, breadth-first, at most ``limit``."""
    out, todo = [], deque([()])
    while todo and len(out) < limit:
        p = todo.popleft()
        out.append(p)
        node = get(obj, p)
        if isinstance(node, dict):
            todo += [p + (k,) for k in node]
        elif isinstance(node, list):
            todo += [p + (i,) for i in range(len(node))]
    return out


def get(obj: Any, path: tuple) -> Any:
    for k in path:
        obj = obj[k]
    return obj


def put(obj: Any, path: tuple, value: Any) -> Any:
    """``obj`` with the node at ``path`` replaced (the root when ``path`` is empty)."""
    if not path:
        return value
    get(obj, path[:-1])[path[-1]] = value
    return obj


# -- mutating --------------------------------------------------------------------------------
def _weird(rng: random.Random, old: Any, pool: tuple, strings: tuple) -> Any:
    r = rng.random()
    if isinstance(old, bool) or r < 0.45:
        return copy.deepcopy(rng.choice(pool))
    if isinstance(old, int) and r < 0.85:
        return boundary_int(rng, old)
    if isinstance(old, float) and r < 0.85:
        near = (old * 1e30, -old, math.floor(old) + 0.5 if math.isfinite(old) else 0.5)
        return rng.choice(BOUNDARY_FLOATS + near)
    if isinstance(old, str) and r < 0.85:
        return rng.choice(strings + WEIRD_STRINGS)
    if isinstance(old, list) and old and r < 0.85:
        return rng.choice((old[:-1], old + old[-1:], [old], old[::-1], old * 3))
    return rng.choice((str(old) if not isinstance(old, str) else [old], [old], {"value": old}))


def mutate_tree(rng: random.Random, doc: Any, pool: tuple = JSON_WEIRD, strings: tuple = (),
                focus: list[tuple] | None = None) -> tuple[Any, str]:
    """One structural mutation of the parsed document ``doc`` (a deep copy is changed):
    a value of another type or at a boundary, a missing or unknown key, a duplicated key,
    two values swapped, a container wrapped or grown. ``focus``: paths to prefer."""
    doc = copy.deepcopy(doc)
    every = paths(doc)
    nodes = focus if focus and rng.random() < 0.5 else every
    p = rng.choice(nodes[1:] if len(nodes) > 1 else nodes)
    old = get(doc, p)
    parent = get(doc, p[:-1]) if p else None
    ops = ["value", "value", "value", "wrap"]
    if p:
        ops += ["delete", "swap"]
    if isinstance(parent, dict):
        ops += ["dup", "rename"]
    if isinstance(old, dict):
        ops += ["add", "add"]
    if isinstance(old, list):
        ops += ["grow"]
    op = rng.choice(ops)
    where = "/".join(map(str, p)) or "<root>"
    if op == "value":
        new = _weird(rng, old, pool, strings)
        return put(doc, p, new), f"{where} := {_short(new)}"
    if op == "wrap":
        new = rng.choice(([old], {"value": old}, [old, old]))
        return put(doc, p, new), f"{where} wrapped in {type(new).__name__}"
    if op == "delete":
        del parent[p[-1]]
        return doc, f"delete {where}"
    if op == "swap":
        siblings = list(parent) if isinstance(parent, dict) else list(range(len(parent)))
        other = rng.choice(siblings)
        parent[p[-1]], parent[other] = parent[other], parent[p[-1]]
        return doc, f"swap {where} with {other}"
    if op == "dup":
        pairs = list(parent.items()) + [(p[-1], _weird(rng, old, pool, strings))]
        return put(doc, p[:-1], Dup(pairs)), f"duplicate key {where}"
    if op == "rename":
        new_key = rng.choice(("", " ", p[-1].upper() if isinstance(p[-1], str) else "0",
                              f"{p[-1]}_", "__proto__", "type", "config"))
        parent[new_key] = parent.pop(p[-1])
        return doc, f"rename {where} -> {new_key!r}"
    if op == "add":
        key = rng.choice(("extra", "type", "config", "format", "__metadata__", "dtype", "shape",
                          "data_offsets", ""))
        val = copy.deepcopy(rng.choice(pool))
        if key in old:
            return put(doc, p, Dup(list(old.items()) + [(key, val)])), f"{where}: duplicate {key!r}"
        old[key] = val
        return doc, f"{where}: add {key!r} = {_short(val)}"
    n = rng.choice((1, 2, 1000))
    old.extend([copy.deepcopy(old[-1]) if old else 0] * n)
    return doc, f"{where}: grow by {n}"


def _short(v: Any) -> str:
    s = repr(v.text if isinstance(v, Raw) else v)
    return s if len(s) <= 60 else s[:40] + f"...({len(s)} chars)"


# -- emitting --------------------------------------------------------------------------------
def dumps_json(obj: Any) -> str:
    """JSON text of ``obj``; ``Raw`` verbatim, ``Dup`` with its repeated keys, NaN as NaN."""
    if isinstance(obj, Raw):
        return obj.text
    if isinstance(obj, Dup):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dumps_json(v)}" for k, v in obj.pairs) + "}"
    if isinstance(obj, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dumps_json(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(dumps_json(v) for v in obj) + "]"
    return json.dumps(obj)


_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(k: Any) -> str:
    k = str(k)
    return k if _BARE.fullmatch(k) else json.dumps(k, ensure_ascii=False)


def _toml_value(v: Any) -> str:
    if isinstance(v, Raw):
        return v.text
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (dict, Dup)):
        items = v.pairs if isinstance(v, Dup) else list(v.items())
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in items) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v))          # None: TOML has no null; a string stands in


def dumps_toml(doc: Any) -> str:
    """TOML text: top-level non-tables first, then one ``[section]`` per table (nested tables
    and arrays of tables inline). A non-table root becomes ``value = ...``."""
    if not isinstance(doc, (dict, Dup)):
        return f"value = {_toml_value(doc)}\n"
    items = doc.pairs if isinstance(doc, Dup) else list(doc.items())
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in items if not isinstance(v, (dict, Dup))]
    for k, v in items:
        if isinstance(v, (dict, Dup)):
            lines.append(f"\n[{_toml_key(k)}]")
            sub = v.pairs if isinstance(v, Dup) else list(v.items())
            lines += [f"{_toml_key(sk)} = {_toml_value(sv)}" for sk, sv in sub]
    return "\n".join(lines) + "\n"
