"""cnn.GroupNorm over [B, C], [B, C, L] and [B, C, H, W]: finite differences, C vs NumPy,
PyTorch parity (its state dict loaded as it is), round trips, errors, no allocation."""

from __future__ import annotations

import numpy as np
import pytest
from _parity import check_no_allocation, check_round_trip, check_torch_parity

from qorus_core import Model
from qorus_core.errors import ConfigError, ShapeError
from qorus_core.testing import check_gradients, check_kernel_parity
from qorus_layers_cnn import GroupNorm

CASES = [(GroupNorm(2, 6), (6, 4, 5)), (GroupNorm(3, 3, eps=1e-3), (3, 7)),
         (GroupNorm(1, 4, affine=False), (4, 3, 2)), (GroupNorm(2, 6), (6,))]
IDS = ["2-groups-2d", "instance-1d", "layer-no-affine", "BC"]


@pytest.mark.parametrize("layer,shape", CASES, ids=IDS)
def test_gradients_c_numpy_and_round_trip(layer, shape):
    result = check_gradients(layer, input_shape=shape, batch=3)
    assert result.checked > 0 and ("weight" in result.errors) == layer.affine
    check_kernel_parity(layer, input_shape=shape, rtol=1e-4, atol=1e-4)
    check_round_trip(layer, shape)


@pytest.mark.parametrize("case", range(len(CASES)), ids=IDS)
def test_matches_pytorch_in_training_and_inference(case, kernels):
    torch = pytest.importorskip("torch")
    layer, shape = CASES[case]
    ref = torch.nn.GroupNorm(layer.num_groups, layer.num_channels, eps=layer.eps,
                             affine=layer.affine)
    check_torch_parity(torch, layer, ref, shape, kernels, batch=4)
    check_torch_parity(torch, layer, ref, shape, kernels, batch=2, train=False)


def test_the_output_does_not_depend_on_the_batch(kernels):
    """Unlike BatchNorm: each sample is normalised by its own statistics."""
    x = np.random.default_rng(0).standard_normal((5, 6, 3, 3)).astype(np.float32)
    model = Model(GroupNorm(3, 6), (6, 3, 3), kernels=kernels)
    np.testing.assert_allclose(model.predict(x)[2:3], model.predict(x[2:3]), rtol=1e-6,
                               atol=1e-6)


def test_state_dict_names_follow_pytorch():
    assert sorted(Model(GroupNorm(2, 4), (4, 3)).state_dict()) == ["bias", "weight"]
    assert Model(GroupNorm(2, 4, affine=False), (4, 3)).state_dict() == {}


def test_no_allocation_after_warm_up(kernels):
    check_no_allocation(GroupNorm(2, 6), (6, 4, 5), kernels)
    check_no_allocation(GroupNorm(1, 3, affine=False), (3, 5), kernels)


def test_bad_configs_and_inputs_name_the_layer_and_field():
    with pytest.raises(ShapeError, match=r"cnn\.GroupNorm.*expected 4 channels"):
        Model(GroupNorm(2, 4), (6, 3))
    with pytest.raises(ShapeError, match=r"cnn\.GroupNorm.*rank 1"):
        Model(GroupNorm(1, 4), ())
    for bad, field in ((lambda: GroupNorm(4, 6), "divisible by num_groups"),
                       (lambda: GroupNorm(0, 6), "num_groups"),
                       (lambda: GroupNorm(2), "num_channels"),
                       (lambda: GroupNorm(2, 4, eps=0.0), "eps"),
                       (lambda: GroupNorm(2, 4, affine=1), "affine")):
        with pytest.raises(ConfigError, match=rf"cnn\.GroupNorm.*{field}"):
            bad()
