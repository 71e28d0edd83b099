"""The Layer contract that every plugin implements.

A layer object holds hyperparameters only (a JSON-able config). Compiling a model for an input
shape calls ``build`` once per plan; running it calls ``forward`` and ``backward`` with planned
``Tensor`` views and a per-plan ``LayerCtx`` holding everything ``build`` declared.

Primitive layer (``Layer``)::

    def build(self, x: Spec, b: LayerBuilder) -> Spec      # declare params and buffers
    def forward(self, x: Tensor, ctx: LayerCtx) -> Tensor  # write ctx.y, return it
    def backward(self, dy: Tensor, ctx: LayerCtx) -> Tensor | None
        # write ctx.dx (None when the input needs no gradient) and *add* into param grads

Several inputs and outputs: ``inputs = ("x", "mask?")`` names them (``?`` optional, ``*``
variadic). ``build`` then gets a tuple of Specs (None for an absent optional input) and may
return a tuple of Specs; ``forward`` and ``backward`` read ``ctx.xs``, ``ctx.ys``,
``ctx.dxs`` (None where no gradient is wanted) and ``ctx.dys`` (``ctx.x``, ``ctx.y``,
``ctx.dx`` are the first of each). Backward writes every ``ctx.dxs`` entry that is not None.

Composite layer (``Composite``): ``build(x: Value, b) -> Value`` wires child layers with
``b.call(child, x, name)``, ``b.add(u, v)``, or by calling them (``Linear(8, 4)(x)``,
``ops.concat([u, v])``: ``b.call`` under a generated name); it writes no forward or
backward, the graph runs them (forward in order, backward in reverse, fan-out gradients
summed). The same layer object called twice holds one set of parameters.

The functional API calls layers on ``Input`` nodes instead (``qorus_core.functional``).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ClassVar

from .errors import ConfigError, ShapeError
from .tensor import Tensor
from .validate import boolean, config_keys


class LayerCtx:
    """What one layer sees at run time in one plan.

    Always present: ``k`` (the kernel set), ``train`` (bool), ``path`` (e.g. ``"layers.2"``),
    ``run`` (the plan's ``RunState``: ``step`` counts training forwards, for seeded RNG),
    ``x`` (input Tensor, alive until backward in train plans), ``y`` (output Tensor) and
    ``dx`` (input-gradient Tensor, or None when the input needs no gradient). Plus, by the
    names given to the builder: each param ``<name>`` and its gradient ``d<name>`` (train
    plans), and each saved or scratch buffer.
    """

    def __init__(self, path: str, index: int, train: bool) -> None:
        self.path = path
        self.index = index
        self.train = train
        self.k: Any = None
        self.run: Any = None
        self.x: Any = None
        self.y: Any = None
        self.dx: Any = None

    def view(self, t: Tensor, shape: tuple[int, ...], offset: int = 0) -> Tensor:
        """A Tensor of ``shape`` over ``t``'s memory from element ``offset`` (a reshape, a head
        split, a row window), made on the first call and cached on this ctx: a layer's
        forward and backward call it every step and create no array after the first."""
        cache = self.__dict__.setdefault("_views", {})
        key = (t.p, tuple(shape), offset)
        v = cache.get(key)
        if v is None:
            n = 1
            for d in shape:
                n *= d
            flat = t.a.reshape(-1)
            if offset < 0 or offset + n > flat.size:
                raise ShapeError(f"{self.path or 'layer'}: a view of {tuple(shape)} at element "
                                 f"{offset} does not fit {t.name or 'tensor'} {t.shape}")
            v = cache[key] = Tensor(flat[offset:offset + n].reshape(shape), t.name)
        return v

    def __repr__(self) -> str:
        return f"LayerCtx({self.path!r})"


class Layer:
    """Base of primitive layers. ``registry_name`` is set when a plugin registers the class."""

    registry_name: ClassVar[str] = ""
    #: True when the inference forward does nothing but kernel calls through ``ctx.k`` on the
    #: tensors the plan gave it (no NumPy writes, no Python-side state): then a captured plan
    #: (``qorus_core.replay``) can make those calls from C. Left False, capture declines.
    replayable: ClassVar[bool] = False
    #: the names of the inputs, in order: ``build`` gets one Spec for a layer of one input,
    #: else a tuple (None where an optional one, marked ``?``, is absent; a last name marked
    #: ``*`` takes any number). Keywords of ``layer(...)`` in the functional API.
    inputs: ClassVar[tuple[str, ...]] = ("x",)

    # --- the contract ---------------------------------------------------------------
    def build(self, x, b):  # pragma: no cover - abstract
        """Declare params and buffers on ``b`` for input spec ``x``; return the output Spec."""
        raise NotImplementedError(f"{type(self).__name__}.build")

    def forward(self, x, ctx: LayerCtx):  # pragma: no cover - abstract
        """Compute the output into ``ctx.y`` (or ``ctx.ys``) from ``x`` with kernels (``ctx.k``) on the
        planned views, and return it; allocate nothing."""
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, dy, ctx: LayerCtx):  # pragma: no cover - abstract
        """Write the input gradient into ``ctx.dx`` (None when no gradient is wanted) and add into each
        parameter's gradient (``ctx.d<name>``); return ``ctx.dx``."""
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def __call__(self, *inputs, name: str | None = None, **named):
        """Call this layer on ``Input`` nodes or other calls' outputs (the functional API;
        returns the output node, a tuple for several), or on traced Values inside a
        ``Composite.build`` (``b.call`` under a generated name). ``name`` names the layer
        (its parameters' prefix) at its first call."""
        from .functional import call_layer

        return call_layer(self, inputs, {**named, "name": name})

    # --- configuration --------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, read from same-named attributes (Keras' convention)."""
        cfg = {}
        for name, p in inspect.signature(type(self).__init__).parameters.items():
            if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if not hasattr(self, name):
                raise ConfigError(f"{type(self).__name__}.get_config: no attribute {name!r}; "
                                  "store each constructor argument or override get_config")
            cfg[name] = getattr(self, name)
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        """The layer made from ``get_config()``'s dict; a misspelt or unknown key is a ConfigError
        naming the close matches."""
        config_keys(cls, config, f"{cls.registry_name or cls.__name__}")
        try:
            return cls(**config)
        except TypeError as exc:
            raise ConfigError(f"{cls.registry_name or cls.__name__}: bad config {config}: {exc}") from None

    @property
    def type_name(self) -> str:
        """The registered name (``mlp.Linear``); ``module:Class`` for an unregistered class,
        which ``layer_from_dict`` imports only when its caller opts in with ``allow_import``
        (ad-hoc layers round-trip through trusted files only)."""
        from .registry import registered_name

        cls = type(self)
        return registered_name(cls, "layer") or f"{cls.__module__}:{cls.__qualname__}"

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{self.type_name}({args})"


