"""Dropout between stacked recurrent layers (PyTorch's ``dropout``): on the inputs of layers
1.. only, training plans only, the mask seeded like mlp.Dropout's (dropout_seed, the layer's
position, the training step), identical on both kernel sets."""

from __future__ import annotations

import numpy as np
import pytest

from qorus_core import Model
from qorus_core.kernels import c_status
from qorus_layers_rnn import GRU, LSTM, RNN

KERNELS = ["numpy"] + (["c"] if c_status()[0] else [])
CLASSES = [RNN, LSTM, GRU]
B, T, I, H, L = 3, 5, 4, 3, 3


def _train_forward(model: Model, x: np.ndarray, dy: np.ndarray | None = None):
    """y (and dx, grads when ``dy`` is given) of one training pass; the dropout mask used."""
    plan = model.plan(len(x), train=True, input_grad=True)
    plan.x.a[...] = x
    y = plan.forward().a.copy()
    mask = plan.ops[0].ctx.drop.a.copy()
    if dy is None:
        return y, mask
    model.zero_grad()
    plan.dy.a[...] = dy
    plan.backward()
    return y, mask, plan.dx.a.copy(), {k: v.copy() for k, v in model.gradients().items()}


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_dropout_masks_what_each_upper_layer_reads(cls, kernels):
    """Against PyTorch layer by layer: layer l > 0 reads layer l-1's output [B, T, 2H] times
    the plan's mask l-1; the last layer's output is not dropped."""
    torch = pytest.importorskip("torch")
    model = Model(cls(I, H, num_layers=L, bidirectional=True, dropout=0.5), (T, I), seed=3,
                  kernels=kernels)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    dy = rng.standard_normal((B, T, 2 * H)).astype(np.float32)
    y, mask, dx, grads = _train_forward(model, x, dy)
    assert mask.shape == (L - 1, T, B, 2 * H)                      # time-major, per boundary
    assert set(np.unique(mask)) == {0.0, 2.0}
    params = model.parameters()
    xt = torch.tensor(x, requires_grad=True)
    h, refs = xt, []
    for l in range(L):
        ref = getattr(torch.nn, cls.__name__)(I if l == 0 else 2 * H, H, batch_first=True,
                                              bidirectional=True)
        ref.load_state_dict({k: torch.tensor(params[k.replace("_l0", f"_l{l}")])
                             for k in ref.state_dict()})
        if l:
            h = h * torch.tensor(mask[l - 1].transpose(1, 0, 2))
        h, _ = ref(h)
        refs.append(ref)
    (h * torch.tensor(dy)).sum().backward()
    tol = {"rtol": 1e-4, "atol": 1e-5}
    np.testing.assert_allclose(y, h.detach().numpy(), **tol)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol)
    for l, ref in enumerate(refs):
        for name, p in ref.named_parameters():
            ours = name.replace("_l0", f"_l{l}")
            np.testing.assert_allclose(grads[ours], p.grad.numpy(), err_msg=ours, **tol)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_inference_is_the_identity(cls):
    x = np.random.default_rng(1).standard_normal((B, T, I)).astype(np.float32)
    with_drop = Model(cls(I, H, num_layers=2, dropout=0.7), (T, I), seed=4)
    without = Model(cls(I, H, num_layers=2), (T, I), seed=4)
    np.testing.assert_array_equal(with_drop.predict(x), without.predict(x))


def test_the_mask_follows_seed_position_and_step_alike_on_both_kernel_sets():
    x = np.random.default_rng(2).standard_normal((B, T, I)).astype(np.float32)
    runs = {}
    for kernels in KERNELS:
        for seed in (0, 1):
            model = Model(LSTM(I, H, num_layers=2, dropout=0.3, dropout_seed=seed), (T, I),
                          seed=5, kernels=kernels)
            first = _train_forward(model, x)
            again = _train_forward(model, x)
            model.run.step += 1
            runs[kernels, seed] = (first, again, _train_forward(model, x))
    for kernels in KERNELS:
        (y0, m0), (y1, m1), (y2, m2) = runs[kernels, 0]
        np.testing.assert_array_equal(m0, m1)                       # same step: same mask
        np.testing.assert_array_equal(y0, y1)
        assert not np.array_equal(m0, m2)                           # the next step: another
        assert not np.array_equal(m0, runs[kernels, 1][0][1])       # another seed: another
        assert 0.5 < (m0 != 0).mean() < 0.9                         # about 1 - p kept
    np.testing.assert_array_equal(runs["numpy", 0][0][1], runs[KERNELS[-1], 0][0][1])
