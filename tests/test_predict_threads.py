"""Concurrent inference and the plan cache (issue 12): ``Model.predict`` from several threads
gives what one thread gives (its calls take turns), ``model.sequence()`` per thread runs them
at once with the same results, batch sizes are checked, and the cache of compiled plans (with
the state buffers only they use) stays bounded however many batch sizes come by."""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest
from tiny_llama import write_tiny_llama

from qorus_core import Model, Sequential
from qorus_core.errors import ConfigError
from qorus_core.plan_cache import DEFAULT_CAPACITY, PlanCache
from qorus_layers_llm.llama import load_llama
from qorus_layers_mlp import GELU, LayerNorm, Linear

THREADS, CALLS = 4, 8


def _mlp(kernels) -> Model:
    net = Sequential([Linear(64, 128), LayerNorm(), GELU(), Linear(None, 64), GELU(),
                      Linear(None, 10)])
    return Model(net, (64,), kernels=kernels, seed=1)


def _jobs() -> list[list[np.ndarray]]:
    """Per thread, CALLS inputs of 1..80 rows (several batch sizes, several chunks)."""
    rng = np.random.default_rng(0)
    return [[rng.standard_normal((int(rng.integers(1, 81)), 64)).astype(np.float32)
             for _ in range(CALLS)] for _ in range(THREADS)]


def _in_threads(fn, jobs):
    """fn(thread index, x) for every job, THREADS threads at once; results by position."""
    out = [[None] * CALLS for _ in range(THREADS)]
    errors: list = []
    start = threading.Barrier(THREADS)

    def worker(i: int) -> None:
        try:
            start.wait()
            for j, x in enumerate(jobs[i]):
                out[i][j] = fn(i, x)
        except BaseException as exc:          # reported by the test, with the thread
            errors.append((i, exc))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    return out


@pytest.mark.parametrize("rounds", [2])
def test_predict_from_four_threads_equals_one_thread(kernels, rounds):
    model, jobs = _mlp(kernels), _jobs()
    want = [[model.predict(x, batch_size=32) for x in job] for job in jobs]
    for _ in range(rounds):
        got = _in_threads(lambda i, x: model.predict(x, batch_size=32), jobs)
        for w_job, g_job in zip(want, got):
            for w, g in zip(w_job, g_job):
                np.testing.assert_array_equal(g, w)


def test_a_sequence_per_thread_runs_at_once_with_the_same_results(kernels):
    model, jobs = _mlp(kernels), _jobs()
    want = [[model.predict(x, batch_size=32) for x in job] for job in jobs]
    seqs = [model.sequence() for _ in range(THREADS)]
    got = _in_threads(lambda i, x: seqs[i].predict(x, batch_size=32), jobs)
    for w_job, g_job in zip(want, got):
        for w, g in zip(w_job, g_job):
            np.testing.assert_array_equal(g, w)
    assert all(s.model is model for s in seqs)


def test_predict_batch_size_is_checked():
    model = _mlp("numpy")
    x = np.ones((5, 64), np.float32)
    for bad in (-1, 0, 1.5, 2.0, True, "8", None, np.bool_(True)):
        with pytest.raises(ConfigError, match="batch_size"):
            model.predict(x, batch_size=bad)
    np.testing.assert_allclose(model.predict(x, batch_size=np.int64(2)), model.predict(x),
                               rtol=1e-5, atol=1e-6)
    assert model.predict(x[:0]).shape == (0, 10)
    for bad in (0, -3, 2.5, False):
        with pytest.raises(ConfigError, match="batch"):
            model.plan(bad)
    with pytest.raises(ConfigError, match="shape"):
        model.plan(1, shape=(64.0,))
    with pytest.raises(ConfigError, match="batch_size"):
        model.sequence().predict(x, batch_size=0)


def test_the_plan_cache_is_bounded():
    model = _mlp("numpy")
    x = np.ones((40, 64), np.float32)
    for n in range(1, 41):
        model.predict(x[:n])
    assert len(model._plans) == DEFAULT_CAPACITY
    assert len(model.memory_report()["plans"]) == DEFAULT_CAPACITY
    assert sorted(b for b, *_ in model._plans) == list(range(41 - DEFAULT_CAPACITY, 41))
    held = model.plan(3)                          # recompiled (evicted long ago), then kept
    np.testing.assert_array_equal(model.predict(x[:3]), held.forward().a)


def test_plan_cache_lru_order_and_capacity():
    cache = PlanCache(2)
    made = []

    def make(k):
        return lambda: made.append(k) or k

    assert cache.get(("a",), make("a")) == "a"
    cache.get(("b",), make("b"))
    cache.get(("a",), make("a"))                  # a used last: b goes first
    cache.get(("c",), make("c"))
    assert list(cache) == [("a",), ("c",)] and made == ["a", "b", "c"]
    with pytest.raises(ConfigError, match="capacity"):
        PlanCache(0)


def test_kv_caches_of_evicted_plans_are_freed(tmp_path):
    """An LLM predicting with 30 batch sizes keeps the KV caches of its 16 cached plans only
    (each batch size has its own cache: none is replaced under a plan that holds it)."""
    llm = load_llama(write_tiny_llama(tmp_path / "tiny.gguf", "q8_0"), context=8)
    model = llm.model
    ids = np.ones((30, 8), np.int32)
    model.predict(ids[:1])
    per_row = model.memory_report()["states"]
    assert per_row > 0
    for n in range(1, 31):
        model.predict(ids[:n], batch_size=64)
    gc.collect()
    kept = sum(b for b, *_ in model._plans)
    assert model.memory_report()["states"] == per_row * kept


def test_numpy_kernel_scratch_is_per_thread():
    """The NumPy kernels keep scratch arrays per shape: shared between threads, sequences
    running at once would overwrite each other's (wide rows, so NumPy releases the GIL)."""
    model = Model(Sequential([LayerNorm(), GELU(), LayerNorm(), GELU()]), (2048,),
                  kernels="numpy")
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((64, 2048)).astype(np.float32) * (i + 1) for i in range(THREADS)]
    want = [model.predict(x) for x in xs]
    seqs = [model.sequence() for _ in range(THREADS)]
    got = _in_threads(lambda i, _: seqs[i].predict(xs[i]), [[None] * CALLS] * THREADS)
    for i in range(THREADS):
        for g in got[i]:
            np.testing.assert_array_equal(g, want[i])
