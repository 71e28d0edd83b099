"""cnn.ConvTranspose2d and cnn.ConvTranspose1d: finite differences, C vs NumPy, PyTorch
parity (stride, padding, output_padding, dilation, groups, bias), round trips, errors, no
allocation after warm-up."""

from __future__ import annotations

import pytest
from _parity import check_no_allocation, check_round_trip, check_torch_parity

from qorus_core import Model
from qorus_core.errors import ConfigError, ShapeError
from qorus_core.testing import check_gradients, check_kernel_parity
from qorus_layers_cnn import ConvTranspose1d, ConvTranspose2d

ARGS = [
    ("2d", (4, 6, (3, 2)), dict(stride=(2, 3), padding=(1, 0), output_padding=(1, 2), groups=2,
                                dilation=(1, 2)), (4, 4, 3)),
    ("2d", (3, 5, 1), dict(bias=False), (3, 4, 4)),                 # 1x1: no col2im
    ("2d", (3, 2, 4), dict(stride=2, padding=1), (3, 3, 4)),        # the DCGAN upsampler
    ("1d", (4, 6, 3), dict(stride=2, padding=1, output_padding=1, groups=2, dilation=2), (4, 5)),
    ("1d", (4, 3, 5), dict(bias=False), (4, 6)),
]
IDS = ["2d-everything", "2d-1x1-nobias", "2d-k4s2p1", "1d-everything", "1d-nobias"]


def _ours(rank, args, kw):
    return (ConvTranspose2d if rank == "2d" else ConvTranspose1d)(*args, **kw)


CASES = [(_ours(r, a, kw), shape) for r, a, kw, shape in ARGS]


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


@pytest.mark.parametrize("case", range(len(ARGS)), ids=IDS)
def test_matches_pytorch(case, kernels):
    torch = pytest.importorskip("torch")
    rank, args, kw, shape = ARGS[case]
    torch.manual_seed(0)
    ref = (torch.nn.ConvTranspose2d if rank == "2d" else torch.nn.ConvTranspose1d)(*args, **kw)
    check_torch_parity(torch, _ours(rank, args, kw), ref, shape, kernels)


def test_output_shapes_and_pytorch_init_bounds():
    model = Model(ConvTranspose2d(3, 8, 4, stride=2, padding=1), (3, 5, 7))
    assert model.output_shape == (8, 10, 14)
    w = model.parameters()["weight"]
    assert w.shape == (3, 8, 4, 4) and abs(w).max() <= 1 / (8 * 16) ** 0.5   # fan_in = out k k
    assert Model(ConvTranspose1d(3, 2, 3, stride=3, output_padding=2), (3, 4)).output_shape \
        == (2, 14)


def test_no_allocation_after_warm_up(kernels):
    check_no_allocation(CASES[0][0], CASES[0][1], kernels)
    check_no_allocation(CASES[3][0], CASES[3][1], kernels)


def test_bad_configs_and_inputs_name_the_layer_and_field():
    with pytest.raises(ShapeError, match=r"cnn\.ConvTranspose2d.*NCHW"):
        Model(ConvTranspose2d(3, 4, 3), (3, 8))
    with pytest.raises(ShapeError, match=r"cnn\.ConvTranspose1d.*expected 3 input channels"):
        Model(ConvTranspose1d(3, 4, 3), (2, 8))
    with pytest.raises(ShapeError, match=r"cnn\.ConvTranspose2d.*leaves no output"):
        Model(ConvTranspose2d(1, 1, 1, padding=1), (1, 1, 1))
    for bad, field in ((lambda: ConvTranspose2d(3, 4, 3, stride=2, output_padding=2),
                        "output_padding"),
                       (lambda: ConvTranspose1d(3, 4, 3, output_padding=1), "output_padding"),
                       (lambda: ConvTranspose1d(3, 4, [3, 3]), "kernel_size"),
                       (lambda: ConvTranspose2d(3, 4, 3, groups=2), "groups"),
                       (lambda: ConvTranspose2d(4, 0, 3), "out_channels"),
                       (lambda: ConvTranspose2d(4, 4, 3, padding=-1), "padding")):
        with pytest.raises(ConfigError, match=field):
            bad()
