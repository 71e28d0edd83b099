"""cnn.Conv1d, and the string paddings ("same", "valid") of Conv1d and Conv2d: finite
differences, C vs NumPy, PyTorch parity (odd and even "same" totals), round trips, errors,
no allocation after warm-up."""

from __future__ import annotations

import warnings

import pytest
from _parity import check_no_allocation, check_round_trip, check_torch_parity

from qorus_core import Model, QorusError
from qorus_core.errors import ConfigError, ShapeError
from qorus_core.testing import check_gradients, check_kernel_parity
from qorus_layers_cnn import Conv1d, Conv2d

CASES = [
    (Conv1d(3, 4, 3, padding=1), (3, 9)),
    (Conv1d(None, 6, 3, stride=2, padding=2, dilation=2, groups=2), (4, 11)),
    (Conv1d(2, 3, 1, bias=False), (2, 5)),
    (Conv1d(3, 4, 4, padding="same"), (3, 7)),             # odd total: one extra on the right
    (Conv1d(3, 4, 3, padding="same", dilation=2), (3, 7)),
    (Conv1d(3, 2, 3, padding="valid"), (3, 6)),
    (Conv2d(3, 4, (2, 3), padding="same", dilation=(3, 1)), (3, 5, 6)),
    (Conv2d(2, 4, (4, 2), padding="same"), (2, 5, 6)),      # odd totals on both axes
]
IDS = ["basic", "stride-dilation-groups", "1x1-nobias", "same-even-k", "same-dilated",
       "valid", "2d-same-odd-total-h", "2d-same-both"]


@pytest.mark.parametrize("layer,shape", CASES, ids=IDS)
def test_gradients_match_finite_differences(layer, shape):
    result = check_gradients(layer, input_shape=shape)
    assert result.checked > 0 and "input" in result.errors and "weight" in result.errors


@pytest.mark.parametrize("layer,shape", CASES, ids=IDS)
def test_c_and_numpy_kernels_agree(layer, shape):
    check_kernel_parity(layer, input_shape=shape, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("layer,shape", CASES, ids=IDS)
def test_config_round_trip(layer, shape):
    check_round_trip(layer, shape)


def test_each_case_matches_pytorch(kernels):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    refs = [nn.Conv1d(3, 4, 3, padding=1), nn.Conv1d(4, 6, 3, stride=2, padding=2, dilation=2,
                                                     groups=2),
            nn.Conv1d(2, 3, 1, bias=False), nn.Conv1d(3, 4, 4, padding="same"),
            nn.Conv1d(3, 4, 3, padding="same", dilation=2), nn.Conv1d(3, 2, 3, padding="valid"),
            nn.Conv2d(3, 4, (2, 3), padding="same", dilation=(3, 1)),
            nn.Conv2d(2, 4, (4, 2), padding="same")]
    torch.manual_seed(0)
    with warnings.catch_warnings():    # PyTorch: an even "same" kernel pads a copy of x
        warnings.simplefilter("ignore", UserWarning)
        for (ours, shape), ref in zip(CASES, refs):
            check_torch_parity(torch, ours, ref, shape, kernels)


def test_output_shapes():
    assert Model(Conv1d(3, 5, 4, padding="same"), (3, 10)).output_shape == (5, 10)
    assert Model(Conv1d(3, 5, 3, stride=2), (3, 10)).output_shape == (5, 4)
    assert Model(Conv2d(3, 5, (4, 3), padding="same"), (3, 6, 7)).output_shape == (5, 6, 7)


def test_no_allocation_after_warm_up(kernels):
    check_no_allocation(Conv1d(3, 4, 3, padding=1, groups=1), (3, 9), kernels)
    check_no_allocation(Conv1d(4, 4, 4, padding="same", groups=2), (4, 9), kernels)
    check_no_allocation(Conv2d(2, 4, (4, 2), padding="same"), (2, 5, 6), kernels)


def test_bad_configs_and_inputs_name_the_layer_and_field():
    with pytest.raises(ShapeError, match=r"cnn\.Conv1d.*NCL"):
        Model(Conv1d(3, 4, 3), (3, 8, 8))
    with pytest.raises(QorusError, match=r"cnn\.Conv1d.*expected 3 input channels, got 2"):
        Model(Conv1d(3, 4, 3), (2, 8))
    with pytest.raises(ShapeError, match=r"cnn\.Conv1d.*does not fit"):
        Model(Conv1d(3, 4, 5), (3, 3))
    for bad, field in ((lambda: Conv1d(3, 4, (3, 3)), "kernel_size"),
                       (lambda: Conv1d(3, 4, 3, stride=0), "stride"),
                       (lambda: Conv1d(3, 4, 3, padding="full"), "padding"),
                       (lambda: Conv1d(3, 4, 3, stride=2, padding="same"), "padding='same'"),
                       (lambda: Conv2d(3, 4, 3, stride=(1, 2), padding="same"), "padding='same'"),
                       (lambda: Conv1d(3, 4, 3, groups=3), "groups"),
                       (lambda: Conv1d(3, 4), "kernel_size")):
        with pytest.raises(ConfigError, match=field):
            bad()
