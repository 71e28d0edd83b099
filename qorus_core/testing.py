"""Checks every layer's tests should run, ours and third-party: finite-difference gradients and
C-vs-NumPy parity. Both compile a one-layer ``Model`` exactly as training would. And the
derived checks of a kernel declaration, for a plugin's own kernels.

    from qorus_core.testing import check_gradients, check_kernel, check_kernel_parity
    check_gradients(MyLayer(8), input_shape=(5,))
    check_kernel_parity(MyLayer(8), input_shape=(5,))   # skips itself if C is unavailable
    assert trace_allocations(step).array_bytes == 0     # after a warm-up step
    check_kernel(my_kernel)      # a declaration registered through qorus_register_kernels
"""

from __future__ import annotations

import copy
import re
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import KernelError
from .kernels import EXACT, Kernel, c_status, get_kernels
from .kernels.examples import build, written
from .layer import Layer
from .model import Model


@dataclass
class GradCheck:
    """Largest normalised error found, per checked tensor (``input`` and each parameter)."""

    errors: dict[str, float]
    checked: int


def _random_input(rng: np.random.Generator, shape: tuple[int, ...], dtype: str,
                  int_range: tuple[int, int] | None) -> np.ndarray:
    """Normal floats kept at least 0.1 from zero (kinks such as ReLU's sit there), or ints."""
    if dtype != "f32":
        lo, hi = int_range or (0, 8)
        return rng.integers(lo, hi, size=shape).astype(np.int32)
    x = rng.standard_normal(shape).astype(np.float32)
    return np.where(np.abs(x) < 0.1, np.copysign(np.float32(0.1), x) + x, x).astype(np.float32)


def _loss_and_grads(model: Model, xs: dict[str, np.ndarray], rs: dict[str, np.ndarray],
                    input_grad: bool):
    plan = model.plan(len(next(iter(xs.values()))), train=True, input_grad=input_grad)
    for name, x in xs.items():
        plan.inputs[name].a[...] = x
    plan.forward()
    loss = float(sum(np.sum(plan.outputs[k].a.astype(np.float64) * r) for k, r in rs.items()))
    return plan, loss


def _model_of(layer: Layer, input_shape, input_dtype, seed: int, kernels) -> Model:
    """A Model of ``layer`` alone: ``Model(layer, shape)`` for one input shape, else a
    functional one with an Input per shape (named after ``layer.inputs``), every output."""
    from .functional import Input
    from .graph import Graph
    from .tensor import Spec

    if not (isinstance(input_shape, (list, tuple)) and input_shape
            and isinstance(input_shape[0], (list, tuple))):
        _, ys = Graph(False).trace_many(layer, [Spec((1, *input_shape), input_dtype)])
        if len(ys) == 1:
            return Model(layer, input_shape, input_dtype, seed=seed, kernels=kernels)
        input_shape, input_dtype = [input_shape], [input_dtype]

    names = [n.rstrip("?*") for n in layer.inputs]
    if names and layer.inputs[-1].endswith("*"):
        names = [f"{names[-1]}{i}" for i in range(len(input_shape))]
    dtypes = [input_dtype] * len(input_shape) if isinstance(input_dtype, str) else list(input_dtype)
    nodes = [Input(tuple(s), name=n, dtype=d, grad=d == "f32")
             for n, s, d in zip(names, input_shape, dtypes)]
    out = layer(*nodes)
    return Model(inputs=nodes, outputs=list(out) if isinstance(out, tuple) else out, seed=seed,
                 kernels=kernels)


