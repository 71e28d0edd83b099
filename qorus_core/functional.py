"""The functional API: ``Input`` nodes, layers called on nodes, and ``Functional``, the
registered composite that replays such a graph.

``Layer.__call__`` dispatches here. Called on ``Node`` objects (an ``Input`` or another
call's output) it records a call and infers the output shapes at once (one scratch trace of
that layer, batch 1), so a shape error names the layer the moment it is written. Called on
traced ``Value`` objects inside a ``Composite.build`` it is ``b.call`` with a name made up
for it (``linear``, ``linear_1``, ...), so graph ops read the same in both places.

``Functional.from_nodes(inputs, outputs)`` walks back from the outputs, names each layer
(the ``name=`` given at its first call, else Keras' style: ``linear``, ``linear_1``), and
stores the graph as plain config: ``inputs`` (name, shape, dtype, grad), ``layers`` (name ->
layer dict), ``nodes`` (name, layer, input references in order) and ``outputs`` (a table of
name -> reference, or a list of references). A reference is an input's name, a node's name,
or ``node:i`` for output ``i`` of a layer of several outputs. The same layer object called
at several nodes holds one set of parameters, under its first node's name.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any

from .errors import ConfigError, ShapeError
from .layer import Composite, Layer, layer_from_dict, layer_to_dict
from .tensor import Spec

#: dtypes an Input may have; a bool mask is fed as int32 0/1
INPUT_DTYPES = {"f32": "f32", "i32": "i32", "bool": "i32"}


class Node:
    """A symbolic tensor of a functional graph: a model input (``Input``) or output ``index``
    of one layer call. ``shape`` is per example (no batch dimension)."""

    __slots__ = ("spec", "call", "index", "name", "input_dtype", "grad")

    def __init__(self, spec: Spec, call: _Call | None = None, index: int = 0,
                 name: str | None = None, input_dtype: str = "f32", grad: bool = False) -> None:
        self.spec, self.call, self.index = spec, call, index
        self.name, self.input_dtype, self.grad = name, input_dtype, grad

    @property
    def shape(self) -> tuple[int, ...]:
        """One example's shape (no batch dimension)."""
        return self.spec.shape

    @property
    def dtype(self) -> str:
        """The value's dtype (``f32`` or ``i32``)."""
        return self.spec.dtype

    def __repr__(self) -> str:
        what = f"Input {self.name!r}" if self.call is None else f"{self.call.layer.type_name} output"
        return f"Node({what}, shape={self.shape}, dtype={self.dtype})"


class _Call:
    """One call of a layer on nodes (None where an optional input was not given)."""

    __slots__ = ("layer", "inputs", "single", "name", "outputs")

    def __init__(self, layer: Layer, inputs: list[Node | None], single: bool, name: str | None):
        self.layer, self.inputs, self.single, self.name = layer, inputs, single, name
        self.outputs: list[Node] = []


def Input(shape: Sequence[int], name: str | None = None, dtype: str = "f32",
          grad: bool = False) -> Node:
    """A model input of per-example ``shape``; ``dtype`` f32, i32 (ids) or bool (a mask, fed
    as 0/1); ``grad``: training plans compute its gradient (``plan.dinputs[name]``)."""
    if not isinstance(shape, (tuple, list)) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise ConfigError(f"Input {name or ''}: shape must be a tuple of positive ints, got {shape!r}")
    if dtype not in INPUT_DTYPES:
        raise ConfigError(f"Input {name or ''}: dtype {dtype!r}, expected one of {sorted(INPUT_DTYPES)}")
    if name is not None and not _NAME.fullmatch(str(name)):
        raise ConfigError(f"Input name {name!r}: use letters, digits and _ (a Python identifier)")
    if not isinstance(grad, bool):
        raise ConfigError(f"Input {name or ''}: grad must be true or false, got {grad!r}")
    if grad and dtype != "f32":
        raise ConfigError(f"Input {name or ''}: only an f32 input can have a gradient, not {dtype}")
    return Node(Spec(tuple(shape), INPUT_DTYPES[dtype]), name=name, input_dtype=dtype, grad=grad)


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: the builder of the Composite being built in this thread (``Layer.__call__`` on Values)
CURRENT_BUILDER: ContextVar[Any] = ContextVar("qorus_current_builder", default=None)


