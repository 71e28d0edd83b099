"""The same MLP with the same weights as PyTorch 2.13: loss, gradients and parameters after
5 AdamW steps with gradient clipping agree (rtol 1e-5). Runs where torch is importable
(`tox -e parity`)."""

from __future__ import annotations

import numpy as np
import pytest

from qorus_core import Model, Sequential, Tensor
from qorus_core.train.losses import CrossEntropyLoss
from qorus_core.train.optimizers import AdamW, clip_grad_norm
from qorus_layers_mlp import GELU, LayerNorm, Linear, ReLU

torch = pytest.importorskip("torch")


def _nets():
    ours = Sequential([Linear(64, 48), ReLU(), Linear(48, 32), LayerNorm(32), GELU(),
                       Linear(32, 10)])
    ref = torch.nn.Sequential(torch.nn.Linear(64, 48), torch.nn.ReLU(), torch.nn.Linear(48, 32),
                              torch.nn.LayerNorm(32), torch.nn.GELU(), torch.nn.Linear(32, 10))
    return ours, ref


def _close(got, want, what):
    scale = float(np.max(np.abs(want))) or 1.0
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * scale, err_msg=what)


def test_mlp_adamw_clipping_matches_torch(kernels):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    ours, ref = _nets()
    model = Model(ours, (64,), kernels=kernels)
    with torch.no_grad():   # random LayerNorm affine so its gradient path is exercised
        ref[3].weight.uniform_(0.5, 1.5)
        ref[3].bias.uniform_(-0.5, 0.5)
    model.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    opt = AdamW(lr=1e-2, weight_decay=0.05).bind(model)
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-2, weight_decay=0.05)
    loss_fn = CrossEntropyLoss(label_smoothing=0.1)

    rng = np.random.default_rng(1)
    batch = 16
    plan = model.plan(batch, train=True)
    targets = Tensor.of(np.zeros(batch, np.int32))
    for step in range(5):
        x = rng.standard_normal((batch, 64)).astype(np.float32)
        y = rng.integers(0, 10, batch).astype(np.int32)
        plan.x.a[...] = x
        targets.a[...] = y
        model.zero_grad()
        plan.forward()
        loss = loss_fn(plan.y, targets, plan.dy, model.kernels)
        plan.backward()
        norm = clip_grad_norm(model, 0.5)

        ref_opt.zero_grad()
        ref_loss = torch.nn.functional.cross_entropy(ref(torch.from_numpy(x)),
                                                     torch.from_numpy(y).long(),
                                                     label_smoothing=0.1)
        ref_loss.backward()
        ref_norm = torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.5)
        assert loss == pytest.approx(ref_loss.item(), rel=1e-5), f"loss at step {step}"
        assert norm == pytest.approx(ref_norm.item(), rel=1e-5), f"grad norm at step {step}"
        grads = model.gradients()
        for name, p in ref.named_parameters():
            _close(grads[name], p.grad.numpy(), f"grad {name} at step {step}")

        opt.step()
        ref_opt.step()
        params = model.parameters()
        for name, p in ref.named_parameters():
            _close(params[name], p.detach().numpy(), f"param {name} after step {step}")
