"""Model: a network of registered layers, compiled to plans over one state arena.

``Model(net, input_shape)`` traces the network once to declare its parameters and initialise
them (seeded). ``plan(batch, train)`` compiles, and caches, a plan for that batch size and mode:
the training batch, the last partial batch, and inference each get their own activation arena
while sharing the parameters, gradients and optimizer state. The cache keeps the 16 plans
used last (``PlanCache``); ``sequence()`` makes a ``Sequence``: its own plans, state buffers
(KV caches) and position over these weights.

Plans never go stale silently: making room for gradients or optimizer state (a training plan,
``reserve_optimizer_state``, an optimizer's ``bind``) reallocates the state arena, and
``set_kernels`` changes the kernels; a plan compiled before either then raises
``StalePlanError`` (a ``ConfigError``) naming the change when called, instead of computing on a
detached copy of the weights. ``plan()`` recompiles, and sequences and generators recompile by
themselves (bind the optimizer before compiling plans you keep). A model over mapped files
(``weight_files``, e.g. a GGUF file's weights) checks them before each forward and raises
naming the file if one was truncated or rewritten in place (``qorus_core.io.mapped``).

Thread safety: ``predict`` may be called from several threads; calls on one model run one
after another (a lock held for the whole call; each call already uses every core through the
kernel pool), so give each thread its own ``model.sequence()`` for calls that run at the same
time. ``plan`` and ``sequence`` are thread-safe; running one plan, or one sequence, from two
threads at once is not. Training (``Trainer``, ``plan(train=True)``, ``load_state_dict``,
``set_kernels``) is not thread-safe: train from one thread, with no inference running.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import CheckpointError, ConfigError, ShapeError
from .functional import Functional
from .graph import Graph
from .kernels import get_kernels
from .layer import Layer, allow_layer_imports, layer_from_dict, layer_to_dict
from .params import ParamStore
from .plan import Plan, RunState
from .plan_cache import DEFAULT_CAPACITY, PlanCache
from .sequence import Sequence
from .states import StateStore
from .tensor import DTYPES, Spec, Tensor
from .validate import boolean, nonneg_int, positive_int


class Model:
    """A compiled-on-demand network with its parameters: ``Model(net, input_shape)`` for a
    network of one input and one output, ``Model(inputs=..., outputs=...)`` for a functional
    graph (``qorus_core.Input``) of named inputs and outputs."""

    def __init__(self, net: Layer | dict[str, Any] | None = None,
                 input_shape: tuple[int, ...] | list[int] | None = None,
                 input_dtype: str = "f32", seed: int = 0, kernels: Any = None,
                 external_params: dict[str, Any] | None = None,
                 weight_files: tuple[Any, ...] | list[Any] = (), *,
                 inputs: Any = None, outputs: Any = None) -> None:
        """``external_params``: name -> Tensor or ``QWeight`` used where it lies (a GGUF
        file's mmap) instead of arena memory; such a model runs inference plans only.
        ``weight_files``: the mapped files those weights lie in (each with
        ``check_unchanged()``, e.g. a ``GGUFFile``), checked before every forward.
        ``inputs`` / ``outputs``: the Input nodes and the output nodes (a node, a list, or a
        dict naming them) of a functional graph, instead of ``net``."""
        if inputs is not None or outputs is not None:
            if net is not None or inputs is None or outputs is None:
                raise ConfigError("Model: give either net (and input_shape) or both inputs= and "
                                  "outputs= (the functional API)")
            net = Functional.from_nodes(inputs, outputs)
        if net is None:
            raise ConfigError("Model: no network given (Model(net, input_shape) or "
                              "Model(inputs=..., outputs=...))")
        self.net = layer_from_dict(net)
        if isinstance(self.net, Functional):
            specs = self.net.input_specs()
            if input_shape is not None and (len(specs) != 1 or tuple(input_shape) != specs[0].shape):
                raise ConfigError(f"Model: input_shape {input_shape!r} differs from the "
                                  f"functional graph's inputs {[s.shape for s in specs]}")
            self.input_names = self.net.input_names
            self.output_names = self.net.output_names
            self.grad_inputs = {i for i, d in enumerate(self.net.inputs_cfg) if d["grad"]}
            self._bools = {d["name"] for d in self.net.inputs_cfg if d["dtype"] == "bool"}
        else:
            if not isinstance(input_shape, (tuple, list)):
                raise ConfigError(f"Model: input_shape must be a list of positive ints, got "
                                  f"{input_shape!r}")
            if not isinstance(input_dtype, str) or input_dtype not in DTYPES:
                raise ConfigError(f"input_dtype {input_dtype!r}: expected one of {sorted(DTYPES)}")
            specs = [Spec(tuple(positive_int(d, "input_shape", "Model") for d in input_shape),
                          input_dtype)]
            self.input_names, self.output_names = ("x",), ("y",)
            self.grad_inputs, self._bools = set(), set()
        self.input_specs = dict(zip(self.input_names, specs))
        self.input_shape, self.input_dtype = specs[0].shape, specs[0].dtype
        self.seed = nonneg_int(seed, "seed", "Model")
        self.kernels = get_kernels(kernels)
        self.run = RunState()
        self._predict_lock = threading.Lock()
        graph = Graph(train=False)
        _, ys = graph.trace_many(self.net, [Spec((1,) + s.shape, s.dtype) for s in specs])
        if len(ys) != len(self.output_names):
            raise ConfigError(f"Model: {self.net.type_name} returns {len(ys)} outputs; a model of "
                              "several outputs is a functional Model (Model(inputs=..., outputs=...))")
        self.output_specs = {n: Spec(v.shape[1:], v.dtype) for n, v in zip(self.output_names, ys)}
        self.output_shape, self.output_dtype = ys[0].shape[1:], ys[0].dtype
        if not isinstance(weight_files, (tuple, list)):
            raise ConfigError(f"Model: weight_files must be a tuple of mapped files, got "
                              f"{weight_files!r}")
        self.store = ParamStore(graph.params(), self.seed, external_params, tuple(weight_files))
        self._plans = PlanCache(DEFAULT_CAPACITY, self.store)   # drops stale plans by itself
        self.ties = dict(graph.ties)
        self.states = StateStore(self.seed, weak=True)   # freed with the plans that use them
        for s in graph.states():
            if s.persistent:                    # in state_dict from the start
                self.states.get(s)

    # ----------------------------------------------------------------- plans
    def plan(self, batch: int, train: bool = False, input_grad: bool = False,
             shape: tuple[int, ...] | dict[str, tuple[int, ...]] | None = None) -> Plan:
        """The compiled plan for ``batch`` rows in train or inference mode (cached); ``shape``
        overrides the per-example input shape (a language model's sequence length; a dict by
        input name for a model of several inputs). ``input_grad``: every f32 input gets a
        gradient (else only the Inputs made with ``grad=True``). Its state buffers and
        ``run`` are the model's own; a ``sequence()`` has others."""
        key = self.plan_key(batch, train, input_grad, shape)
        return self._plans.get(key, lambda: self.compile_plan(key, self.run, self.states))

    def plan_key(self, batch: int, train: bool, input_grad: bool,
                 shape: tuple[int, ...] | dict[str, tuple[int, ...]] | None) -> tuple:
        """The cache key of a plan, its arguments checked (a batch size is a positive int,
        not a bool; ``shape`` a tuple of them, or for several inputs a dict of such tuples by
        name, kept in the key as a tuple of them in input order; the flags true or false)."""
        batch = positive_int(batch, "batch", "Model.plan")
        names = self.input_names
        if isinstance(shape, dict):
            unknown = sorted(set(shape) - set(names))
            if unknown:
                raise ConfigError(f"Model.plan: shape names unknown inputs {unknown} (inputs: "
                                  f"{list(names)})")
            shapes = tuple(_shape(shape.get(n, self.input_specs[n].shape)) for n in names)
        elif shape is None:
            shapes = tuple(s.shape for s in self.input_specs.values())
        elif len(names) == 1:
            shapes = (_shape(shape),)
        else:
            raise ConfigError(f"Model.plan: a model of inputs {list(names)} takes shape as a "
                              "dict of per-input shapes")
        return (batch, boolean(train, "train", "Model.plan"),
                boolean(input_grad, "input_grad", "Model.plan"),
                shapes[0] if len(shapes) == 1 else shapes)

    def compile_plan(self, key: tuple, run: RunState, states: StateStore) -> Plan:
        """A new plan for ``key`` (``plan_key``) whose layers read ``run`` and keep their
        state buffers in ``states``: the model's, or a sequence's. Not cached here."""
        batch, train, input_grad, shape = key
        if train and self.store.external:
            raise ConfigError("this model's weights are external (e.g. a GGUF file): it runs "
                              "inference only")
        if train:             # room for the grads: the arena may move (the caches drop stale plans)
            self.store.ensure(True, self.store.n_slots)
        shapes = (shape,) if len(self.input_names) == 1 else shape
        graph = Graph(train=train)
        xs, ys = graph.trace_many(self.net, [Spec((batch,) + s, spec.dtype) for s, spec in
                                             zip(shapes, self.input_specs.values())])
        self.store.check_same(graph.params())
        return Plan(graph, xs, ys, self.store, self.kernels, run, batch,
                    input_grad=True if input_grad else self.grad_inputs, states=states,
                    input_names=self.input_names, output_names=self.output_names)

    def sequence(self, max_plans: int = DEFAULT_CAPACITY) -> Sequence:
        """A new ``Sequence`` over this model: its own inference plans, non-persistent state
        buffers (KV caches) and ``run.pos``; the weights and persistent buffers are shared."""
        return Sequence(self, max_plans)

    @property
    def plans_version(self) -> int:
        """Bumped when every plan compiled before goes stale (the state arena moved, or
        ``set_kernels``); the plan caches (the model's, each sequence's) and generators
        compare it and recompile."""
        return self.store.generation

    @property
    def weight_files(self) -> tuple[Any, ...]:
        """The mapped files the external weights lie in (checked before every forward)."""
        return self.store.files

    def check_weight_files(self) -> None:
        """Raise (a ``GGUFError`` for a GGUF file) naming a weight file that was truncated or
        rewritten since it was opened; one ``fstat`` per file. Plans call it in ``forward``;
        a replayed decode step, which bypasses ``forward``, calls it itself."""
        self.store.check_files()

    def reserve_optimizer_state(self, slots: int) -> None:
        """Make room for ``slots`` parameter-sized optimizer buffers (and the grads). If the
        arena grows, the weights move: plans compiled before are stale (they raise)."""
        self.store.ensure(True, slots)

    def set_kernels(self, kernels: Any) -> None:
        """Switch kernel sets (``"c"``, ``"numpy"`` or a set). Plans compiled before are stale
        (calling one raises ``StalePlanError``); the model, its sequences and generators
        compile new ones."""
        self.kernels = get_kernels(kernels)
        name = getattr(self.kernels, "name", type(self.kernels).__name__)
        self.store.invalidate(f"set_kernels switched the model to the {name!r} kernels, which "
                              "this plan does not use")

    # ----------------------------------------------------------------- parameters
    @property
    def params(self) -> Tensor:
        """All parameters as one flat float32 Tensor (alignment padding included)."""
        return self.store.params

    @property
    def grads(self) -> Tensor | None:
        """The flat gradient region of the state arena (None until a training plan declared it)."""
        return self.store.grads

    @property
    def num_parameters(self) -> int:
        """The number of trainable values."""
        return self.store.count

    def parameters(self) -> dict[str, np.ndarray]:
        """Name -> live view of each parameter (writing to it changes the model)."""
        return {name: t.a for name, t in self.store.tensors.items()}

    def gradients(self) -> dict[str, np.ndarray]:
        """Name -> live view of each parameter's gradient."""
        return {name: t.a for name, t in self.store.grad_tensors.items()}

    def zero_grad(self) -> None:
        """Set every gradient to 0 (they accumulate over a step's backward pass)."""
        if self.store.grads is not None:
            self.kernels.fill(self.store.grads, 0.0)

    def buffers(self) -> dict[str, np.ndarray]:
        """Name -> live view of the model's state buffers (``b.state``): the persistent ones
        and those of its own plans still cached; a ``Sequence`` has its own (``seq.buffers()``)."""
        return self.states.arrays()

    def _saved_arrays(self) -> dict[str, np.ndarray]:
        """Live views of what a state_dict holds: the parameters in the arena (a tied alias is
        its target; external weights stay in their file) and the persistent state buffers."""
        out = {name: t.a for name, t in self.store.tensors.items()}
        out.update(self.states.arrays(persistent_only=True))
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the parameters and of the persistent state buffers (e.g. BatchNorm's
        running statistics), under PyTorch's names."""
        return {name: a.copy() for name, a in self._saved_arrays().items()}

    def load_state_dict(self, state: dict[str, np.ndarray], source: str = "state") -> None:
        """Copy weights in; every parameter and persistent buffer must be present with its exact
        shape. A tied alias (PyTorch lists both names) may be present and must equal its target."""
        mine = self._saved_arrays()
        missing = sorted(set(mine) - set(state))
        extra = sorted(set(state) - set(mine) - set(self.ties))
        if missing or extra:
            raise CheckpointError(f"{source}: missing parameters {missing}, unexpected {extra}")
        for name, a in mine.items():
            v = np.asarray(state[name])
            if v.shape != a.shape and not (v.ndim == 0 and a.size == 1):   # PyTorch's 0-d counters
                raise CheckpointError(f"{source}: parameter {name} has shape {v.shape}, "
                                      f"the model expects {a.shape}")
            a[...] = v
        for alias, target in self.ties.items():
            if alias in state and not np.array_equal(np.asarray(state[alias]), mine[target]):
                raise CheckpointError(f"{source}: {alias} is tied to {target} but differs from it")

    # ----------------------------------------------------------------- running
    def check_input(self, x: np.ndarray, what: str = "input") -> np.ndarray:
        """Validate a batch for a model of one input; returns it as an ndarray."""
        if len(self.input_names) != 1:
            raise ShapeError(f"model {what}: this model has inputs {list(self.input_names)}; "
                             "give a dict of arrays by name")
        return self.check_inputs(x, what)[0]

    def check_inputs(self, x: Any, what: str = "input") -> list[np.ndarray]:
        """Validate a batch against the input specs: an array (one input), a dict of arrays by
        input name, or a list in input order; returns the arrays in input order. Errors name
        the input and the shape or dtype at fault."""
        names = self.input_names
        if isinstance(x, dict):
            missing, extra = [n for n in names if n not in x], sorted(set(x) - set(names))
            if missing or extra:
                raise ShapeError(f"model {what}: inputs {list(names)} expected; missing "
                                 f"{missing}, unexpected {extra}")
            arrays = [x[n] for n in names]
        elif isinstance(x, (list, tuple)) and len(names) > 1:
            if len(x) != len(names):
                raise ShapeError(f"model {what}: {len(x)} arrays for inputs {list(names)}")
            arrays = list(x)
        elif len(names) == 1:
            arrays = [x]
        else:
            raise ShapeError(f"model {what}: this model has inputs {list(names)}; give a dict "
                             "of arrays by name")
        out = []
        for n, a in zip(names, arrays):
            a, spec = np.asarray(a), self.input_specs[n]
            label = what if len(names) == 1 else f"{what} {n!r}"
            if a.ndim != len(spec.shape) + 1 or tuple(a.shape[1:]) != spec.shape:
                raise ShapeError(f"model {label}: expected shape (N, "
                                 f"{', '.join(map(str, spec.shape))}), got {tuple(a.shape)}")
            ok = "b" if n in self._bools else "fiu" if spec.dtype == "f32" else "iu"
            if a.dtype.kind not in ok:
                want = "bool" if n in self._bools else spec.dtype
                raise ShapeError(f"model {label}: dtype {a.dtype} cannot feed a {want} input")
            out.append(a)
        if len({len(a) for a in out}) > 1:
            raise ShapeError(f"model {what}: inputs of different lengths "
                             f"{dict(zip(names, (len(a) for a in out)))}")
        return out

    def predict(self, x: Any, batch_size: int = 256) -> Any:
        """Inference on any number of rows, in chunks of ``batch_size``; returns new arrays:
        one for a model of one output, else a dict (or list) as the outputs were given.
        Thread-safe: concurrent calls take turns (one lock per model); a ``sequence()`` per
        thread runs them at the same time."""
        with self._predict_lock:
            return self.predict_with(self.plan, x, batch_size)

    def predict_with(self, plan: Callable[[int], Plan], x: Any, batch_size: int) -> Any:
        """``predict`` through ``plan(rows)`` (the model's plans or a sequence's)."""
        positive_int(batch_size, "batch_size", "predict")
        xs = self.check_inputs(x)
        n = len(xs[0])
        outs = {k: np.empty((n,) + s.shape, DTYPES[s.dtype]) for k, s in self.output_specs.items()}
        for start in range(0, n, batch_size):
            rows = min(batch_size, n - start)
            p = plan(rows)
            for name, a in zip(self.input_names, xs):
                p.inputs[name].a[...] = a[start:start + rows]
            p.forward()
            for k, out in outs.items():
                out[start:start + rows] = p.outputs[k].a
        form = self.net.outputs if isinstance(self.net, Functional) else None
        if isinstance(form, dict):
            return outs
        if isinstance(form, list):
            return [outs[k] for k in self.output_names]
        return outs[self.output_names[0]]

    def __call__(self, x: Any, *more: Any, **named: Any) -> Any:
        """On arrays: ``predict``. On functional Nodes (``Input`` and calls on them): this
        model's network called as a layer, so a model nests in another (its parameters
        under the outer model's name for it)."""
        from .functional import Node

        if isinstance(x, Node) or any(isinstance(v, Node) for v in (*more, *named.values())):
            return self.net(x, *more, **named)
        return self.predict(x, *more, **named)

    def memory_report(self) -> dict[str, Any]:
        """Bytes per region of the state arena, and per compiled plan."""
        report: dict[str, Any] = dict(self.store.memory())
        report["states"] = self.states.nbytes()
        report["plans"] = {f"batch={b},{'train' if t else 'infer'},shape={s}": p.memory()
                           for (b, t, _, s), p in self._plans.items()}
        return report

    def summary(self, batch_size: int = 1, print_fn: Callable[[str], Any] | None = print) -> str:
        """A table of the ops (path, type, output shape, parameters), the totals and the arena
        bytes of an inference plan of ``batch_size`` rows; printed through ``print_fn``
        (None: not printed) and returned."""
        from .summary import summary_text

        text = summary_text(self, positive_int(batch_size, "batch_size", "Model.summary"))
        if print_fn is not None:
            print_fn(text)
        return text

    def save(self, path: str | Any) -> Any:
        """Write the model (config and weights) as a checkpoint directory, atomically; load it
        with ``Model.load``. Returns the path."""
        from .train.checkpoint import save_checkpoint

        return save_checkpoint(path, self)

    @classmethod
    def load(cls, path: str | Any, kernels: Any = None, trust_code: bool = False) -> Model:
        """The model saved at ``path`` (by ``save`` or a Trainer checkpoint); ``trust_code``
        as ``load_checkpoint``'s (unregistered layer types import only when True)."""
        from .train.checkpoint import load_checkpoint

        return load_checkpoint(path, kernels=kernels, trust_code=trust_code).model

    # ----------------------------------------------------------------- config
    def get_config(self) -> dict[str, Any]:
        """The model as plain data: the network's layer dict, the input shape and dtype (a functional
        graph carries its own) and the seed."""
        if isinstance(self.net, Functional):        # its inputs carry their shapes
            return {"net": layer_to_dict(self.net), "seed": self.seed}
        return {"net": layer_to_dict(self.net), "input_shape": list(self.input_shape),
                "input_dtype": self.input_dtype, "seed": self.seed}

    @classmethod
    def from_config(cls, config: dict[str, Any], kernels: Any = None,
                    allow_import: bool = False) -> Model:
        """``allow_import``: import ``module:Class`` layer types (trusted configs only; see
        ``layer_from_dict``); refused by default."""
        try:
            with allow_layer_imports(allow_import):
                return cls(config["net"], config.get("input_shape") if _is_functional(
                    config["net"]) else config["input_shape"], config.get("input_dtype", "f32"),
                    config.get("seed", 0), kernels)
        except KeyError as exc:
            raise ConfigError(f"model config lacks {exc}") from None

    def __repr__(self) -> str:
        if isinstance(self.net, Functional):
            return (f"Model(inputs={list(self.input_names)}, outputs={list(self.output_names)}, "
                    f"params={self.num_parameters})")
        return (f"Model({self.net!r}, input_shape={self.input_shape}, "
                f"params={self.num_parameters})")


def _shape(shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, (tuple, list)):
        raise ConfigError(f"Model.plan: shape must be a tuple of positive ints, got {shape!r}")
    return tuple(positive_int(d, "shape", "Model.plan") for d in shape)


def _is_functional(net: Any) -> bool:
    return isinstance(net, Functional) or (isinstance(net, dict)
                                           and net.get("type") == "core.Functional")
