"""The mlp layers of issue 15 (LeakyReLU, ELU, Softplus, Mish, Hardswish, GLU, Identity,
LayerNorm without affine) against PyTorch 2.13's torch.nn.functional (outputs, input and
parameter gradients, edge values), their C kernels against float64 on every SIMD tier, and
what the layer contract asks: configs checked, no array allocated by an inference forward,
Identity a view. Gradients by finite differences, C-vs-NumPy parity and config round trips of
these layers are in tests/test_layers_mlp.py (CASES)."""

from __future__ import annotations

import numpy as np
import pytest

from qorus_core import ConfigError, Model, Sequential, ShapeError
from qorus_core.kernels import NumpyKernels
from qorus_core.layer import layer_from_dict
from qorus_core.replay import Replay, record
from qorus_core.tensor import Tensor
from qorus_core.testing import forward_backward, trace_allocations
from qorus_layers_mlp import (
    ELU,
    GLU,
    Hardswish,
    Identity,
    LayerNorm,
    LeakyReLU,
    Linear,
    Mish,
    Softplus,
)

torch = pytest.importorskip("torch")
F = torch.nn.functional

#: finite edge values put first in every input: zeros, tiny, the kinks and branch points
#: (+-3 hardswish, -ln 2 elu's expm1, 20 softplus / mish), exp's limits, huge
FINITE_EDGE = np.array([0.0, -0.0, 1e-45, -1e-45, 1e-30, -1e-30, 1e-7, -1e-7, 3.0, -3.0, 2.999,
                        -3.001, -0.6931472, 0.5, -0.5, 10.0, -10.0, 20.0, 19.99, 20.01, -20.0,
                        2.5, 40.0, 44.0, -44.0, 88.0, -88.0, 89.0, -104.0, -110.0, 1e6, -1e6,
                        1e30, -1e30, 3.4e38, -3.4e38], np.float32)
NONFINITE = np.array([np.nan, np.inf, -np.inf], np.float32)


def _input(shape: tuple[int, ...], seed: int, edges: np.ndarray = FINITE_EDGE) -> np.ndarray:
    x = (np.random.default_rng(seed).standard_normal(shape) * 4).astype(np.float32)
    flat = x.reshape(-1)
    k = min(flat.size, edges.size)
    flat[:k] = edges[:k]
    return x


def _close(got: np.ndarray, want, what: str, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    want = want.detach().numpy() if hasattr(want, "detach") else np.asarray(want)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=what)


# layer, torch function of (x, params...), input shape (no batch), parameter names
TORCH_CASES = [
    pytest.param(LeakyReLU(), lambda x: F.leaky_relu(x), (40,), (), id="LeakyReLU"),
    pytest.param(LeakyReLU(0.2), lambda x: F.leaky_relu(x, 0.2), (40,), (), id="LeakyReLU-0.2"),
    pytest.param(LeakyReLU(-1.5), lambda x: F.leaky_relu(x, -1.5), (40,), (),
                 id="LeakyReLU-negative"),
    pytest.param(ELU(), lambda x: F.elu(x), (40,), (), id="ELU"),
    pytest.param(ELU(0.5), lambda x: F.elu(x, 0.5), (40,), (), id="ELU-0.5"),
    pytest.param(Softplus(), lambda x: F.softplus(x), (40,), (), id="Softplus"),
    pytest.param(Softplus(2.0, 5.0), lambda x: F.softplus(x, 2.0, 5.0), (40,), (),
                 id="Softplus-2-5"),
    pytest.param(Softplus(0.5, 30.0), lambda x: F.softplus(x, 0.5, 30.0), (40,), (),
                 id="Softplus-0.5-30"),
    pytest.param(Softplus(-1.0), lambda x: F.softplus(x, -1.0), (40,), (), id="Softplus-neg"),
    pytest.param(Mish(), lambda x: F.mish(x), (40,), (), id="Mish"),
    pytest.param(Hardswish(), lambda x: F.hardswish(x), (40,), (), id="Hardswish"),
    pytest.param(GLU(), lambda x: F.glu(x), (6, 40), (), id="GLU"),
    pytest.param(GLU(1), lambda x: F.glu(x, 1), (8, 5), (), id="GLU-dim1"),
    pytest.param(GLU(-2), lambda x: F.glu(x, -2), (3, 6, 7), (), id="GLU-dim-2"),
    pytest.param(Identity(), lambda x: x * 1, (5, 8), (), id="Identity"),
    pytest.param(LayerNorm(elementwise_affine=False), lambda x: F.layer_norm(x, (40,)), (3, 40),
                 (), id="LayerNorm-no-affine"),
    pytest.param(LayerNorm(40, bias=False), lambda x, weight: F.layer_norm(x, (40,), weight),
                 (3, 40), ("weight",), id="LayerNorm-no-bias"),
    pytest.param(LayerNorm(40), lambda x, weight, bias: F.layer_norm(x, (40,), weight, bias),
                 (3, 40), ("weight", "bias"), id="LayerNorm"),
]