# ----------------------------------------------------------------------------- calling layers
def bind_inputs(layer: Layer, args: tuple, kwargs: dict[str, Any]) -> tuple[list, bool]:
    """``layer(*args, **kwargs)``'s inputs by position, from ``layer.inputs`` (names; ``?``
    optional, ``*`` variadic last); and whether ``build`` sees one Spec (a layer of one input)."""
    names = tuple(layer.inputs)
    where = f"{layer.type_name}"
    variadic = bool(names) and names[-1].endswith("*")
    base = [n.rstrip("?*") for n in names]
    if variadic:
        if kwargs:
            raise ConfigError(f"{where}: takes its inputs by position, got {sorted(kwargs)}")
        if not args:
            raise ConfigError(f"{where}: called with no input")
        return list(args), False
    if len(args) > len(names):
        raise ConfigError(f"{where}: takes {len(names)} input{'s' if len(names) > 1 else ''} "
                          f"({', '.join(base)}), got {len(args)}")
    bound: list = list(args) + [None] * (len(names) - len(args))
    for key, v in kwargs.items():
        if key not in base:
            raise ConfigError(f"{where}: no input named {key!r}; its inputs are {base}")
        i = base.index(key)
        if i < len(args):
            raise ConfigError(f"{where}: input {key!r} given twice")
        bound[i] = v
    for n, v in zip(names, bound):
        if v is None and not n.endswith("?"):
            raise ConfigError(f"{where}: input {n!r} is required")
    return bound, len(names) == 1


def call_layer(layer: Layer, args: tuple, kwargs: dict[str, Any]):
    """What ``layer(*args, **kwargs)`` means: a functional call on Nodes, or ``b.call`` on the
    Values of the Composite being built."""
    name = kwargs.pop("name", None)
    bound, single = bind_inputs(layer, args, kwargs)
    given = [v for v in bound if v is not None]
    if given and all(isinstance(v, Node) for v in given):
        return _call_on_nodes(layer, bound, single, name)
    from .graph import Value

    if given and all(isinstance(v, Value) for v in given):
        b = CURRENT_BUILDER.get()
        if b is None:
            raise ConfigError(f"{layer.type_name}: called on a traced Value outside its graph "
                              "(a Value lives inside the Composite.build that made it)")
        return b.call(layer, bound[0] if single else tuple(bound), name or b.auto_name(layer))
    kinds = sorted({type(v).__name__ for v in given})
    raise ConfigError(f"{layer.type_name}: call a layer on Input nodes (the functional API) or, "
                      f"inside a Composite.build, on traced Values; got {kinds} (to run a model "
                      "on arrays use Model.predict)")


def _call_on_nodes(layer: Layer, bound: list, single: bool, name: str | None):
    if name is not None and not _NAME.fullmatch(str(name)):
        raise ConfigError(f"{layer.type_name}: name {name!r}: use letters, digits and _")
    from .graph import Graph

    g = Graph(train=False)
    vals = [None if n is None else g.new_value(Spec((1,) + n.shape, n.dtype)) for n in bound]
    y = g.call(layer, vals[0] if single else tuple(vals), name or "layer")
    outs = list(y) if isinstance(y, tuple) else [y]
    for v in outs:
        if not v.shape or v.shape[0] != 1:
            raise ShapeError(f"{layer.type_name}: its output {v.shape} does not keep the batch "
                             "dimension first")
    call = _Call(layer, bound, single, name)
    call.outputs = [Node(Spec(v.shape[1:], v.dtype), call, i) for i, v in enumerate(outs)]
    return tuple(call.outputs) if isinstance(y, tuple) else call.outputs[0]


def snake_name(layer: Layer) -> str:
    """``linear`` for ``mlp.Linear``, ``multi_head_attention`` for ``MultiHeadAttention``."""
    base = type(layer).__name__
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", base).lower()


