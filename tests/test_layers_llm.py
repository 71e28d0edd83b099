"""llm.* layers so far: Embedding and RMSNorm, against finite differences, C and PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

from qorus_core import Model, Sequential
from qorus_core.errors import KernelError, ShapeError
from qorus_core.testing import check_gradients, check_kernel_parity, forward_backward
from qorus_layers_llm import Embedding, RMSNorm
from qorus_layers_mlp import Linear

CASES = [
    pytest.param(lambda: RMSNorm(12), (12,), "f32", id="RMSNorm"),
    pytest.param(lambda: Sequential([Embedding(9, 6), RMSNorm(), Linear(None, 4)]), (5,), "i32",
                 id="Embedding-stack"),
]


@pytest.mark.parametrize("make, shape, dtype", CASES)
def test_gradients(make, shape, dtype, kernels):
    assert check_gradients(make(), shape, input_dtype=dtype, kernels=kernels).checked > 0


@pytest.mark.parametrize("make, shape, dtype", CASES)
def test_c_numpy_parity(make, shape, dtype):
    check_kernel_parity(make(), shape, input_dtype=dtype)


def test_embedding_rejects_bad_ids_and_dtype():
    m = Model(Embedding(5, 3), (4,), input_dtype="i32")
    with pytest.raises(KernelError, match=r"token id 5 outside \[0, 5\)"):
        m.predict(np.array([[0, 1, 2, 5]], np.int32))
    with pytest.raises(ShapeError, match="int32 token ids"):
        Model(Embedding(5, 3), (4,))


def test_against_torch():
    torch = pytest.importorskip("torch")
    m = Model(Sequential([Embedding(11, 8), RMSNorm(eps=1e-6)]), (6,), input_dtype="i32", seed=1)
    p = m.parameters()
    ids = np.random.default_rng(0).integers(0, 11, (3, 6)).astype(np.int32)
    emb = torch.nn.Embedding(11, 8)
    norm = torch.nn.RMSNorm(8, eps=1e-6)
    with torch.no_grad():
        emb.weight.copy_(torch.from_numpy(p["0.weight"]))
        norm.weight.copy_(torch.from_numpy(np.random.default_rng(2).standard_normal(8).astype(np.float32)))
    p["1.weight"][...] = norm.weight.detach().numpy()
    y_ref = norm(emb(torch.from_numpy(ids.astype(np.int64))))
    dy = np.random.default_rng(3).standard_normal(y_ref.shape).astype(np.float32)
    y_ref.backward(torch.from_numpy(dy))
    y, _, g = forward_backward(m, ids, dy)
    np.testing.assert_allclose(y, y_ref.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g["0.weight"], emb.weight.grad.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(g["1.weight"], norm.weight.grad.numpy(), rtol=1e-4, atol=1e-5)
