"""Tracing a model into a tape: the values, the ops, and the buffers their layers declare.

``Graph.call(layer, x)`` runs a primitive layer's ``build`` (or a composite's, which calls
back into the graph), records an ``Op`` and returns its output ``Value``. Nothing has memory
yet: ``plan.compile_plan`` turns the tape into slots, places them and wires the tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .errors import ConfigError, ShapeError
from .init import Initializer
from .layer import Composite, Layer, LayerCtx
from .tensor import Spec


class Value:
    """A symbolic tensor in the traced graph: an output of one op, an input of others."""

    __slots__ = ("spec", "producer", "uses", "alias_of", "index")

    def __init__(self, spec: Spec, index: int, producer: Op | None = None) -> None:
        self.spec = spec
        self.index = index
        self.producer = producer
        self.uses: list[tuple[Op, int]] = []     # (consumer op, its input position)
        self.alias_of: Value | None = None   # shares this value's memory (a reshape)

    @property
    def consumers(self) -> list[Op]:
        """The ops that read this value."""
        return [op for op, _ in self.uses]

    @property
    def shape(self) -> tuple[int, ...]:
        """The value's full shape, batch first."""
        return self.spec.shape

    @property
    def dtype(self) -> str:
        """The value's dtype."""
        return self.spec.dtype

    def __repr__(self) -> str:
        return f"Value(#{self.index}, {self.spec.shape})"


@dataclass(eq=False)
class ParamDecl:
    """A parameter a layer declared in ``build``: its full name (PyTorch's ``state_dict`` naming),
    shape, initializer and the ``ctx`` attribute it appears under."""
    name: str          # full name, e.g. "0.weight" (PyTorch's state_dict naming)
    shape: tuple[int, ...]
    init: Initializer
    attr: str          # attribute name on the layer's ctx


@dataclass(eq=False)
class BufferDecl:
    """A buffer a layer declared in ``build``: ``saved`` (written in forward, read in backward) or
    ``scratch`` (within one call), under ``ctx.<attr>``."""
    attr: str
    spec: Spec
    kind: str          # "saved": forward to backward; "scratch": within one call


@dataclass(eq=False)
class StateDecl:
    """A non-trainable buffer that outlives calls and plans (running stats, KV caches)."""

    name: str          # full name, e.g. "3.running_mean"
    spec: Spec
    init: Initializer | None   # None: zeros
    persistent: bool   # part of state_dict and checkpoints
    attr: str


@dataclass(eq=False)
class Op:
    """One primitive layer call: its inputs (None where an optional one was not given), its
    outputs, its declarations; ``tick`` is its position in forward order."""

    layer: Layer
    ctx: LayerCtx
    inputs: list[Value | None]
    outputs: list[Value]
    tick: int
    alias: bool = False
    params: list[ParamDecl] = field(default_factory=list)
    buffers: list[BufferDecl] = field(default_factory=list)
    states: list[StateDecl] = field(default_factory=list)
    grad_inputs: bool = True     # False: backward sends no gradient to its inputs

    @property
    def output(self) -> Value:
        """The op's first (usually only) output value."""
        return self.outputs[0]


#: ``LayerCtx`` attributes set by the planner: a declared buffer must not shadow one.
RESERVED_CTX_NAMES = frozenset({"x", "y", "dx", "dy", "xs", "ys", "dxs", "dys", "other", "dother",
                                "k", "run", "train", "path", "index", "view"})

#: The most layer calls (primitive ops) one graph may have. A plan runs every op from Python on
#: each step, and tracing one takes up to 0.1 ms, so a graph far longer than a real deep model
#: (a 1,000-block transformer has 8,000) is a mistaken repeat count (``n_layers = 2**63``):
#: refused when the trace reaches it, in about a second, instead of tracing forever. Bytes are
#: no bound here: tracing allocates no array, and a small layer repeated 2**63 times would
#: trace for hours before its parameters outgrew memory (``ParamStore`` checks those exactly).
MAX_OPS = 1 << 14
#: The most declarations (parameters, buffers, states) one graph may have, for the same reason
#: (a layer looping over a huge layer count declares them all within one op).
MAX_DECLARATIONS = 1 << 17


