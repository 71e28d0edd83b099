"""PyTorch parity after training steps: the same network and weights in Qorus and PyTorch, the
loss L = sum(y * r) for a fixed random r (dL/dy = r on both sides), then ``steps`` AdamW steps;
loss, every parameter gradient of the first step and every parameter after the last compared
(rtol 1e-4 unless told)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np

from qorus_core.train.optimizers import AdamW

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def example(name: str) -> ModuleType:
    """examples/<name>.py as a module (examples/ on sys.path for its own imports)."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def nonzero_biases(module, seed: int = 0):
    """``module`` with its biases drawn from U(-0.3, 0.3) (PyTorch zeroes the attention ones),
    so their gradients are compared too."""
    import torch

    torch.manual_seed(seed)
    with torch.no_grad():
        for n, p in module.named_parameters():
            if n.endswith("bias"):
                p.uniform_(-0.3, 0.3)
    return module


def train_parity(model, torch_module, inputs: dict[str, np.ndarray],
                 torch_forward: Callable[[dict], object], names: Callable[[str], str] = str,
                 steps: int = 3, rtol: float = 1e-4, atol: float = 1e-5, lr: float = 1e-2,
                 seed: int = 0) -> dict[str, float]:
    """Load ``torch_module``'s weights into ``model`` (``names`` maps a Qorus parameter name to
    PyTorch's), run ``steps`` steps on both and compare. ``torch_forward(tensors)`` runs the
    PyTorch network on the inputs as tensors. Returns the largest relative error of each."""
    import torch

    torch_params = dict(torch_module.named_parameters())
    state = {n: torch_params[names(n)].detach().numpy().copy() for n in model.parameters()}
    model.load_state_dict({**{k: v.numpy() for k, v in torch_module.state_dict().items()
                              if k not in torch_params and k in model.state_dict()}, **state})
    batch = next(iter(inputs.values())).shape[0]
    opt = AdamW(lr=lr).bind(model)                  # before the plan: it grows the arena
    plan = model.plan(batch, train=True)
    for name, a in inputs.items():
        plan.inputs[name].a[...] = a
    r = np.random.default_rng(seed).standard_normal(plan.y.shape).astype(np.float32)
    topt = torch.optim.AdamW(torch_module.parameters(), lr=lr)
    tin = {k: torch.from_numpy(v) for k, v in inputs.items()}
    worst = {"loss": 0.0, "grad": 0.0, "param": 0.0}
    null: dict[str, np.ndarray] = {}
    for step in range(steps):
        model.zero_grad()
        plan.forward()
        loss = float((plan.y.a.astype(np.float64) * r).sum())
        plan.dy.a[...] = r
        plan.backward()
        topt.zero_grad()
        y = torch_forward(tin)
        tloss = (y.double() * torch.from_numpy(r).double()).sum()
        y.backward(torch.from_numpy(r))
        tloss = float(tloss.detach())
        np.testing.assert_allclose(loss, tloss, rtol=rtol, atol=atol * r.size,
                                   err_msg=f"loss at step {step}")
        worst["loss"] = max(worst["loss"], abs(loss - tloss) / max(abs(tloss), 1e-12))
        if step == 0:
            for n, g in model.gradients().items():
                want = torch_params[names(n)].grad.numpy()
                np.testing.assert_allclose(g, want, rtol=rtol, atol=atol,
                                           err_msg=f"gradient of {n}")
                worst["grad"] = max(worst["grad"], _rel(g, want))
                null[n] = _null(want)
        opt.step()
        topt.step()
    for n, p in model.parameters().items():
        want = torch_params[names(n)].detach().numpy()
        keep = ~null[n]
        np.testing.assert_allclose(p[keep], want[keep], rtol=rtol, atol=atol,
                                   err_msg=f"parameter {n}")
        worst["param"] = max(worst["param"], _rel(p[keep], want[keep]) if keep.any() else 0.0)
    return worst


def _null(grad: np.ndarray) -> np.ndarray:
    """Entries whose exact gradient is 0 (an attention key bias: softmax ignores a shift of
    every score): both sides hold float noise there (the gradient check above held them
    within atol), which Adam scales up to lr-sized steps of either sign, so their
    parameters are not compared after the steps."""
    return np.abs(grad) <= 1e-6 * max(float(np.max(np.abs(grad))), 1e-30)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-12))