@pytest.mark.parametrize("layer, fn, shape, params", TORCH_CASES)
def test_matches_torch(layer, fn, shape, params, kernels):
    """Output, input gradient and parameter gradients as torch's, finite edge values included
    (LayerNorm: normal inputs, its rows are reductions)."""
    model = Model(layer, shape, seed=0, kernels=kernels)
    rng = np.random.default_rng(1)
    for name in params:                       # non-trivial affine, so its gradients count
        model.parameters()[name][...] = rng.uniform(0.5, 1.5, model.parameters()[name].shape)
    batch = 4
    x = (_input((batch, *shape), 2) if "LayerNorm" not in layer.type_name
         else rng.standard_normal((batch, *shape)).astype(np.float32))
    dy = rng.standard_normal((batch, *model.output_shape)).astype(np.float32)
    with np.errstate(all="ignore"):
        y, dx, grads = forward_backward(model, x, dy)
    xt = torch.tensor(x, requires_grad=True)
    pt = {n: torch.tensor(model.parameters()[n], requires_grad=True) for n in params}
    yt = fn(xt, **pt)
    yt.backward(torch.from_numpy(dy))
    _close(y, yt, "output")
    _close(dx, xt.grad, "input gradient", rtol=2e-5)
    for n in params:
        _close(grads[n], pt[n].grad, f"gradient of {n}", atol=1e-5)


NONFINITE_CASES = [
    (LeakyReLU(0.2), lambda x: F.leaky_relu(x, 0.2)), (ELU(0.5), lambda x: F.elu(x, 0.5)),
    (Softplus(2.0, 5.0), lambda x: F.softplus(x, 2.0, 5.0)), (Mish(), F.mish),
    (Hardswish(), F.hardswish), (GLU(), F.glu),
]


@pytest.mark.parametrize("layer, fn", NONFINITE_CASES, ids=lambda v: getattr(v, "type_name", ""))
def test_nan_and_inf_forward_as_torch(layer, fn, kernels):
    """NaN and +-inf give torch's outputs (NaN where torch's formula gives NaN: hardswish and
    mish at -inf)."""
    x = _input((2, 12), 3, np.concatenate([NONFINITE, NONFINITE[::-1]]))
    x[1, 6:9] = x[0, :3]                      # GLU: non-finite gates against finite values
    model = Model(layer, (12,), kernels=kernels)
    with np.errstate(all="ignore"):
        y = model.predict(x)
    _close(y, fn(torch.from_numpy(x)), "output")


def test_nonfinite_gradients(kernels):
    """Backward at NaN / +-inf: torch's branch conditions (a NaN x passes dy in ELU and
    Hardswish, NaN elsewhere), and the limits where torch's formula makes NaN of them (Mish
    at +inf: 1, torch's 1 + inf * 0)."""
    x = np.array([[np.nan, np.inf, -np.inf, 1.0]], np.float32)
    dy = np.full_like(x, 2.0)
    want = {"LeakyReLU": [0.4, 2.0, 0.4, 2.0], "ELU": [2.0, 2.0, 0.0, 2.0],
            "Softplus": [np.nan, 2.0, 0.0, 2.0 / (1.0 + np.exp(-2.0))],
            "Mish": [np.nan, 2.0, np.nan, None], "Hardswish": [2.0, 2.0, 0.0, 2.0 * (1 / 3 + 0.5)]}
    for layer in (LeakyReLU(0.2), ELU(0.5), Softplus(2.0, 5.0), Mish(), Hardswish()):
        with np.errstate(all="ignore"):
            _, dx, _ = forward_backward(Model(layer, (4,), kernels=kernels), x, dy)
        expect = want[type(layer).__name__]
        keep = [i for i, v in enumerate(expect) if v is not None]
        _close(dx[0, keep], np.array([expect[i] for i in keep], np.float32), layer.type_name)