def check_gradients(layer: Layer, input_shape: tuple[int, ...] | list[tuple[int, ...]],
                    batch: int = 3, seed: int = 0, kernels: str | None = "numpy",
                    input_dtype: str | list[str] = "f32", eps: float = 1e-2,
                    rtol: float = 2e-2, atol: float = 2e-3, samples: int = 20,
                    input_range: tuple[int, int] | None = None) -> GradCheck:
    """Compare analytic gradients of L = sum(y * r) (r random) with central differences.

    Checks up to ``samples`` random coordinates of each float input and of every parameter;
    raises AssertionError naming the tensor, index and both values on mismatch. A layer of
    several inputs takes ``input_shape`` as a list of shapes (``input_dtype`` a dtype or a
    list); L then sums over every output. The backward runs with both of the contract's
    rules under test: the parameter gradients are pre-filled with random sentinels and the
    *increment* is compared (a layer that overwrites instead of adding into ``d<param>``
    fails), and every ``ctx.dxs`` is pre-filled with a sentinel too (a layer that adds into
    ``dx``, or leaves part of it unwritten, fails).
    """
    model = _model_of(layer, input_shape, input_dtype, seed, kernels)
    rng = np.random.default_rng(seed + 1)
    xs = {n: _random_input(rng, (batch,) + s.shape, "f32" if s.dtype == "f32" else "i32",
                           input_range) for n, s in model.input_specs.items()}
    if set(model.input_names) & set(model._bools):
        xs = {n: (x % 2).astype(np.int32) if n in model._bools else x for n, x in xs.items()}
    rs = {k: rng.standard_normal((batch,) + s.shape) for k, s in model.output_specs.items()}
    input_grad = any(s.dtype == "f32" for s in model.input_specs.values())
    plan, _ = _loss_and_grads(model, xs, rs, input_grad)
    grads = model.gradients()
    before = {name: _sentinel(rng, g) for name, g in grads.items()}
    _prefill_input_grads(plan, rng)
    for k, r in rs.items():
        plan.doutputs[k].a[...] = r.astype(np.float32)
    plan.backward()
    targets: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    single = len(xs) == 1
    for n, x in xs.items():
        if plan.dinputs[n] is not None:
            targets["input" if single else f"input {n}"] = (x, plan.dinputs[n].a.copy())
    params = model.parameters()
    for name in params:
        increment = grads[name].astype(np.float64) - before[name]
        targets[name] = (params[name], increment)
    model.zero_grad()

    errors: dict[str, float] = {}
    checked = 0
    for name, (values, analytic) in targets.items():
        flat = values.reshape(-1)
        picks = rng.choice(flat.size, size=min(samples, flat.size), replace=False)
        worst = 0.0
        for i in picks:
            orig = flat[i].copy()
            flat[i] = orig + eps
            _, lp = _loss_and_grads(model, xs, rs, input_grad)
            flat[i] = orig - eps
            _, lm = _loss_and_grads(model, xs, rs, input_grad)
            flat[i] = orig
            numeric = (lp - lm) / (2 * eps)
            got = float(analytic.reshape(-1)[i])
            err = abs(numeric - got) / (atol + rtol * abs(numeric))
            worst = max(worst, err)
            checked += 1
            if err > 1.0:
                what = "gradient" if name.startswith("input") else "increment of the gradient"
                raise AssertionError(
                    f"{layer.type_name}: {what} of {name}[{np.unravel_index(i, values.shape)}] "
                    f"analytic {got:.6g} vs finite difference {numeric:.6g} (backward must "
                    "write dx and add into parameter gradients)")
        errors[name] = worst
    return GradCheck(errors, checked)


def _prefill_input_grads(plan, rng: np.random.Generator) -> None:
    """Make each op's backward find its input gradients (``ctx.dxs``) full of sentinels. Filled just
    before that backward runs, when the slot's lifetime begins (earlier, the planner may
    have lent its memory to an activation that backward still reads)."""
    def prefilled(backward):
        def run(dy, ctx):
            for t in ctx.dxs:
                if t is not None:
                    _sentinel(rng, t.a)
            return backward(dy, ctx)
        return run

    plan._bwd = [(f if f is None else prefilled(f), dy, ctx, zeros, adds)
                 for f, dy, ctx, zeros, adds in plan._bwd]


def _sentinel(rng: np.random.Generator, a: np.ndarray) -> np.ndarray:
    """Fill ``a`` in place with values far from any real gradient (so a wrong backward rule
    shows), returning them as float64 for the increment."""
    a[...] = rng.uniform(3.0, 7.0, a.shape) * rng.choice((-1.0, 1.0), a.shape)
    return a.astype(np.float64)


def c_available() -> bool:
    """Whether the C kernel library loads here."""
    return c_status()[0]


def forward_backward(model: Model, x: np.ndarray, dy: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray | None, dict[str, np.ndarray]]:
    """One training-plan pass: ``(y, dx, grads)`` for input ``x`` and output gradient ``dy``
    (copies; ``dx`` is None for int inputs), grads zeroed first. What a PyTorch parity test
    compares against ``y.backward(dy)``."""
    x = np.asarray(x)
    plan = model.plan(len(x), train=True, input_grad=x.dtype.kind == "f")
    plan.x.a[...] = x
    y = plan.forward().a.copy()
    model.zero_grad()
    plan.dy.a[...] = dy
    plan.backward()
    dx = None if plan.dx is None else plan.dx.a.copy()
    return y, dx, {k: v.copy() for k, v in model.gradients().items()}