# ----------------------------------------------------------------------------- the composite
class Functional(Composite):
    """A graph of named layer calls over named inputs (see the module doc for the config)."""

    def __init__(self, inputs: list[dict[str, Any]], layers: dict[str, Any],
                 nodes: list[dict[str, Any]], outputs: dict[str, str] | list[str]) -> None:
        self.inputs_cfg = _check_inputs(inputs)
        if not isinstance(layers, dict):
            raise ConfigError(f"Functional: 'layers' must be a table of name -> layer, got {layers!r}")
        self.layers = {str(k): layer_from_dict(v) for k, v in layers.items()}
        self.nodes = _check_nodes(nodes, self.layers, [i["name"] for i in self.inputs_cfg])
        self.outputs = _check_outputs(outputs, self.nodes, [i["name"] for i in self.inputs_cfg])
        self.inputs = tuple(i["name"] for i in self.inputs_cfg) if len(
            self.inputs_cfg) > 1 else ("x",)

    # --- what a Model reads
    @property
    def input_names(self) -> tuple[str, ...]:
        """The graph's inputs by name, in the order the model takes them."""
        return tuple(i["name"] for i in self.inputs_cfg)

    @property
    def output_names(self) -> tuple[str, ...]:
        """The keys of a dict of outputs (sorted); the references of a list; ``("y",)`` for
        one."""
        if isinstance(self.outputs, str):
            return ("y",)
        return tuple(self.outputs)

    def input_specs(self) -> list[Spec]:
        """Each input's per-example ``Spec``, in ``input_names`` order."""
        return [Spec(tuple(i["shape"]), INPUT_DTYPES[i["dtype"]]) for i in self.inputs_cfg]

    def build(self, x, b):
        """Replay the stored graph on the given values: each node's layer called on its inputs, a shared
        layer once per call with one set of parameters."""
        from .graph import Value

        xs = [x] if isinstance(x, Value) else list(x)
        names = self.input_names
        if len(xs) != len(names):
            raise ConfigError(f"Functional: called with {len(xs)} inputs, it takes {len(names)} "
                              f"({', '.join(names)})")
        env: dict[str, Any] = {}
        for n, v in zip(names, xs):
            if v is None:
                raise ConfigError(f"Functional: input {n!r} was not given")
            env[n] = v
        calls: dict[str, int] = {}
        for node in self.nodes:
            layer = self.layers[node["layer"]]
            k = calls[node["layer"]] = calls.get(node["layer"], -1) + 1
            path = node["layer"] if k == 0 else f"{node['layer']}@{k}"
            single = _single(layer)
            args = tuple(None if r is None else _lookup(env, r, node["name"]) for r in node["inputs"])
            y = b.call(layer, args[0] if single else args, path)
            if isinstance(y, tuple):
                env.update({f"{node['name']}:{i}": v for i, v in enumerate(y)})
                env[node["name"]] = y           # a bare reference to it is refused
            else:
                env[node["name"]] = y
        ys = tuple(_lookup(env, r, "outputs") for r in _refs(self.outputs))
        return ys[0] if len(ys) == 1 else ys

    def get_config(self) -> dict[str, Any]:
        """The graph as plain config: ``inputs``, ``layers``, ``nodes`` and ``outputs``."""
        return {"inputs": [dict(i) for i in self.inputs_cfg],
                "layers": {k: layer_to_dict(v) for k, v in self.layers.items()},
                "nodes": [dict(n) for n in self.nodes],
                "outputs": self.outputs if isinstance(self.outputs, str) else
                dict(self.outputs) if isinstance(self.outputs, dict) else list(self.outputs)}

    # --- from nodes
    @classmethod
    def from_nodes(cls, inputs: Node | Sequence[Node] | dict[str, Node],
                   outputs: Node | Sequence[Node] | dict[str, Node]) -> Functional:
        """The graph between ``inputs`` and ``outputs`` (Nodes made by ``Input`` and layer calls)."""
        ins = _as_node_list(inputs, "inputs")
        keys = list(inputs) if isinstance(inputs, dict) else [None] * len(ins)
        in_names = []
        for i, (n, key) in enumerate(zip(ins, keys)):
            if n.call is not None:
                raise ConfigError(f"Model: inputs[{i}] is a layer's output, not an Input")
            if key is not None and n.name is not None and n.name != key:
                raise ConfigError(f"Model: input {n.name!r} given under the key {key!r}")
            in_names.append(key or n.name or (f"input_{i}" if len(ins) > 1 else "x"))
        if len(set(in_names)) != len(in_names):
            raise ConfigError(f"Model: two inputs named alike: {in_names}")
        outs = _as_node_list(outputs, "outputs")
        order: list[_Call] = []
        seen: set[int] = set()
        in_ids = {id(n): name for n, name in zip(ins, in_names)}
        _walk(outs, in_ids, order, seen)
        used = {id(n) for c in order for n in c.inputs if n is not None} | {id(n) for n in outs}
        for n, name in zip(ins, in_names):
            if id(n) not in used:
                raise ConfigError(f"Model: input {name!r} is not used by any output")
        layer_names = _name_layers(order, set(in_names))
        refs: dict[int, str] = dict(in_ids)
        nodes, counts = [], {}
        for c in order:
            lname = layer_names[id(c.layer)]
            k = counts[lname] = counts.get(lname, -1) + 1
            nname = lname if k == 0 else f"{lname}@{k}"
            nodes.append({"name": nname, "layer": lname,
                          "inputs": [None if n is None else refs[id(n)] for n in c.inputs]})
            for i, o in enumerate(c.outputs):
                refs[id(o)] = nname if len(c.outputs) == 1 else f"{nname}:{i}"
        layers = {layer_names[id(c.layer)]: c.layer for c in order}
        if isinstance(outputs, dict):
            out_cfg: dict[str, str] | list[str] | str = {str(k): refs[id(n)] for k, n in outputs.items()}
        elif isinstance(outputs, Node):
            out_cfg = refs[id(outputs)]
        else:
            out_cfg = [refs[id(n)] for n in outs]
        inputs_cfg = [{"name": name, "shape": list(n.shape), "dtype": n.input_dtype, "grad": n.grad}
                      for n, name in zip(ins, in_names)]
        return cls(inputs_cfg, layers, nodes, out_cfg)


