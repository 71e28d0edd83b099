"""cnn.Upsample: PyTorch parity of nearest and bilinear (align_corners both ways) for
integer, fractional and per-axis scale factors, for sizes, downsampling included; finite
differences, C vs NumPy, round trips, errors, no allocation after warm-up."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from _parity import check_no_allocation, check_round_trip, check_torch_parity

from qorus_core import Model
from qorus_core.errors import ConfigError, ShapeError
from qorus_core.testing import check_gradients, check_kernel_parity
from qorus_layers_cnn import Upsample

SIZES = [dict(scale_factor=2), dict(scale_factor=1.5), dict(scale_factor=[1.7, 2.3]),
         dict(scale_factor=0.6), dict(size=[7, 5]), dict(size=[3, 11]), dict(size=4)]
MODES = [("nearest", None), ("bilinear", False), ("bilinear", True)]
ALL = list(itertools.product(range(len(SIZES)), MODES))
IDS = [f"{'-'.join(f'{k}{v}' for k, v in SIZES[i].items())}-{m}-{a}" for i, (m, a) in ALL]
SHAPE = (3, 4, 5)


def _layer(i: int, mode: str, align: bool | None) -> Upsample:
    return Upsample(mode=mode, align_corners=align, **SIZES[i])


@pytest.mark.parametrize("i,ma", ALL, ids=IDS)
def test_matches_pytorch(i, ma, kernels):
    torch = pytest.importorskip("torch")
    mode, align = ma
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in SIZES[i].items()}
    ref = torch.nn.Upsample(mode=mode, align_corners=align, **kw)
    check_torch_parity(torch, _layer(i, mode, align), ref, SHAPE, kernels, rtol=1e-5,
                       atol=1e-5)


@pytest.mark.parametrize("ma", MODES, ids=[f"{m}-{a}" for m, a in MODES])
def test_gradients_c_numpy_and_round_trip(ma):
    layer = _layer(2, *ma)
    assert check_gradients(layer, input_shape=SHAPE).checked > 0
    check_kernel_parity(layer, input_shape=SHAPE, rtol=1e-5, atol=1e-6)
    check_round_trip(layer, SHAPE)


def test_nearest_is_exact_and_a_nan_spreads_as_in_pytorch(kernels):
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    y = Model(Upsample(scale_factor=2), SHAPE, kernels=kernels).predict(x)
    np.testing.assert_array_equal(y, x.repeat(2, axis=2).repeat(2, axis=3))
    x[0, 0, 1, 1] = np.nan
    y = Model(Upsample(scale_factor=2, mode="bilinear"), SHAPE, kernels=kernels).predict(x)
    assert 0 < np.isnan(y).sum() <= 36 and np.isnan(y).sum() == np.isnan(y[0, 0]).sum()
    torch = pytest.importorskip("torch")
    want = torch.nn.Upsample(scale_factor=2, mode="bilinear")(torch.tensor(x)).numpy()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))    # weight-0 taps too


def test_no_allocation_after_warm_up(kernels):
    check_no_allocation(Upsample(scale_factor=2), SHAPE, kernels)
    check_no_allocation(Upsample(size=[7, 9], mode="bilinear", align_corners=True), SHAPE,
                        kernels)


def test_bad_configs_and_inputs_name_the_layer_and_field():
    with pytest.raises(ShapeError, match=r"cnn\.Upsample.*NCHW"):
        Model(Upsample(scale_factor=2), (3, 8))
    with pytest.raises(ShapeError, match=r"cnn\.Upsample.*leaves no output"):
        Model(Upsample(scale_factor=0.1), (3, 4, 4))
    for bad, field in ((lambda: Upsample(), "exactly one of size and scale_factor"),
                       (lambda: Upsample(size=4, scale_factor=2), "exactly one"),
                       (lambda: Upsample(scale_factor=0), "scale_factor"),
                       (lambda: Upsample(scale_factor=[1, 2, 3]), "scale_factor"),
                       (lambda: Upsample(size=[0, 2]), "size"),
                       (lambda: Upsample(size=2, mode="bicubic"), "mode"),
                       (lambda: Upsample(size=2, align_corners=True), "align_corners"),
                       (lambda: Upsample(size=2, mode="bilinear", align_corners=1),
                        "align_corners")):
        with pytest.raises(ConfigError, match=field):
            bad()