class Composite(Layer):
    """Base of layers built from other layers: implement ``build(x: Value, b) -> Value`` only."""

    def forward(self, x, ctx):  # pragma: no cover - never called
        """Never called: a composite runs as the graph its ``build`` traced, whose backward is
        derived."""
        raise TypeError("a Composite runs through its graph, not forward()")

    backward = forward


def layer_to_dict(layer: Layer) -> dict[str, Any]:
    """``{"type": registered name, "config": {...}}``: how layers live in TOML/JSON."""
    return {"type": layer.type_name, "config": layer.get_config()}


#: True while a trusted caller's ``layer_from_dict(..., allow_import=True)`` builds a layer, so
#: containers (``Sequential``, ``Residual``, a plugin's composite) resolving their children
#: through ``layer_from_dict`` inherit the permission without passing it down themselves.
_IMPORT_ALLOWED: ContextVar[bool] = ContextVar("qorus_layer_import_allowed", default=False)


@contextmanager
def allow_layer_imports(allow: bool = True) -> Iterator[None]:
    """Within the block, ``module:Class`` layer types are imported (``allow=True``) or refused
    (``allow=False``), whatever an outer caller allowed. For code that builds a model from a
    trusted config through an API without an ``allow_import`` parameter. The permission is
    per thread (a context variable: another thread, or a thread started within the block,
    starts refused) and is restored when the block ends, by an exception too."""
    token = _IMPORT_ALLOWED.set(boolean(allow, "allow", "allow_layer_imports"))
    try:
        yield
    finally:
        _IMPORT_ALLOWED.reset(token)


def layer_from_dict(spec: dict[str, Any] | Layer, allow_import: bool | None = None) -> Layer:
    """Inverse of ``layer_to_dict``; also accepts flat ``{"type": ..., **config}`` tables.

    ``type`` names a registered layer. A ``module:Class`` type (an unregistered layer, as
    ``type_name`` writes it) would import that module, running its code, so it is refused
    unless ``allow_import=True``: pass that only for a config you trust (as PyTorch's
    ``weights_only``). ``None`` inherits the enclosing call's choice (default: refuse), so
    children built by a container follow the top-level caller. Layer objects pass through."""
    if isinstance(spec, Layer):
        return spec
    if not isinstance(spec, dict) or "type" not in spec:
        raise ConfigError(f"a layer entry needs a 'type' naming a registered layer, got {spec!r}")
    allowed = (_IMPORT_ALLOWED.get() if allow_import is None
               else boolean(allow_import, "allow_import", "layer_from_dict"))
    if not isinstance(spec["type"], str):
        raise ConfigError(f"layer 'type' must be a string naming a registered layer, "
                          f"got {spec['type']!r}")
    config = spec.get("config", {})
    if not isinstance(config, dict):
        raise ConfigError(f"layer {spec['type']!r}: 'config' must be a table, got {config!r}")
    config = dict(config)
    config.update({k: v for k, v in spec.items() if k not in ("type", "config")})
    with allow_layer_imports(allowed):
        cls = _resolve(spec["type"], allowed)
        return cls.from_config(config)


def _resolve(type_name: str, allow_import: bool) -> type:
    """A registered layer name, or (only with ``allow_import``) ``module:Class``."""
    if ":" in type_name:
        if not allow_import:
            raise ConfigError(
                f"layer type {type_name!r} names a Python module to import, which would run its "
                "code; model files and configs may name registered layers only. If you trust "
                "this file, opt in: layer_from_dict(spec, allow_import=True), "
                "Model.from_config(config, allow_import=True), load_checkpoint(path, "
                "trust_code=True) or `qorus train --trust-code`; or register the layer in a plugin")
        import importlib

        module, _, qual = type_name.partition(":")
        try:
            obj: Any = importlib.import_module(module)
            for part in qual.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError, ValueError, TypeError) as exc:  # "", ":X", ".rel"
            raise ConfigError(f"layer type {type_name!r} cannot be imported: {exc}") from None
        if not (isinstance(obj, type) and issubclass(obj, Layer)):
            raise ConfigError(f"layer type {type_name!r} is not a Layer class")
        return obj
    from .registry import get_registry

    return get_registry().get("layer", type_name)
