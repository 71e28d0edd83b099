"""cnn.AdaptiveAvgPool2d / AdaptiveMaxPool2d and their 1-d versions: PyTorch's windows
(growing, shrinking, overlapping, a None keeping the input size), finite differences, C vs
NumPy, PyTorch parity (argmax ties and NaN included), round trips, errors, no allocation."""

from __future__ import annotations

import numpy as np
import pytest
from _parity import check_no_allocation, check_round_trip, check_torch_parity

from qorus_core import Model
from qorus_core.errors import ConfigError, ShapeError
from qorus_core.testing import check_gradients, check_kernel_parity
from qorus_layers_cnn import (
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AdaptiveMaxPool1d,
    AdaptiveMaxPool2d,
)

# (kind, rank, output_size, input shape)
CASES = [("avg", 2, 3, (2, 7, 5)), ("avg", 2, [4, None], (2, 9, 6)), ("avg", 2, (5, 7), (1, 3, 4)),
         ("max", 2, 3, (2, 7, 5)), ("max", 2, [2, 4], (2, 6, 9)), ("max", 2, [None, 5], (1, 3, 4)),
         ("avg", 1, 4, (3, 10)), ("max", 1, 3, (3, 7)), ("max", 1, [6], (2, 4))]
IDS = ["avg-3", "avg-4xNone", "avg-grow", "max-3", "max-2x4", "max-Nonex5-grow", "avg1d",
       "max1d", "max1d-grow"]
OURS = {("avg", 2): AdaptiveAvgPool2d, ("max", 2): AdaptiveMaxPool2d,
        ("avg", 1): AdaptiveAvgPool1d, ("max", 1): AdaptiveMaxPool1d}


def _torch_size(size):
    return tuple(size) if isinstance(size, list) else size


@pytest.mark.parametrize("case", range(len(CASES)), ids=IDS)
def test_gradients_c_numpy_round_trip_and_pytorch(case, kernels):
    kind, rank, size, shape = CASES[case]
    cls = OURS[kind, rank]
    layer = cls(size)
    assert check_gradients(layer, input_shape=shape, seed=3 if kind == "max" else 0,
                           eps=1e-3 if kind == "max" else 1e-2).checked > 0
    check_kernel_parity(layer, input_shape=shape, rtol=1e-5, atol=1e-6)
    check_round_trip(layer, shape)
    torch = pytest.importorskip("torch")
    ref = getattr(torch.nn, cls.__name__)(_torch_size(size))
    check_torch_parity(torch, layer, ref, shape, kernels, rtol=1e-5, atol=1e-6)


def test_max_ties_nan_and_inf_route_gradients_as_pytorch(kernels):
    """The saved argmax is PyTorch's index: the input gradient lands where PyTorch's does."""
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal((2, 2, 7, 6)).astype(np.float32)
    x[0, 0, :3, :3] = -np.inf                 # an all -inf window: its first position
    x[0, 1, 2, 1:4] = 9.0                     # ties: the first maximum
    x[1, 0, 3, 3] = x[1, 0, 4, 2] = np.nan    # NaN wins, the last one of the window
    model = Model(AdaptiveMaxPool2d(3), (2, 7, 6), kernels=kernels)
    plan = model.plan(2, train=True, input_grad=True)
    plan.x.a[...] = x
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.adaptive_max_pool2d(xt, 3)
    np.testing.assert_array_equal(plan.forward().a, yt.detach().numpy())
    dy = np.arange(2 * 2 * 9, dtype=np.float32).reshape(2, 2, 3, 3) + 1
    yt.backward(torch.tensor(dy))
    plan.dy.a[...] = dy
    plan.backward()
    np.testing.assert_array_equal(plan.dx.a, xt.grad.numpy())


def test_no_allocation_after_warm_up(kernels):
    check_no_allocation(AdaptiveAvgPool2d([3, 2]), (2, 7, 5), kernels)
    check_no_allocation(AdaptiveMaxPool2d(3), (2, 7, 5), kernels)
    check_no_allocation(AdaptiveMaxPool1d(4), (3, 9), kernels)


def test_bad_configs_and_inputs_name_the_layer_and_field():
    with pytest.raises(ShapeError, match=r"cnn\.AdaptiveAvgPool2d.*NCHW"):
        Model(AdaptiveAvgPool2d(2), (3, 4))
    with pytest.raises(ShapeError, match=r"cnn\.AdaptiveMaxPool1d.*NCL"):
        Model(AdaptiveMaxPool1d(2), (3, 4, 4))
    for bad in (lambda: AdaptiveAvgPool2d(0), lambda: AdaptiveAvgPool2d([2, 3, 4]),
                lambda: AdaptiveMaxPool2d(), lambda: AdaptiveMaxPool1d(None),
                lambda: AdaptiveAvgPool1d(2.0), lambda: AdaptiveMaxPool2d([None, "2"])):
        with pytest.raises(ConfigError, match=r"cnn\.Adaptive.*output_size"):
            bad()
