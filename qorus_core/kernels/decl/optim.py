"""Optimizer steps over flat parameter buffers (csrc/optim.c): torch.optim's SGD and
Adam / AdamW, bit for bit the same float32 operations on both kernel sets."""

from __future__ import annotations

import math
import operator

import numpy as np

from ...errors import KernelError
from ...tensor import Tensor
from .spec import EXACT, kernel, sizes_error

FAMILY = "optim"


def check_sgd(kernel: str, p: Tensor, g: Tensor, buf: Tensor, lr, momentum, dampening,
              weight_decay, nesterov, first) -> int:
    """The element count of an SGD step: p, g (and buf with momentum) of one size."""
    if g.size != p.size or (momentum and buf.size != p.size):
        raise sizes_error(kernel, "must have the same size", p=p, g=g, buf=buf)
    return p.size


_SGD = dict(p=(33,), g=(33,), buf=(33,), lr=0.05, momentum=0.9, dampening=0.1,
            weight_decay=1e-2, nesterov=False, first=False)


@kernel(FAMILY, "p:inout g buf:inout", check=check_sgd, dims="n",
        c="qr_sgd_step_f32(p, g, buf.wp if momentum else buf.p:ptr, n, lr:f64, momentum:f64, "
          "dampening:f64, weight_decay:f64, nesterov:bool, first:bool)", tol=EXACT,
        examples=[_SGD, {**_SGD, "nesterov": True, "dampening": 0.0, "first": True},
                  {**_SGD, "momentum": 0.0, "buf": (1,)}])
def sgd_step(self, p: Tensor, g: Tensor, buf: Tensor, lr: float, momentum: float,
             dampening: float, weight_decay: float, nesterov: bool, first: bool) -> None:
    """torch.optim.SGD over a flat buffer: buf is the momentum buffer (same size as p; not
    used, and not written, when momentum is 0)."""
    P, B = p.w, buf.w if momentum else None
    d = self.scratch("sgd_d", p.shape)
    t = self.scratch("sgd_t", p.shape)
    np.copyto(d, g.a.reshape(p.shape))
    if weight_decay:
        np.multiply(P, np.float32(weight_decay), out=t)
        np.add(d, t, out=d)
    if momentum:
        B = B.reshape(p.shape)
        if first:
            np.copyto(B, d)
        else:
            np.multiply(B, np.float32(momentum), out=B)
            np.multiply(d, np.float32(1.0 - dampening), out=t)
            np.add(B, t, out=B)
        if nesterov:
            np.multiply(B, np.float32(momentum), out=t)
            np.add(d, t, out=d)
        else:
            np.copyto(d, B)
    np.multiply(d, np.float32(lr), out=d)
    np.subtract(P, d, out=P)


def check_adam(kernel: str, p: Tensor, g: Tensor, m: Tensor, v: Tensor, lr, beta1, beta2, eps,
               weight_decay, step, decoupled) -> int:
    """The element count of an Adam(W) step: p, g, m, v of one size, step counted from 1."""
    if not (g.size == m.size == v.size == p.size):
        raise sizes_error(kernel, "must have the same size", p=p, g=g, m=m, v=v)
    if operator.index(step) < 1:
        raise KernelError(f"{kernel}: step={step}: steps count from 1")
    return p.size


_ADAM = dict(p=(33,), g=(33,), m=(33,), v=((33,), 0.0, 1.0), lr=1e-3, beta1=0.9, beta2=0.999,
             eps=1e-8, weight_decay=1e-2, step=3, decoupled=False)


@kernel(FAMILY, "p:inout g m:inout v:inout", check=check_adam, dims="n",
        c="qr_adam_step_f32(p, g, m, v, n, lr:f64, beta1:f64, beta2:f64, eps:f64, "
          "weight_decay:f64, step:i64, decoupled:bool)", tol=EXACT,
        examples=[_ADAM, {**_ADAM, "decoupled": True, "step": 1}],
        bad=[("adam_step: step=0: steps count from 1", dict(step=0))])
def adam_step(self, p: Tensor, g: Tensor, m: Tensor, v: Tensor, lr: float, beta1: float,
              beta2: float, eps: float, weight_decay: float, step: int, decoupled: bool) -> None:
    """torch.optim.Adam (decoupled=False, L2 in the gradient) or AdamW (decoupled=True)
    over flat buffers; step counts from 1."""
    P, G = p.w, g.a.reshape(p.shape)
    M, V = m.w.reshape(p.shape), v.w.reshape(p.shape)
    t = self.scratch("adam_t", P.shape)
    d = self.scratch("adam_d", P.shape)
    if decoupled:
        if weight_decay:
            np.multiply(P, np.float32(1.0 - lr * weight_decay), out=P)
        gg = G
    else:
        gg = d
        np.copyto(d, G)
        if weight_decay:
            np.multiply(P, np.float32(weight_decay), out=t)
            np.add(d, t, out=d)
    # m = b1 m + (1-b1) g ; v = b2 v + (1-b2) g^2  (torch's lerp_ / addcmul_ order)
    np.subtract(gg, M, out=t)
    np.multiply(t, np.float32(1.0 - beta1), out=t)
    np.add(M, t, out=M)
    np.multiply(V, np.float32(beta2), out=V)
    np.multiply(gg, gg, out=t)
    np.multiply(t, np.float32(1.0 - beta2), out=t)
    np.add(V, t, out=V)
    bc1 = 1.0 - beta1 ** step
    bc2 = 1.0 - beta2 ** step
    step_size = lr / bc1
    np.sqrt(V, out=t)
    np.divide(t, np.float32(math.sqrt(bc2)), out=t)
    np.add(t, np.float32(eps), out=t)
    np.divide(M, t, out=t)
    np.multiply(t, np.float32(step_size), out=t)
    np.subtract(P, t, out=P)
