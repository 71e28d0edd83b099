"""MaxPool2d / MaxPool1d ``dilation`` and ``ceil_mode``, AvgPool2d / AvgPool1d ``ceil_mode``
and ``count_include_pad``: output sizes, finite differences, C vs NumPy, PyTorch parity,
round trips, errors, no allocation after warm-up."""

from __future__ import annotations

import pytest
from _parity import check_no_allocation, check_round_trip, check_torch_parity

from qorus_core import Model, layer_from_dict
from qorus_core.errors import ConfigError, ShapeError
from qorus_core.testing import check_gradients, check_kernel_parity
from qorus_layers_cnn import AvgPool1d, AvgPool2d, MaxPool1d, MaxPool2d

# (our class, PyTorch's name, args, kwargs, input shape)
CASES = [
    (MaxPool2d, "MaxPool2d", (3,), dict(stride=2, padding=1, dilation=2), (2, 9, 8)),
    (MaxPool2d, "MaxPool2d", ((2, 3),), dict(stride=2, ceil_mode=True), (2, 7, 8)),
    (MaxPool2d, "MaxPool2d", (3,), dict(stride=(2, 3), padding=1, dilation=(1, 2),
                                        ceil_mode=True), (2, 8, 9)),
    (MaxPool2d, "MaxPool2d", (2,), dict(ceil_mode=True), (2, 5, 7)),    # 2x2 clipped last
    (MaxPool1d, "MaxPool1d", (3,), dict(stride=2, padding=1, dilation=3, ceil_mode=True),
     (3, 12)),
    (AvgPool2d, "AvgPool2d", (3,), dict(stride=2, padding=1, ceil_mode=True), (2, 8, 7)),
    (AvgPool2d, "AvgPool2d", ((3, 2),), dict(stride=2, padding=1, count_include_pad=False),
     (2, 7, 6)),
    (AvgPool2d, "AvgPool2d", (3,), dict(stride=2, padding=1, ceil_mode=True,
                                        count_include_pad=False), (2, 6, 6)),
    (AvgPool1d, "AvgPool1d", (4,), dict(stride=3, padding=2, ceil_mode=True,
                                        count_include_pad=False), (3, 10)),
]
IDS = ["max-dilation", "max-ceil", "max-all", "max-2x2-ceil", "max1d-all", "avg-ceil",
       "avg-no-pad", "avg-ceil-no-pad", "avg1d-all"]


@pytest.mark.parametrize("case", range(len(CASES)), ids=IDS)
def test_gradients_c_numpy_round_trip_and_pytorch(case, kernels):
    cls, tname, args, kw, shape = CASES[case]
    layer = cls(*args, **kw)
    is_max = cls in (MaxPool1d, MaxPool2d)
    assert check_gradients(layer, input_shape=shape, seed=3 if is_max else 0,
                           eps=1e-3 if is_max else 1e-2).checked > 0
    check_kernel_parity(layer, input_shape=shape, rtol=1e-5, atol=1e-6)
    check_round_trip(layer, shape)
    torch = pytest.importorskip("torch")
    ref = getattr(torch.nn, tname)(*args, **kw)
    check_torch_parity(torch, layer, ref, shape, kernels, rtol=1e-5, atol=1e-6)


def test_output_sizes_follow_pytorch():
    torch = pytest.importorskip("torch")
    for n in range(3, 12):
        for k, s, p, d in ((3, 2, 1, 1), (2, 2, 0, 1), (3, 3, 1, 2), (4, 3, 2, 1), (2, 3, 1, 3)):
            for ceil in (False, True):
                ref = torch.nn.functional.max_pool2d(torch.zeros(1, 1, n, n), k, s, p, d,
                                                     ceil_mode=ceil)
                ours = Model(MaxPool2d(k, s, p, d, ceil), (1, n, n)).output_shape
                assert ours == tuple(ref.shape[1:]), (n, k, s, p, d, ceil)


def test_config_keeps_pytorch_names_and_defaults():
    assert MaxPool2d(2).get_config() == dict(kernel_size=2, stride=None, padding=0, dilation=1,
                                             ceil_mode=False)
    assert AvgPool1d(3, ceil_mode=True).get_config() == dict(
        kernel_size=3, stride=None, padding=0, ceil_mode=True, count_include_pad=True)


def test_no_allocation_after_warm_up(kernels):
    check_no_allocation(MaxPool2d(3, stride=2, padding=1, dilation=2, ceil_mode=True),
                        (2, 9, 8), kernels)
    check_no_allocation(AvgPool2d(3, stride=2, padding=1, ceil_mode=True,
                                  count_include_pad=False), (2, 8, 7), kernels)


def test_bad_configs_and_inputs_name_the_layer_and_field():
    with pytest.raises(ShapeError, match=r"cnn\.MaxPool2d.*holds padding only"):
        Model(MaxPool2d(2, stride=1, padding=1, dilation=3), (1, 2, 2))   # PyTorch: index 6
    with pytest.raises(ShapeError, match=r"cnn\.MaxPool1d.*does not fit"):
        Model(MaxPool1d(3, dilation=3), (1, 6))
    for bad, field in ((lambda: MaxPool2d(2, dilation=0), "dilation"),
                       (lambda: MaxPool1d(2, dilation=(1, 2)), "dilation"),
                       (lambda: MaxPool2d(2, ceil_mode="yes"), "ceil_mode"),
                       (lambda: AvgPool2d(2, count_include_pad=0), "count_include_pad"),
                       (lambda: layer_from_dict({"type": "cnn.AvgPool2d", "kernel_size": 2,
                                                 "dilation": 2}), "dilation")):
        with pytest.raises(ConfigError, match=field):
            bad()
