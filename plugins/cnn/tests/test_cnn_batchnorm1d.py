"""cnn.BatchNorm1d ([B, C] and [B, C, L]) and affine=False of BatchNorm1d / BatchNorm2d:
finite differences, C vs NumPy, PyTorch parity (running statistics included, in training and
inference), state dict names, round trips, errors, no allocation after warm-up."""

from __future__ import annotations

import pytest
from _parity import check_no_allocation, check_round_trip, check_torch_parity

from qorus_core import Model
from qorus_core.errors import ConfigError, ShapeError
from qorus_core.testing import check_gradients, check_kernel_parity
from qorus_layers_cnn import BatchNorm1d, BatchNorm2d

CASES = [(BatchNorm1d(4), (4,)), (BatchNorm1d(3, momentum=0.3), (3, 5)),
         (BatchNorm1d(None, affine=False), (3, 5)), (BatchNorm1d(4, affine=False), (4,)),
         (BatchNorm2d(3, affine=False, eps=1e-3), (3, 4, 2))]
IDS = ["1d-BC", "1d-BCL", "1d-BCL-no-affine", "1d-BC-no-affine", "2d-no-affine"]


@pytest.mark.parametrize("layer,shape", CASES, ids=IDS)
def test_gradients_c_numpy_and_round_trip(layer, shape):
    result = check_gradients(layer, input_shape=shape, batch=5)
    assert result.checked > 0 and ("weight" in result.errors) == layer.affine
    check_kernel_parity(layer, input_shape=shape, rtol=1e-4, atol=1e-4)
    check_round_trip(layer, shape)


@pytest.mark.parametrize("case", range(len(CASES)), ids=IDS)
def test_matches_pytorch_in_training_and_inference(case, kernels):
    torch = pytest.importorskip("torch")
    layer, shape = CASES[case]
    cls = torch.nn.BatchNorm1d if isinstance(layer, BatchNorm1d) else torch.nn.BatchNorm2d
    ref = cls(shape[0], eps=layer.eps, momentum=layer.momentum, affine=layer.affine)
    check_torch_parity(torch, layer, ref, shape, kernels, batch=6)
    check_torch_parity(torch, layer, ref, shape, kernels, batch=6, train=False)


def test_state_dict_names_follow_pytorch():
    assert sorted(Model(BatchNorm1d(3, affine=False), (3, 4)).state_dict()) == [
        "num_batches_tracked", "running_mean", "running_var"]
    assert sorted(Model(BatchNorm1d(3), (3,)).state_dict()) == [
        "bias", "num_batches_tracked", "running_mean", "running_var", "weight"]


def test_no_allocation_after_warm_up(kernels):
    check_no_allocation(BatchNorm1d(3, affine=False), (3, 5), kernels)
    check_no_allocation(BatchNorm1d(4), (4,), kernels)


def test_bad_configs_and_inputs_name_the_layer_and_field():
    with pytest.raises(ShapeError, match=r"cnn\.BatchNorm1d.*\[batch, channels\] or"):
        Model(BatchNorm1d(3), (3, 4, 4))
    with pytest.raises(ShapeError, match=r"cnn\.BatchNorm2d.*NCHW"):
        Model(BatchNorm2d(3), (3, 4))
    with pytest.raises(ShapeError, match=r"cnn\.BatchNorm1d.*expected 4 channels"):
        Model(BatchNorm1d(4), (3,))
    with pytest.raises(ShapeError, match=r"cnn\.BatchNorm1d.*more than one value"):
        Model(BatchNorm1d(), (3,)).plan(1, train=True)
    for bad, field in ((lambda: BatchNorm1d(3, affine="no"), "affine"),
                       (lambda: BatchNorm1d(0), "num_features"),
                       (lambda: BatchNorm1d(3, momentum=None), "momentum")):
        with pytest.raises(ConfigError, match=field):
            bad()
