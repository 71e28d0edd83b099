"""Checks every layer's tests should run, ours and third-party: finite-difference gradients and
C-vs-NumPy parity. Both compile a one-layer ``Model`` exactly as training would.

    from qorus_core.testing import check_gradients, check_kernel_parity
    check_gradients(MyLayer(8), input_shape=(5,))
    check_kernel_parity(MyLayer(8), input_shape=(5,))   # skips itself if C is unavailable
    assert trace_allocations(step).array_bytes == 0     # after a warm-up step
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .kernels import c_status, get_kernels
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


def _loss_and_grads(model: Model, x: np.ndarray, r: np.ndarray, input_grad: bool):
    plan = model.plan(len(x), train=True, input_grad=input_grad)
    plan.x.a[...] = x
    y = plan.forward().a.astype(np.float64)
    loss = float(np.sum(y * r))
    return plan, loss


def check_gradients(layer: Layer, input_shape: tuple[int, ...], batch: int = 3, seed: int = 0,
                    kernels: str | None = "numpy", input_dtype: str = "f32", eps: float = 1e-2,
                    rtol: float = 2e-2, atol: float = 2e-3, samples: int = 20,
                    input_range: tuple[int, int] | None = None) -> GradCheck:
    """Compare analytic gradients of L = sum(y * r) (r random) with central differences.

    Checks up to ``samples`` random coordinates of the input (float inputs) and of every
    parameter; raises AssertionError naming the tensor, index and both values on mismatch.
    The backward runs with both of the contract's rules under test: the parameter gradients
    are pre-filled with random sentinels and the *increment* is compared (a layer that
    overwrites instead of adding into ``d<param>`` fails), and ``dx`` is pre-filled with a
    sentinel too (a layer that adds into ``dx``, or leaves part of it unwritten, fails).
    """
    model = Model(layer, input_shape, input_dtype, seed=seed, kernels=kernels)
    rng = np.random.default_rng(seed + 1)
    shape = (batch,) + tuple(input_shape)
    x = _random_input(rng, shape, input_dtype, input_range)
    r = rng.standard_normal((batch,) + model.output_shape)
    input_grad = input_dtype == "f32"
    plan, _ = _loss_and_grads(model, x, r, input_grad)
    grads = model.gradients()
    before = {name: _sentinel(rng, g) for name, g in grads.items()}
    _prefill_input_grads(plan, rng)
    plan.dy.a[...] = r.astype(np.float32)
    plan.backward()
    targets: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if input_grad:
        targets["input"] = (x, plan.dx.a.copy())
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
            _, lp = _loss_and_grads(model, x, r, input_grad)
            flat[i] = orig - eps
            _, lm = _loss_and_grads(model, x, r, input_grad)
            flat[i] = orig
            numeric = (lp - lm) / (2 * eps)
            got = float(analytic.reshape(-1)[i])
            err = abs(numeric - got) / (atol + rtol * abs(numeric))
            worst = max(worst, err)
            checked += 1
            if err > 1.0:
                what = "increment of the gradient" if name != "input" else "gradient"
                raise AssertionError(
                    f"{layer.type_name}: {what} of {name}[{np.unravel_index(i, values.shape)}] "
                    f"analytic {got:.6g} vs finite difference {numeric:.6g} (backward must "
                    "write dx and add into parameter gradients)")
        errors[name] = worst
    return GradCheck(errors, checked)


def _prefill_input_grads(plan, rng: np.random.Generator) -> None:
    """Make each op's backward find its ``dx`` (and ``dother``) full of sentinels. Filled just
    before that backward runs, when the slot's lifetime begins (earlier, the planner may
    have lent its memory to an activation that backward still reads)."""
    def prefilled(backward):
        def run(dy, ctx):
            for t in (ctx.dx, getattr(ctx, "dother", None)):
                if t is not None:
                    _sentinel(rng, t.a)
            return backward(dy, ctx)
        return run

    plan._bwd = [(f if f is None else prefilled(f), dy, ctx, adds)
                 for f, dy, ctx, adds in plan._bwd]


def _sentinel(rng: np.random.Generator, a: np.ndarray) -> np.ndarray:
    """Fill ``a`` in place with values far from any real gradient (so a wrong backward rule
    shows), returning them as float64 for the increment."""
    a[...] = rng.uniform(3.0, 7.0, a.shape) * rng.choice((-1.0, 1.0), a.shape)
    return a.astype(np.float64)


def c_available() -> bool:
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
