"""cnn.MaxPool1d and cnn.AvgPool1d over [B, C, L] (the 2-D pooling kernels with a height of
1): finite differences, C vs NumPy, PyTorch parity, round trips, errors, no allocation."""

from __future__ import annotations

import pytest
from _parity import check_no_allocation, check_round_trip, check_torch_parity

from qorus_core import Model
from qorus_core.errors import ConfigError, ShapeError
from qorus_core.testing import check_gradients, check_kernel_parity
from qorus_layers_cnn import AvgPool1d, MaxPool1d

ARGS = [("max", (2,), {}), ("max", (3,), dict(stride=2, padding=1)),
        ("avg", (3,), dict(stride=2, padding=1)), ("avg", ([4],), dict(stride=[1]))]
IDS = ["max-2", "max-3-s2-p1", "avg-3-s2-p1", "avg-4-s1"]
SHAPE = (3, 11)


def _ours(kind, args, kw):
    return (MaxPool1d if kind == "max" else AvgPool1d)(*args, **kw)


@pytest.mark.parametrize("case", range(len(ARGS)), ids=IDS)
def test_gradients_c_numpy_round_trip_and_pytorch(case, kernels):
    kind, args, kw = ARGS[case]
    layer = _ours(kind, args, kw)
    seed = 3 if kind == "max" else 0                 # no window max within eps of a tie
    assert check_gradients(layer, input_shape=SHAPE, seed=seed, eps=1e-3).checked > 0
    check_kernel_parity(layer, input_shape=SHAPE, rtol=1e-5, atol=1e-6)
    check_round_trip(layer, SHAPE)
    torch = pytest.importorskip("torch")
    tkw = {k: v[0] if isinstance(v, list) else v for k, v in kw.items()}
    targs = tuple(a[0] if isinstance(a, list) else a for a in args)
    ref = (torch.nn.MaxPool1d if kind == "max" else torch.nn.AvgPool1d)(*targs, **tkw)
    check_torch_parity(torch, layer, ref, SHAPE, kernels, rtol=1e-5, atol=1e-6)


def test_no_allocation_after_warm_up(kernels):
    check_no_allocation(MaxPool1d(3, stride=2, padding=1), SHAPE, kernels)
    check_no_allocation(AvgPool1d(2), SHAPE, kernels)


def test_bad_configs_and_inputs_name_the_layer_and_field():
    assert Model(MaxPool1d(3, stride=2, padding=1), SHAPE).output_shape == (3, 6)
    with pytest.raises(ShapeError, match=r"cnn\.MaxPool1d.*NCL"):
        Model(MaxPool1d(2), (3, 4, 4))
    with pytest.raises(ShapeError, match=r"cnn\.AvgPool1d.*does not fit a length-2"):
        Model(AvgPool1d(3), (3, 2))
    for bad, field in ((lambda: MaxPool1d(2, padding=2), "padding"),
                       (lambda: AvgPool1d((2, 2)), "kernel_size"),
                       (lambda: MaxPool1d(), "kernel_size"),
                       (lambda: AvgPool1d(2, stride=0), "stride")):
        with pytest.raises(ConfigError, match=field):
            bad()
