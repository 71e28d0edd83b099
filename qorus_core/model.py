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
    """A compiled-on-demand network with its parameters."""

    def __init__(self, net: Layer | dict[str, Any], input_shape: tuple[int, ...] | list[int],
                 input_dtype: str = "f32", seed: int = 0, kernels: Any = None,
                 external_params: dict[str, Any] | None = None,
                 weight_files: tuple[Any, ...] | list[Any] = ()) -> None:
        """``external_params``: name -> Tensor or ``QWeight`` used where it lies (a GGUF
        file's mmap) instead of arena memory; such a model runs inference plans only.
        ``weight_files``: the mapped files those weights lie in (each with
        ``check_unchanged()``, e.g. a ``GGUFFile``), checked before every forward."""
        self.net = layer_from_dict(net)
        if not isinstance(input_shape, (tuple, list)):
            raise ConfigError(f"Model: input_shape must be a list of positive ints, got "
                              f"{input_shape!r}")
        self.input_shape = tuple(positive_int(d, "input_shape", "Model") for d in input_shape)
        if not isinstance(input_dtype, str) or input_dtype not in DTYPES:
            raise ConfigError(f"input_dtype {input_dtype!r}: expected one of {sorted(DTYPES)}")
        self.input_dtype = input_dtype
        self.seed = nonneg_int(seed, "seed", "Model")
        self.kernels = get_kernels(kernels)
        self.run = RunState()
        self._predict_lock = threading.Lock()
        graph = Graph(train=False)
        _, y = graph.trace(self.net, Spec((1,) + self.input_shape, input_dtype))
        self.output_shape = y.shape[1:]
        self.output_dtype = y.dtype
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
             shape: tuple[int, ...] | None = None) -> Plan:
        """The compiled plan for ``batch`` rows in train or inference mode (cached); ``shape``
        overrides the per-example input shape (a language model's sequence length). Its state
        buffers and ``run`` are the model's own; a ``sequence()`` has others."""
        key = self.plan_key(batch, train, input_grad, shape)
        return self._plans.get(key, lambda: self.compile_plan(key, self.run, self.states))

    def plan_key(self, batch: int, train: bool, input_grad: bool,
                 shape: tuple[int, ...] | None) -> tuple:
        """The cache key of a plan, its arguments checked (a batch size is a positive int,
        not a bool; ``shape`` a tuple of them; the flags true or false)."""
        batch = positive_int(batch, "batch", "Model.plan")
        if shape is None:
            shape = self.input_shape
        elif isinstance(shape, (tuple, list)):
            shape = tuple(positive_int(d, "shape", "Model.plan") for d in shape)
        else:
            raise ConfigError(f"Model.plan: shape must be a tuple of positive ints, got {shape!r}")
        return (batch, boolean(train, "train", "Model.plan"),
                boolean(input_grad, "input_grad", "Model.plan"), shape)

    def compile_plan(self, key: tuple, run: RunState, states: StateStore) -> Plan:
        """A new plan for ``key`` (``plan_key``) whose layers read ``run`` and keep their
        state buffers in ``states``: the model's, or a sequence's. Not cached here."""
        batch, train, input_grad, shape = key
        if train and self.store.external:
            raise ConfigError("this model's weights are external (e.g. a GGUF file): it runs "
                              "inference only")
        if train:             # room for the grads: the arena may move (the caches drop stale plans)
            self.store.ensure(True, self.store.n_slots)
        graph = Graph(train=train)
        x, y = graph.trace(self.net, Spec((batch,) + shape, self.input_dtype))
        self.store.check_same(graph.params())
        return Plan(graph, x, y, self.store, self.kernels, run, batch,
                    input_grad=input_grad, states=states)

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
        return self.store.grads

    @property
    def num_parameters(self) -> int:
        return self.store.count

    def parameters(self) -> dict[str, np.ndarray]:
        """Name -> live view of each parameter (writing to it changes the model)."""
        return {name: t.a for name, t in self.store.tensors.items()}

    def gradients(self) -> dict[str, np.ndarray]:
        return {name: t.a for name, t in self.store.grad_tensors.items()}

    def zero_grad(self) -> None:
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
        """Validate a batch against the model's input spec; returns it as an ndarray."""
        x = np.asarray(x)
        if x.ndim != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape:
            raise ShapeError(f"model {what}: expected shape (N, {', '.join(map(str, self.input_shape))})"
                             f", got {tuple(x.shape)}")
        ok = "fiu" if self.input_dtype == "f32" else "iu"
        if x.dtype.kind not in ok:
            raise ShapeError(f"model {what}: dtype {x.dtype} cannot feed a {self.input_dtype} input")
        return x

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Inference on any number of rows, in chunks of ``batch_size``; returns a new array.
        Thread-safe: concurrent calls take turns (one lock per model); a ``sequence()`` per
        thread runs them at the same time."""
        with self._predict_lock:
            return self.predict_with(self.plan, x, batch_size)

    def predict_with(self, plan: Callable[[int], Plan], x: np.ndarray,
                     batch_size: int) -> np.ndarray:
        """``predict`` through ``plan(rows)`` (the model's plans or a sequence's)."""
        positive_int(batch_size, "batch_size", "predict")
        x = self.check_input(x)
        out = np.empty((len(x),) + self.output_shape, DTYPES[self.output_dtype])
        for start in range(0, len(x), batch_size):
            chunk = x[start:start + batch_size]
            p = plan(len(chunk))
            p.x.a[...] = chunk
            out[start:start + len(chunk)] = p.forward().a
        return out

    __call__ = predict

    def memory_report(self) -> dict[str, Any]:
        """Bytes per region of the state arena, and per compiled plan."""
        report: dict[str, Any] = dict(self.store.memory())
        report["states"] = self.states.nbytes()
        report["plans"] = {f"batch={b},{'train' if t else 'infer'},shape={s}": p.memory()
                           for (b, t, _, s), p in self._plans.items()}
        return report

    # ----------------------------------------------------------------- config
    def get_config(self) -> dict[str, Any]:
        return {"net": layer_to_dict(self.net), "input_shape": list(self.input_shape),
                "input_dtype": self.input_dtype, "seed": self.seed}

    @classmethod
    def from_config(cls, config: dict[str, Any], kernels: Any = None,
                    allow_import: bool = False) -> Model:
        """``allow_import``: import ``module:Class`` layer types (trusted configs only; see
        ``layer_from_dict``); refused by default."""
        try:
            with allow_layer_imports(allow_import):
                return cls(config["net"], config["input_shape"], config.get("input_dtype", "f32"),
                           config.get("seed", 0), kernels)
        except KeyError as exc:
            raise ConfigError(f"model config lacks {exc}") from None

    def __repr__(self) -> str:
        return (f"Model({self.net!r}, input_shape={self.input_shape}, "
                f"params={self.num_parameters})")