def check_kernel_parity(layer: Layer, input_shape: tuple[int, ...], batch: int = 5,
                        seed: int = 0, input_dtype: str = "f32", rtol: float = 1e-4,
                        atol: float = 1e-5, input_range: tuple[int, int] | None = None) -> None:
    """Forward output, input gradient and parameter gradients agree between the C and NumPy
    kernel sets. Skips (pytest.skip) when the C library is unavailable."""
    ok, why = c_status()
    if not ok:
        import pytest

        pytest.skip(f"C kernels unavailable: {why}")
    x = _random_input(np.random.default_rng(seed + 7), (batch,) + tuple(input_shape),
                      input_dtype, input_range)
    results = []
    for which in ("numpy", "c"):
        model = Model(layer, input_shape, input_dtype, seed=seed, kernels=get_kernels(which))
        y_shape = (batch,) + tuple(model.output_shape)
        dy = np.random.default_rng(seed + 3).standard_normal(y_shape).astype(np.float32)
        y, dx, grads = forward_backward(model, x, dy)
        out = {"output": y, **{f"grad {k}": v for k, v in grads.items()}}
        if dx is not None:
            out["input grad"] = dx
        results.append(out)
    for key in results[0]:
        np.testing.assert_allclose(results[1][key], results[0][key], rtol=rtol, atol=atol,
                                   err_msg=f"{layer.type_name}: C vs NumPy differ in {key}")


@dataclass
class AllocTrace:
    """What ``trace_allocations`` saw: NumPy array bytes still alive that the call created,
    the peak growth of all traced memory during it, and the lines that allocated arrays."""

    array_bytes: int
    peak_bytes: int
    where: list[str]


def trace_allocations(fn: Callable[[], object], repeat: int = 1) -> AllocTrace:
    """Run ``fn`` ``repeat`` times under tracemalloc. NumPy traces its data buffers in its own
    domain, so ``array_bytes`` counts exactly the arrays left behind: a hot path after its
    warm-up step should show 0 (transient ufunc buffers only show in ``peak_bytes``)."""
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        for _ in range(repeat):
            fn()
        _, peak = tracemalloc.get_traced_memory()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    numpy_only = [tracemalloc.DomainFilter(True, np.lib.tracemalloc_domain)]
    diff = after.filter_traces(numpy_only).compare_to(before.filter_traces(numpy_only), "lineno")
    grown = [d for d in diff if d.size_diff > 0]
    return AllocTrace(sum(d.size_diff for d in grown), peak - base, [str(d) for d in grown[:5]])


# ----------------------------------------------------------------------------- kernels
class _NoFallback:
    """A C set's fallback that fails the check: an example must run in C."""

    def __getattr__(self, name: str):
        raise AssertionError(f"the C set ran {name} on its NumPy fallback")


def c_without_fallback():
    """A copy of the C kernel set whose NumPy fallback raises AssertionError (None when the C
    library is unavailable): what proves a kernel's example ran in C."""
    if not c_status()[0]:
        return None
    ck = copy.copy(get_kernels("c"))
    for name, v in list(vars(ck).items()):      # plugin namespaces bound to the original
        if type(v).__name__ == "KernelNamespace":
            del ck.__dict__[name]
    ck.fallback = _NoFallback()
    return ck


def kernel_method(kset, k: Kernel) -> Callable:
    """``k``'s method on the kernel set ``kset`` (``kset.<namespace>.<name>`` for a plugin's)."""
    return getattr(getattr(kset, k.namespace), k.name) if k.namespace else getattr(kset, k.name)


def call_kernel(kset, k: Kernel, args: list):
    """Call ``k`` on ``kset`` with ``args`` (NumPy's overflow warnings silenced: C gives none)."""
    with np.errstate(all="ignore"):             # NumPy warns on exp overflow; C does not
        return kernel_method(kset, k)(*args)


