"""Sizes that cannot fit in memory are refused up front with a ConfigError naming what the
memory is for and the bytes needed, before anything big is allocated (issue 12): no raw
MemoryError, no allocation that eats the machine. One check per allocation, never per step."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from qorus_core import Model, Sequential
from qorus_core import arena as arena_mod
from qorus_core.arena import MAX_ALLOC_ENV, Arena, check_alloc, memory_limit
from qorus_core.errors import ConfigError
from qorus_core.train.losses import MSELoss
from qorus_core.train.optimizers import AdamW
from qorus_core.train.trainer import Trainer
from qorus_layers_llm import GPT, Embedding
from qorus_layers_mlp import Linear, ReLU

#: what a refused request may allocate on the way (traced Python and NumPy memory)
SMALL = 64 << 20


def _refused(make, *patterns: str) -> str:
    """Run ``make`` under tracemalloc: it must raise ConfigError matching every pattern and
    allocate less than SMALL bytes at its peak."""
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError) as info:
            make()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    msg = str(info.value)
    assert "bytes" in msg, msg
    for p in patterns:
        assert p in msg, (p, msg)
    assert peak < SMALL, f"{peak} bytes allocated before refusing"
    return msg


def test_linear_with_10_to_12_outputs_is_refused_before_allocating():
    msg = _refused(lambda: Model(Sequential([Linear(8, 16), Linear(16, 10 ** 12)]), (8,)),
                   "model parameters", "1.weight (1000000000000, 16)", "68,000,000,000,640 bytes")
    assert "0.weight" in msg                      # the largest parameters, by their full names


def test_embedding_with_10_to_12_rows_is_refused_before_allocating():
    _refused(lambda: Model(Embedding(10 ** 12, 8), (4,), "i32"),
             "weight (1000000000000, 8)", "32,000,000,000,064 bytes")


def test_gpt_vocabulary_and_context_name_their_layers():
    _refused(lambda: Model(GPT(10 ** 12, 8, 1, 2, 16), (4,), "i32"), "embed.weight")
    _refused(lambda: Model(GPT(256, 8, 1, 2, 10 ** 11), (4,), "i32"), "pos.weight")
    rope = Model(GPT(256, 8, 1, 2, 10 ** 11, positional="rope"), (4,), "i32")   # no param is big
    _refused(lambda: rope.plan(1), "arena 'state blocks.0.attn.k_cache'")  # the KV cache is


def test_huge_input_shape_to_predict_is_refused():
    model = Model(Linear(None, 1), (10 ** 6, 10 ** 5))        # 400 GB per example
    x = np.broadcast_to(np.float32(0), (1, 10 ** 6, 10 ** 5))  # a view: no memory
    _refused(lambda: model.predict(x), "arena 'plan[1,infer]'", "400,004,000,064 bytes")


def test_env_override_and_small_sizes(monkeypatch):
    monkeypatch.setenv(MAX_ALLOC_ENV, str(1 << 20))
    assert memory_limit() == (1 << 20, f"the limit set by {MAX_ALLOC_ENV}")
    Model(Linear(16, 16), (16,))                              # 1 KiB: fine
    _refused(lambda: Model(Linear(1000, 1000), (1000,)), "model parameters", "(1.0 MiB)",
             MAX_ALLOC_ENV, "weight (1000, 1000)")
    m = Model(Sequential([Linear(64, 512), ReLU(), Linear(512, 1)]), (64,))   # 130 KiB params
    _refused(lambda: m.predict(np.zeros((1000, 64), np.float32), batch_size=1000),
             "arena 'plan[1000,infer]'")
    monkeypatch.setenv(MAX_ALLOC_ENV, str(300_000))
    with pytest.raises(ConfigError, match="gradients and 2 optimizer buffer"):
        AdamW().bind(m)                                       # params fit, params + state do not
    for bad in ("lots", "-1"):
        monkeypatch.setenv(MAX_ALLOC_ENV, bad)
        with pytest.raises(ConfigError, match=MAX_ALLOC_ENV):
            memory_limit()


def test_system_limit_is_sane():
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.delenv(MAX_ALLOC_ENV, raising=False)
    try:
        limit, source = memory_limit()
    finally:
        monkeypatch.undo()
    assert 1 << 26 < limit < 1 << 60 and source
    check_alloc(1 << 20, "a small request")


@pytest.mark.parametrize("size", [-1, 2.5, True, "8"])
def test_arena_refuses_bad_sizes(size):
    with pytest.raises(ConfigError, match="arena 'x': size must be a byte count"):
        Arena(size, "x")


def test_one_check_per_allocation_never_per_step(monkeypatch):
    calls = []
    real = arena_mod.memory_limit
    monkeypatch.setattr(arena_mod, "memory_limit", lambda: calls.append(1) or real())
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 8)).astype(np.float32), rng.standard_normal((64, 2)).astype(np.float32)
    model = Model(Sequential([Linear(8, 16), ReLU(), Linear(16, 2)]), (8,))
    trainer = Trainer(model, MSELoss(), AdamW(), batch_size=16, epochs=1, progress=False)
    trainer.fit(x, y)                                 # compiles its plan: a few checks
    model.predict(x[:16], batch_size=16)
    before = len(calls)
    assert before > 0
    trainer.epochs = 4
    trainer.fit(x, y)                                 # 12 more steps, no new plan
    model.predict(x[:16], batch_size=16)
    assert len(calls) == before