# ----------------------------------------------------------------------------- accuracy
def _sp(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def _sig(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


GRID = np.concatenate([np.linspace(-30, 30, 60001), np.geomspace(1e-30, 30, 4001),
                       -np.geomspace(1e-30, 30, 4001), np.linspace(-87, 88, 8001)]
                      ).astype(np.float32)


def _accuracy_cases():
    """(name, call(kset, x, out), float64 reference, scale of the error bound, ulp bound,
    the argument of the formula's exp)."""
    x = GRID.astype(np.float64)
    one = Tensor(np.ones_like(GRID))
    t = np.tanh(_sp(x))
    mish_terms = np.abs(t) + np.abs(x * _sig(x) * (1 - t * t))   # mish' = their sum: cancels
    yield ("elu", lambda k, xs, o: k.elu(xs, o, 1.0), np.where(x < 0, np.expm1(x), x), None, 2.5, x)
    yield ("elu_bwd", lambda k, xs, o: k.elu_bwd(xs, one, o, 1.0),
           np.where(x <= 0, np.exp(x), 1.0), None, 2.5, x)
    for beta in (1.0, 2.0, 0.5):
        z = x * np.float32(beta)
        yield (f"softplus beta={beta}", lambda k, xs, o, b=beta: k.softplus(xs, o, b, 20.0),
               np.where(z > 20, x, _sp(z) / np.float32(beta)), None, 3.5, -np.abs(z))
        yield (f"softplus_bwd beta={beta}",
               lambda k, xs, o, b=beta: k.softplus_bwd(xs, one, o, b, 20.0),
               np.where(z > 20, 1.0, _sig(z)), None, 4.0, z)
    yield ("mish", lambda k, xs, o: k.mish(xs, o), x * t, None, 5.0, x)
    yield ("mish_bwd", lambda k, xs, o: k.mish_bwd(xs, one, o),
           t + x * _sig(x) * (1 - t * t), mish_terms, 5.5, x)


@pytest.mark.parametrize("name, call, ref, scale, ulps, arg", list(_accuracy_cases()),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_accuracy_against_float64(threads, name, call, ref, scale, ulps, arg):
    """Every C tier and the NumPy set within ``ulps`` ulp of float64 (of |ref|, or for
    mish_bwd of the sum of its terms' sizes, the scale its cancellation near x = -1.19 is
    bounded by) on a dense grid, where the formula's exp is a normal float (its argument
    > -87; below, within 2e-43 absolute: e.g. mish's x e^x, subnormal). The C exp is
    qr_expf, expm1 / log1p act_ext.h's."""
    bound_at = np.spacing(np.abs(ref if scale is None else scale).astype(np.float32))
    for kset, path in ((threads, "portable"), (threads, "auto"), (NumpyKernels(), None)):
        if path:
            kset.set_simd_path(path)
        out = Tensor(np.zeros_like(GRID))
        call(kset, Tensor(GRID.copy()), out)
        err = np.abs(out.a.astype(np.float64) - ref)
        normal = arg > -87
        worst = np.max(err[normal] / bound_at[normal])
        assert worst <= ulps, (name, kset.name, path, worst, GRID[normal][np.argmax(
            err[normal] / bound_at[normal])])
        assert np.all(err[~normal] <= 2e-43), (name, kset.name, path)


def test_hardswish_and_leaky_relu_are_exact(threads):
    """Both are one rounding per float32 step in PyTorch's order: the C tiers and NumPy give
    the same bits, and hardswish's three roundings (x + 3, the product, the division) stay
    within 2 ulp of float64."""
    x = _input((20001,), 4)
    outs = []
    for kset, path in ((threads, "portable"), (threads, "auto"), (NumpyKernels(), None)):
        if path:
            kset.set_simd_path(path)
        y1, y2 = Tensor(np.zeros_like(x)), Tensor(np.zeros_like(x))
        with np.errstate(all="ignore"):
            kset.hardswish(Tensor(x), y1)
            kset.leaky_relu(Tensor(x), y2, 0.2)
        outs.append((y1.a, y2.a))
    for got in outs[1:]:
        np.testing.assert_array_equal(got[0], outs[0][0])
        np.testing.assert_array_equal(got[1], outs[0][1])
    xd = x.astype(np.float64)
    ref = xd * np.clip(xd + 3, 0, 6) / 6
    ok = np.isfinite(ref) & (np.abs(ref) < 3e38)
    ulp = np.spacing(np.abs(ref[ok]).astype(np.float32))
    assert np.all(np.abs(outs[0][0][ok] - ref[ok]) <= 2 * ulp)


# ----------------------------------------------------------------------------- the layers
def test_in_place_and_threaded_kernels(ck):
    """The elementwise kernels in place (out = x) give what they give out of place, and a
    threaded size (2^18) what NumPy gives."""
    x = _input((1 << 18,), 5)
    dy = _input((1 << 18,), 6)[::-1].copy()
    nk = NumpyKernels()
    for name, args in (("leaky_relu", (0.1,)), ("elu", (0.7,)), ("softplus", (1.5, 10.0)),
                       ("mish", ()), ("hardswish", ())):
        out, inplace, ref = Tensor(np.zeros_like(x)), Tensor(x.copy()), Tensor(np.zeros_like(x))
        with np.errstate(all="ignore"):
            getattr(ck, name)(Tensor(x), out, *args)
            getattr(ck, name)(inplace, inplace, *args)
            getattr(nk, name)(Tensor(x), ref, *args)
        np.testing.assert_array_equal(inplace.a, out.a, err_msg=name)
        _close(out.a, ref.a, name)
        dx, dref = Tensor(dy.copy()), Tensor(np.zeros_like(x))
        with np.errstate(all="ignore"):
            getattr(ck, name + "_bwd")(Tensor(x), dx, dx, *args)    # dx = dy, in place
            getattr(nk, name + "_bwd")(Tensor(x), Tensor(dy), dref, *args)
        _close(dx.a, dref.a, name + "_bwd")


@pytest.mark.parametrize("layer, shape", [
    (LeakyReLU(0.3), (64,)), (ELU(), (64,)), (Softplus(2.0), (64,)), (Mish(), (64,)),
    (Hardswish(), (64,)), (GLU(), (64,)), (GLU(1), (8, 8)), (Identity(), (64,)),
    (LayerNorm(elementwise_affine=False), (64,)), (LayerNorm(bias=False), (4, 64))])
def test_inference_forward_allocates_nothing(layer, shape, kernels):
    model = Model(layer, shape, kernels=kernels)
    plan = model.plan(8)
    plan.x.a[...] = np.random.default_rng(0).standard_normal(plan.x.shape)
    plan.forward()
    trace = trace_allocations(plan.forward, repeat=5)
    assert trace.array_bytes == 0, trace.where


def test_layernorm_without_affine_replays(ck):
    """A captured plan passes the absent gamma / beta as NULL: replayed, the same bits."""
    for norm in (LayerNorm(elementwise_affine=False), LayerNorm(bias=False)):
        plan = Model(Sequential([Linear(6, 16), norm, Linear(16, 4)]), (6,), kernels="c",
                     seed=0).plan(3)
        plan.x.a[...] = np.random.default_rng(0).standard_normal(plan.x.shape)
        tapes = [(p, record(plan)) for p in (0, 1)]
        assert "qr_layernorm_f32" in [name for name, _, _ in tapes[0][1]]
        want = plan.y.a.copy()
        plan.y.a[...] = np.nan
        Replay.derive(ck, tapes).run(0)
        np.testing.assert_array_equal(plan.y.a, want)


def test_identity_is_a_view_both_ways():
    model = Model(Identity(), (3, 4))
    plan = model.plan(2, train=True, input_grad=True)
    assert plan.y.p == plan.x.p and plan.dx.p == plan.dy.p
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    y, dx, grads = forward_backward(model, x, 2 * x)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(dx, 2 * x)
    assert grads == {}


def test_layernorm_parameters_as_torch():
    """The affine choices declare torch's parameters, so a torch state_dict loads as is."""
    assert Model(LayerNorm(elementwise_affine=False), (8,)).parameters() == {}
    assert Model(LayerNorm(elementwise_affine=False, bias=False), (8,)).parameters() == {}
    assert sorted(Model(LayerNorm(bias=False), (8,)).parameters()) == ["weight"]
    ref = torch.nn.LayerNorm(8, bias=False)
    torch.nn.init.uniform_(ref.weight, 0.5, 1.5)
    model = Model(LayerNorm(8, bias=False), (8,))
    model.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    _close(model.predict(x), ref(torch.from_numpy(x)), "output")


def test_configs_are_checked():
    for make, match in [
        (lambda: LeakyReLU("0.1"), "negative_slope must be a finite number"),
        (lambda: ELU(float("nan")), "alpha must be a finite number"),
        (lambda: Softplus(0.0), "beta must be a nonzero finite number"),
        (lambda: Softplus(threshold=float("inf")), "threshold must be a finite number"),
        (lambda: GLU(0), "dim must not be 0"),
        (lambda: GLU(1.0), "dim must be an int"),
        (lambda: LayerNorm(elementwise_affine=1), "elementwise_affine must be true or false"),
        (lambda: LayerNorm(bias="no"), "bias must be true or false"),
        (lambda: layer_from_dict({"type": "mlp.Softplus", "betta": 2.0}), "beta"),
    ]:
        with pytest.raises(ConfigError, match=match):
            make()


def test_glu_shapes():
    assert Model(GLU(), (3, 10)).output_shape == (3, 5)
    assert Model(GLU(1), (4, 3)).output_shape == (2, 3)
    assert Model(GLU(-2), (2, 6, 3)).output_shape == (2, 3, 3)
    with pytest.raises(ShapeError, match="odd size 7"):
        Model(GLU(), (7,))
    with pytest.raises(ShapeError, match="dim -2 is not a feature dimension"):
        Model(GLU(-2), (8,))                  # (batch, 8): -2 is the batch dimension
    with pytest.raises(ShapeError, match="dim 3 is not a feature dimension"):
        Model(GLU(3), (4, 6))