def _lookup(env: dict[str, Any], ref: str, where: str):
    v = env.get(ref)
    if v is None:
        base = ref.rpartition(":")[0]
        raise ConfigError(f"Functional: {where} reads {ref!r}, but node {base!r} has "
                          f"{sum(1 for k in env if k.startswith(base + ':'))} outputs")
    if isinstance(v, tuple):
        raise ConfigError(f"Functional: {where} reads {ref!r}, a layer of {len(v)} outputs: "
                          f"name one of them ({ref}:0 .. {ref}:{len(v) - 1})")
    return v


def _single(layer: Layer) -> bool:
    names = tuple(layer.inputs)
    return len(names) == 1 and not names[0].endswith("*")


def _as_node_list(x: Any, what: str) -> list[Node]:
    items = list(x.values()) if isinstance(x, dict) else [x] if isinstance(x, Node) else list(x) \
        if isinstance(x, (list, tuple)) else None
    if not items or not all(isinstance(n, Node) for n in items):
        raise ConfigError(f"Model: {what} must be a Node, a list or a dict of Nodes (made by Input "
                          f"and layer calls), got {x!r}")
    return items


def _walk(outs: list[Node], in_ids: dict[int, str], order: list[_Call], seen: set[int]) -> None:
    """Calls reaching ``outs`` in dependency order (iterative post-order)."""
    stack: list[tuple[Node, bool]] = [(n, False) for n in reversed(outs)]
    while stack:
        n, done = stack.pop()
        if id(n) in in_ids:
            continue
        c = n.call
        if c is None:
            raise ConfigError(f"Model: an output depends on Input {n.name or '(unnamed)'!r} "
                              f"{n.shape}, which is not among the model's inputs")
        if id(c) in seen:
            continue
        if done:
            seen.add(id(c))
            order.append(c)
            continue
        stack.append((n, True))
        stack.extend((p, False) for p in reversed(c.inputs) if p is not None)


def _name_layers(order: list[_Call], taken: set[str]) -> dict[int, str]:
    """id(layer) -> its name in the graph: the ``name=`` of its first call, else a free
    Keras-style one (``linear``, ``linear_1``)."""
    names: dict[int, str] = {}
    for c in order:
        if c.name is not None:
            prev = names.get(id(c.layer))
            if prev is not None and prev != c.name:
                raise ConfigError(f"Model: one {c.layer.type_name} layer called as {prev!r} and "
                                  f"{c.name!r}")
            if prev is None:
                if c.name in taken:
                    raise ConfigError(f"Model: two layers (or an input and a layer) named {c.name!r}")
                names[id(c.layer)] = c.name
                taken.add(c.name)
    counts: dict[str, int] = {}
    for c in order:
        if id(c.layer) in names:
            continue
        base = snake_name(c.layer)
        while True:
            k = counts.get(base, 0)
            counts[base] = k + 1
            cand = base if k == 0 else f"{base}_{k}"
            if cand not in taken:
                break
        names[id(c.layer)] = cand
        taken.add(cand)
    return names