def check_kernel_example(ck, k: Kernel, ex: dict) -> None:
    """The C set ``ck`` and the NumPy set compute the same on example ``ex`` of ``k`` (within
    its ``tol``; EXACT: bit for bit), from identical inputs, and the example does something."""
    from .kernels import NumpyKernels

    args_c, args_n, before = build(k, ex), build(k, ex), build(k, ex)
    rc, rn = call_kernel(ck, k, args_c), call_kernel(NumpyKernels(), k, args_n)
    rtol, atol = k.tol
    changed = rc is not None
    for (name, c), (_, n), (_, b) in zip(written(k, args_c), written(k, args_n),
                                         written(k, before)):
        if k.tol == EXACT:
            np.testing.assert_array_equal(c, n, err_msg=f"{k.full_name}: {name}")
        else:
            np.testing.assert_allclose(c, n, rtol=rtol, atol=atol, err_msg=f"{k.full_name}: {name}")
        changed = changed or not np.array_equal(c, b, equal_nan=True)
    assert changed, f"{k.full_name}: the example wrote nothing and returned nothing"
    if isinstance(rn, float):
        assert abs(rc - rn) <= max(atol, 1e-7) + max(rtol, 1e-6) * abs(rn), (k.full_name, rc, rn)
    else:
        assert rc == rn, (k.full_name, rc, rn)


def check_kernel_refusal(ck, k: Kernel, make: Callable[[], list]) -> str:
    """Both sets (``ck`` None: NumPy only) refuse the arguments ``make()`` builds with the same
    KernelError, naming the kernel; returns its text."""
    from .kernels import NumpyKernels

    msgs = []
    for kset in (ck, NumpyKernels()):
        if kset is None:
            continue
        try:
            call_kernel(kset, k, make())
        except KernelError as exc:
            msgs.append(str(exc))
        else:
            raise AssertionError(f"{k.full_name} on the {kset.name} set accepted bad arguments")
    assert len(set(msgs)) == 1, f"{k.full_name}: the sets refuse differently: {msgs}"
    assert msgs[0].startswith(k.full_name + ":") or f" {k.full_name}:" in msgs[0], msgs[0]
    return msgs[0]


def kernel_cases(k: Kernel) -> dict[str, list]:
    """The derived cases of ``k``: its examples; the operands tied to others (grown by one in
    every dimension, they must be refused); its written tensors (read-only, refused); its
    declared ``bad`` cases."""
    ex = k.examples[0] if k.examples else {}
    tied = [o.name for o in k.operands if o.tensor and not o.free
            and ex.get(o.name) is not None and not callable(ex.get(o.name))]
    outs = [o.name for o in k.operands if o.tensor and o.written and ex.get(o.name) is not None]
    return {"examples": list(k.examples), "grow": tied, "read_only": outs, "bad": list(k.bad)}


def check_read_only_refusal(ck, k: Kernel, name: str) -> None:
    """Operand ``name`` read-only: refused alike, naming it, before anything is written."""
    calls: list[list] = []

    def make() -> list:
        calls.append(build(k, k.examples[0], read_only=name))
        return calls[-1]

    msg = check_kernel_refusal(ck, k, make)
    assert "read-only" in msg and name in msg, msg
    fresh = build(k, k.examples[0])
    for args in calls:
        for (n, got), (_, want) in zip(written(k, args), written(k, fresh)):
            np.testing.assert_array_equal(got, want, err_msg=f"{k.full_name}: {n} was written")


def check_kernel(k: Kernel, require_c: bool = False) -> dict[str, int]:
    """Every check the kernel table derives, for one declaration (a plugin's, registered, or
    core's): C against NumPy on each example (in C: the fallback raises), and a misfit
    operand, a read-only output and each declared bad case refused alike by both sets.
    Without the C library, or for a kernel the C set serves in NumPy (declared without C, or
    its plugin's library not built), the C side is skipped, unless ``require_c``
    (AssertionError then). Returns the number of cases checked, per kind."""
    assert k.examples, f"{k.full_name}: declare at least one example"
    ck = c_without_fallback()
    served = ck is not None and bool(k.c)
    if served and k.namespace:
        from .kernels.extensions import extensions
        served = extensions()[k.namespace].native
    if require_c and not served:
        raise AssertionError(f"{k.full_name}: not served in C here "
                             f"({c_status()[1] if ck is None else 'no C symbol bound'})")
    cases = kernel_cases(k)
    for ex in cases["examples"] if served else ():
        check_kernel_example(ck, k, ex)
    ck = ck if served else None
    for name in cases["grow"]:
        check_kernel_refusal(ck, k, lambda name=name: build(k, k.examples[0], grow=name))
    for name in cases["read_only"]:
        check_read_only_refusal(ck, k, name)
    for match, over in cases["bad"]:
        msg = check_kernel_refusal(ck, k, lambda over=over: build(k, {**k.examples[0], **over}))
        assert re.search(match, msg), f"{k.full_name}: {msg!r} does not match {match!r}"
    return {kind: len(v) if served or kind != "examples" else 0 for kind, v in cases.items()}