def _where(layer: Layer, path: str, tick: int) -> str:
    """An op, for error messages (``type_name`` asks the registry: only when one is raised)."""
    return f"layer {path or '<root>'} ({layer.type_name}) at position {tick}"


class LayerBuilder:
    """What ``Layer.build`` receives: declares params and buffers for one layer in one plan."""

    def __init__(self, graph: Graph, path: str, op_params: list | None = None,
                 op_buffers: list | None = None, op_states: list | None = None) -> None:
        """A primitive layer's builder gets its op's lists to declare into; a composite's gets
        none (its declarations would belong to no op: refused)."""
        self._graph = graph
        self.path = path
        self._params = op_params
        self._buffers = op_buffers
        self._states = op_states
        self._taken: dict[str, str] = {}     # ctx attribute -> what declared it
        self.alias = False
        self.grad_inputs = True
        self._dtype = "f32"                  # the first input's (what view_input keeps)
        self._auto: dict[str, int] = {}      # generated child names so far, per base

    @property
    def train(self) -> bool:
        """True when compiling a training plan (buffers for backward are needed)."""
        return self._graph.train

    def _full(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def _claim(self, name: str, what: str, grad: bool = False) -> str:
        """Check that ``ctx.<name>`` (and ``ctx.d<name>`` for a parameter) is free: not one of
        the context's own fields, not a name this layer declared already, not another
        parameter's gradient. A clash would silently make two buffers one attribute."""
        where = self.path or "the model's top layer"
        if self._params is None:
            raise ConfigError(f"{where}: a Composite cannot declare {what} {name!r}: only a "
                              "primitive layer (one that runs forward) has a ctx to hold it")
        if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
            raise ConfigError(f"{where}: {what} name {name!r} must be a Python identifier "
                              "not starting with '_'")
        wanted = [name, "d" + name] if grad else [name]
        for n in wanted:
            if n in RESERVED_CTX_NAMES:
                raise ConfigError(f"{where}: {what} name {name!r} collides with the layer "
                                  f"context's own field ctx.{n}; reserved: "
                                  f"{', '.join(sorted(RESERVED_CTX_NAMES))}")
            if n in self._taken:
                raise ConfigError(f"{where}: {what} name {name!r} collides with ctx.{n}, "
                                  f"already declared as {self._taken[n]}")
        self._graph.count_declaration(where)
        self._taken[name] = f"{what} {name!r}"
        if grad:
            self._taken["d" + name] = f"the gradient of parameter {name!r}"
        return name

    def param(self, name: str, shape: tuple[int, ...], init: Initializer) -> None:
        """A trainable float32 parameter, ``ctx.<name>``; its gradient is ``ctx.d<name>``."""
        self._claim(name, "parameter", grad=True)
        self._params.append(ParamDecl(self._full(name), tuple(int(d) for d in shape), init, name))

    def saved(self, name: str, shape: tuple[int, ...], dtype: str = "f32") -> None:
        """A buffer written in forward and read in backward (e.g. LayerNorm's mean)."""
        self._claim(name, "saved buffer")
        self._buffers.append(BufferDecl(name, Spec(tuple(shape), dtype), "saved"))

    def scratch(self, name: str, shape: tuple[int, ...], dtype: str = "f32") -> None:
        """A buffer used within one forward or backward call only; its memory is reused."""
        self._claim(name, "scratch buffer")
        self._buffers.append(BufferDecl(name, Spec(tuple(shape), dtype), "scratch"))

    def state(self, name: str, shape: tuple[int, ...], init: Initializer | None = None,
              persistent: bool = True, dtype: str = "f32") -> None:
        """A non-trainable buffer ``ctx.<name>`` that keeps its values across calls and plans
        (``StateStore``). Persistent ones (BatchNorm's running stats) are in ``state_dict`` and
        checkpoints, one buffer whatever the plan (another shape is refused); the others (KV
        caches, carried RNN state) are per owner and shape (same shape: same memory)."""
        self._claim(name, "state")
        self._states.append(StateDecl(self._full(name), Spec(tuple(int(d) for d in shape), dtype),
                                      init, bool(persistent), name))

    def view_input(self, shape: tuple[int, ...]) -> Spec:
        """Return as the output spec to make the output a reshape of the (first) input: same
        memory, same gradient memory; forward returns ``ctx.y`` and backward has nothing to do."""
        self.alias = True
        return Spec(tuple(shape), self._dtype)

    def no_input_grad(self) -> None:
        """This op sends no gradient to its inputs (a stop-gradient, an index computation):
        the planner gives it no ``dx`` and its backward is not run for them."""
        self.grad_inputs = False

    # --- for composites -------------------------------------------------------------
    def call(self, layer: Layer, x: Value | Sequence[Value | None], name: str
             ) -> Value | tuple[Value, ...]:
        """Run child ``layer`` on ``x`` (a Value, or a tuple of them for a layer of several
        inputs); ``name`` extends the parameter path; ``""`` runs it under this composite's
        own path, its parameters beside the children's (PyTorch's ``in_proj_weight`` next to
        ``out_proj.weight``). Returns its output Value (a tuple for a layer of several
        outputs). Calling one layer object again shares its parameters."""
        return self._graph.call(layer, x, self.path if name == "" else self._full(name))

    def auto_name(self, layer: Layer) -> str:
        """A free child name for ``layer`` called as ``layer(x)`` inside ``build``: ``linear``,
        then ``linear_1``... (the same object called again keeps its first name's parameters)."""
        from .functional import snake_name

        base = snake_name(layer)
        k = self._auto[base] = self._auto.get(base, -1) + 1
        return base if k == 0 else f"{base}_{k}"

    def tie(self, alias: str, target: str) -> None:
        """Make parameter ``alias`` the same memory as ``target`` (names relative to this
        composite, e.g. ``tie("head.weight", "embed.weight")``); their gradients add up."""
        self._graph.tie(self._full(alias), self._full(target))

    def add(self, u: Value, v: Value) -> Value:
        """Elementwise sum of two values of the same shape (residual connections)."""
        from .ops.elementwise import Add

        if u.shape != v.shape:
            raise ShapeError(f"{self.path or 'model'}: cannot add shapes {u.shape} and {v.shape}")
        return self._graph.call(Add(), (u, v), self._full("add"))


def _arity_specs(x: Value | Sequence[Value | None], where: str) -> tuple[list[Value | None], bool]:
    """The inputs of one call as a list, and whether it was a single Value (then ``build``
    gets a Spec; otherwise a tuple of Specs, None where an optional input is absent)."""
    if isinstance(x, Value):
        return [x], True
    if isinstance(x, (tuple, list)) and x and all(v is None or isinstance(v, Value) for v in x):
        if all(v is None for v in x):
            raise ConfigError(f"{where}: called with no input")
        return list(x), False
    raise ConfigError(f"{where}: inputs must be a traced Value or a tuple of them, got {x!r}")


def _pad_optional(layer: Layer, inputs: list[Value | None], where: str
                  ) -> tuple[list[Value | None], bool]:
    """One Value for a layer that names several inputs, the others optional: the tuple its
    build expects, None for each optional one (``mha(x)`` as ``mha(x, None, None, None)``)."""
    names = tuple(layer.inputs)
    if len(names) < 2 or names[0].endswith("*"):
        return inputs, True
    needed = [n for n in names[1:] if not n.endswith(("?", "*"))]
    if needed:
        raise ConfigError(f"{where}: needs its inputs {', '.join(names)}; got one")
    return inputs + [None] * sum(n.endswith("?") for n in names[1:]), False


class Graph:
    """The tape of one plan: ops in forward order over values (a DAG: any op may read any
    earlier value; several inputs and outputs)."""

    def __init__(self, train: bool) -> None:
        self.train = train
        self.values: list[Value] = []
        self.ops: list[Op] = []
        self.ties: dict[str, str] = {}    # alias param name -> target param name
        self.declarations = 0             # parameters, buffers and states declared so far
        self._owners: dict[int, tuple[Layer, str]] = {}   # id(layer) -> (layer, its first path)

    def new_value(self, spec: Spec, producer: Op | None = None) -> Value:
        """A new value of ``spec``, produced by ``producer`` (None: a graph input)."""
        v = Value(spec, len(self.values), producer)
        self.values.append(v)
        return v

    def owner_path(self, layer: Layer, path: str) -> str:
        """Where ``layer``'s parameters and states live: the path of its first call. The same
        layer object called again (a siamese branch, a repeated block) shares them, and its
        ops' parameter gradients add up."""
        return self._owners.setdefault(id(layer), (layer, path))[1]

    def call(self, layer: Layer, x: Value | Sequence[Value | None], path: str,
             extra: list[Value] | None = None) -> Value | tuple[Value, ...]:
        """Trace ``layer`` on ``x`` (one value, or a sequence for a layer of several inputs) at
        ``path``: a composite is expanded into its children's ops, a primitive becomes one op; returns
        its output value(s)."""
        where = path or "model"
        if not isinstance(layer, Layer):
            raise ConfigError(f"{where}: {layer!r} is not a qorus Layer")
        if extra:                                   # the older two-input form: call(l, x, p, [v])
            x = (x, *extra)
        inputs, single = _arity_specs(x, f"layer {where} ({layer.type_name})")
        if single:
            inputs, single = _pad_optional(layer, inputs, f"layer {where} ({layer.type_name})")
        if isinstance(layer, Composite):
            from .functional import CURRENT_BUILDER

            token = CURRENT_BUILDER.set(LayerBuilder(self, path))
            try:
                y = layer.build(inputs[0] if single else tuple(inputs), CURRENT_BUILDER.get())
            finally:
                CURRENT_BUILDER.reset(token)
            if not (isinstance(y, Value) or (isinstance(y, tuple) and y
                                             and all(isinstance(v, Value) for v in y))):
                raise ConfigError(f"{where} ({layer.type_name}): a Composite's build must "
                                  "return the Value (or a tuple of Values) of its b.call/b.add")
            return y
        tick = len(self.ops)
        if tick >= MAX_OPS:
            raise ConfigError(f"layer {path or '<root>'} ({layer.type_name}): the model has more "
                              f"than {MAX_OPS:,} layer calls, more than a plan runs (is a layer "
                              "count such as n_layers far too large?)")
        ctx = LayerCtx(path, tick, self.train)
        params: list[ParamDecl] = []
        buffers: list[BufferDecl] = []
        states: list[StateDecl] = []
        b = LayerBuilder(self, self.owner_path(layer, path), params, buffers, states)
        first = inputs[0]
        b._dtype = first.dtype if first is not None else "f32"
        specs = [v.spec if v is not None else None for v in inputs]
        shapes = specs[0].shape if single else tuple(s.shape if s else None for s in specs)
        try:
            spec = layer.build(specs[0] if single else tuple(specs), b)
        except ShapeError as exc:
            raise ShapeError(f"{_where(layer, path, tick)}: {exc} (input shape"
                             f"{'' if single else 's'} {shapes})") from None
        out_specs = list(spec) if isinstance(spec, tuple) else [spec]
        if not out_specs or not all(isinstance(s, Spec) for s in out_specs):
            raise ConfigError(f"{_where(layer, path, tick)}: build must return a Spec (or a "
                              f"tuple of Specs), got {spec!r}")
        if b.alias and (first is None or len(out_specs) != 1
                        or out_specs[0].size != first.spec.size):
            raise ShapeError(f"{_where(layer, path, tick)}: view_input{out_specs[0].shape} does "
                             f"not fit input {first.shape if first is not None else None}")
        op = Op(layer, ctx, inputs, [], tick, b.alias, params, buffers, states, b.grad_inputs)
        op.outputs = [self.new_value(s, op) for s in out_specs]
        if b.alias:
            op.outputs[0].alias_of = first
        for pos, v in enumerate(inputs):
            if v is not None:
                v.uses.append((op, pos))
        self.ops.append(op)
        return op.outputs[0] if not isinstance(spec, tuple) else tuple(op.outputs)

    def count_declaration(self, where: str) -> None:
        """One more parameter, buffer or state; refused past ``MAX_DECLARATIONS``."""
        self.declarations += 1
        if self.declarations > MAX_DECLARATIONS:
            raise ConfigError(f"{where}: the model declares more than {MAX_DECLARATIONS:,} "
                              "parameters and buffers (is a layer count far too large?)")

    def trace(self, net: Layer, input_spec: Spec) -> tuple[Value, Value]:
        """Trace a whole network of one input and one output: ``(input value, output value)``."""
        x = self.new_value(input_spec)
        y = self.call(net, x, "")
        if isinstance(y, tuple):
            raise ConfigError(f"{net.type_name}: returns {len(y)} outputs; a model of several "
                              "outputs is a functional Model (Model(inputs=..., outputs=...))")
        return x, y

    def trace_many(self, net: Layer, input_specs: Sequence[Spec]
                   ) -> tuple[list[Value], list[Value]]:
        """Trace ``net`` on one Value per input spec (one is passed as a Value, several as a
        tuple); returns the input Values and the output Values."""
        xs = [self.new_value(s) for s in input_specs]
        y = self.call(net, xs[0] if len(xs) == 1 else tuple(xs), "")
        return xs, list(y) if isinstance(y, tuple) else [y]

    def tie(self, alias: str, target: str) -> None:
        """Make parameter ``alias`` share ``target``'s memory (tied embeddings); ConfigError if either
        is tied already."""
        if alias == target or alias in self.ties:
            raise ConfigError(f"cannot tie parameter {alias!r} to {target!r}: already tied")
        self.ties[alias] = target

    def resolve(self, name: str) -> str:
        """The parameter that owns the memory of ``name`` (itself unless tied)."""
        while name in self.ties:
            name = self.ties[name]
        return name

    def params(self) -> list[ParamDecl]:
        """The distinct parameters in declaration order (tied aliases left out, checked; the
        second call of a shared layer declares the same names again: one parameter)."""
        seen: dict[str, ParamDecl] = {}
        by: dict[str, Layer] = {}
        for op in self.ops:
            for p in op.params:
                if p.name in seen:
                    if by[p.name] is op.layer and seen[p.name].shape == p.shape:
                        continue                  # a shared layer, called again
                    raise ConfigError(f"two parameters named {p.name!r}" + (
                        f": the shared layer {op.layer.type_name} declared it "
                        f"{seen[p.name].shape} on its first call and {p.shape} at "
                        f"{op.ctx.path} (call a shared layer on inputs of one feature size)"
                        if by[p.name] is op.layer else ""))
                seen[p.name], by[p.name] = p, op.layer
        for alias, target in self.ties.items():
            for name in (alias, target):
                if name not in seen:
                    raise ConfigError(f"tie {alias!r} -> {target!r}: no parameter named {name!r}")
            if seen[alias].shape != seen[target].shape:
                raise ConfigError(f"tie {alias!r} -> {target!r}: shapes {seen[alias].shape} and "
                                  f"{seen[target].shape} differ")
        return [p for p in seen.values() if p.name not in self.ties]

    def states(self) -> list[StateDecl]:
        """Every state buffer declared in this plan, checked for duplicate names (a shared
        layer's second call declares its own again: one buffer, if the spec agrees)."""
        out: dict[str, StateDecl] = {}
        by: dict[str, Layer] = {}
        for op in self.ops:
            for s in op.states:
                if s.name in out:
                    if by[s.name] is op.layer and out[s.name].spec == s.spec:
                        continue
                    raise ConfigError(f"two state buffers named {s.name!r}")
                out[s.name], by[s.name] = s, op.layer
        return list(out.values())