# ----------------------------------------------------------------------------- config checks
def _check_inputs(inputs: Any) -> list[dict[str, Any]]:
    if not isinstance(inputs, list) or not inputs:
        raise ConfigError(f"Functional: 'inputs' must be a list of input tables, got {inputs!r}")
    out = []
    for i, d in enumerate(inputs):
        if not isinstance(d, dict) or "name" not in d or "shape" not in d:
            raise ConfigError(f"Functional: inputs[{i}] needs a name and a shape, got {d!r}")
        extra = set(d) - {"name", "shape", "dtype", "grad"}
        if extra:
            raise ConfigError(f"Functional: inputs[{i}] has unknown keys {sorted(extra)} "
                              "(valid: name, shape, dtype, grad)")
        n = Input(list(d["shape"]) if isinstance(d["shape"], (list, tuple)) else d["shape"],
                  d["name"], d.get("dtype", "f32"), d.get("grad", False))
        out.append({"name": n.name, "shape": list(n.shape), "dtype": n.input_dtype,
                    "grad": n.grad})
    names = [d["name"] for d in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"Functional: two inputs named alike: {names}")
    return out


def _check_nodes(nodes: Any, layers: dict[str, Layer], input_names: list[str]) -> list[dict]:
    if not isinstance(nodes, list):
        raise ConfigError(f"Functional: 'nodes' must be a list of node tables, got {nodes!r}")
    known = set(input_names)
    out = []
    for i, d in enumerate(nodes):
        if not isinstance(d, dict) or "layer" not in d:
            raise ConfigError(f"Functional: nodes[{i}] needs a 'layer', got {d!r}")
        extra = set(d) - {"name", "layer", "inputs"}
        if extra:
            raise ConfigError(f"Functional: nodes[{i}] has unknown keys {sorted(extra)} "
                              "(valid: name, layer, inputs)")
        lname = d["layer"]
        if lname not in layers:
            raise ConfigError(f"Functional: nodes[{i}] names layer {lname!r}, not in 'layers' "
                              f"({sorted(layers)})")
        name = str(d.get("name", lname))
        where = f"Functional: node {name!r}"
        if name in known:
            raise ConfigError(f"{where}: the name is taken by an input or an earlier node")
        layer = layers[lname]
        raw = d.get("inputs", [])
        if isinstance(raw, str):
            raw = [raw]
        if isinstance(raw, dict):            # by the layer's input names
            refs, _ = bind_inputs(layer, (), dict(raw))
        elif isinstance(raw, list):          # by position; "" or null: an absent optional one
            refs = [None if r in (None, "") else r for r in raw]
            names = tuple(layer.inputs)
            if not (names and names[-1].endswith("*")) and len(refs) > len(names):
                raise ConfigError(f"{where}: {layer.type_name} takes {len(names)} inputs, "
                                  f"got {len(refs)}")
        else:
            raise ConfigError(f"{where}: 'inputs' must be a list of references, got {raw!r}")
        if all(r is None for r in refs):
            raise ConfigError(f"{where}: has no input")
        for r in refs:
            if r is not None and not _known(r, known):
                raise ConfigError(f"{where}: input {r!r} is not an input or an earlier node "
                                  f"(known: {sorted(known)})")
        known.add(name)
        out.append({"name": name, "layer": lname, "inputs": refs})
    return out


def _known(ref: Any, known: set[str]) -> bool:
    """``ref`` names an input or a node, or output ``i`` of a node (``node:i``; the trace
    checks that the node has that many outputs)."""
    if not isinstance(ref, str):
        return False
    base, sep, idx = ref.rpartition(":")
    return ref in known or bool(sep and idx.isdigit() and base in known)


def _check_outputs(outputs: Any, nodes: list[dict], input_names: list[str]):
    known = set(input_names) | {n["name"] for n in nodes}
    refs = _refs(outputs)
    if not isinstance(refs, list) or not refs:
        raise ConfigError(f"Functional: 'outputs' must be a table or a list of node references, "
                          f"got {outputs!r}")
    for r in refs:
        if not _known(r, known):
            raise ConfigError(f"Functional: output {r!r} is not a node of the graph")
    if isinstance(outputs, str):
        return outputs
    if isinstance(outputs, dict):          # by name, as Keras flattens a dict (and JSON sorts it)
        return {str(k): outputs[k] for k in sorted(outputs, key=str)}
    if len(set(refs)) != len(refs):
        raise ConfigError(f"Functional: the same node listed twice in outputs {refs}")
    return list(refs)


def _refs(outputs: Any) -> Any:
    """The output references in order, from any of the three forms."""
    if isinstance(outputs, str):
        return [outputs]
    return list(outputs.values()) if isinstance(outputs, dict) else outputs
