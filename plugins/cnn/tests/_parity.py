"""Shared checks of the cnn layer tests: PyTorch parity of one layer (forward, input and
parameter gradients, buffers), config round trips, and no allocation after a warm-up step."""

from __future__ import annotations

import json

import numpy as np

from qorus_core import Model, layer_from_dict, layer_to_dict
from qorus_core.testing import trace_allocations


def torch_state(ref) -> dict[str, np.ndarray]:
    """A PyTorch state dict as arrays; num_batches_tracked (0-d there) as our 1-element buffer."""
    return {k: v.detach().numpy().reshape(-1) if v.ndim == 0 else v.detach().numpy()
            for k, v in ref.state_dict().items()}


def check_torch_parity(torch, ours, ref, shape, kernels: str, batch: int = 3, seed: int = 0,
                       train: bool = True, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    """``ours`` (loading ``ref``'s state dict as it is) matches the PyTorch module ``ref`` on
    one random batch: output, input gradient, every parameter's gradient, every buffer."""
    rng = np.random.default_rng(seed)
    for p in ref.parameters():           # away from the default init: every parameter matters
        torch.nn.init.uniform_(p, -1.0, 1.0)
    ref.train(train)
    model = Model(ours, shape, kernels=kernels)
    plan = model.plan(batch, train=True, input_grad=True) if train else model.plan(batch)
    model.load_state_dict(torch_state(ref), source="torch")
    x = rng.standard_normal((batch,) + tuple(shape)).astype(np.float32)
    ref.zero_grad()
    xt = torch.tensor(x, requires_grad=True)
    yt = ref(xt)
    plan.x.a[...] = x
    name = ours.type_name
    np.testing.assert_allclose(plan.forward().a, yt.detach().numpy(), rtol=rtol, atol=atol,
                               err_msg=f"{name} forward")
    if not train:
        return
    dy = rng.standard_normal(tuple(yt.shape)).astype(np.float32)
    yt.backward(torch.tensor(dy))
    model.zero_grad()
    plan.dy.a[...] = dy
    plan.backward()
    np.testing.assert_allclose(plan.dx.a, xt.grad.numpy(), rtol=rtol, atol=atol,
                               err_msg=f"{name} input gradient")
    grads = model.gradients()
    assert sorted(grads) == sorted(n for n, _ in ref.named_parameters()), name
    for n, p in ref.named_parameters():
        np.testing.assert_allclose(grads[n], p.grad.numpy(), rtol=rtol, atol=atol,
                                   err_msg=f"{name} grad {n}")
    for n, buf in ref.named_buffers():
        np.testing.assert_allclose(model.buffers()[n].reshape(buf.shape), buf.numpy(),
                                   rtol=1e-5, atol=1e-6, err_msg=f"{name} {n}")


def check_round_trip(layer, shape) -> None:
    """The config survives JSON; the rebuilt layer makes the same model (same seed)."""
    d = json.loads(json.dumps(layer_to_dict(layer)))
    again = layer_from_dict(d)
    assert type(again) is type(layer) and again.get_config() == layer.get_config()
    x = np.random.default_rng(0).standard_normal((2,) + tuple(shape)).astype(np.float32)
    a, b = Model(layer, shape, seed=3), Model(again, shape, seed=3)
    np.testing.assert_array_equal(a.predict(x), b.predict(x))


def check_no_allocation(layer, shape, kernels: str, batch: int = 3) -> None:
    """After one warm-up, a training step (forward, backward) and an inference forward create
    no NumPy array."""
    model = Model(layer, shape, kernels=kernels)
    train, infer = model.plan(batch, train=True, input_grad=True), model.plan(batch)
    rng = np.random.default_rng(0)
    train.x.a[...] = rng.standard_normal(train.x.shape)
    infer.x.a[...] = train.x.a
    train.dy.a[...] = rng.standard_normal(train.dy.shape)

    def step():
        model.zero_grad()
        train.forward()
        train.backward()
        infer.forward()

    step()
    trace = trace_allocations(step, repeat=3)
    assert trace.array_bytes == 0, trace.where
