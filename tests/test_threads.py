"""The C thread pool next to NumPy's BLAS threads: no oversubscription, no deadlock.

Contract: while qorus kernels run, qorus uses at most QORUS_NUM_THREADS threads (the caller
plus QORUS_NUM_THREADS - 1 persistent workers, created once and reused by every kernel); a
kernel called while the pool is busy (another Python thread inside a kernel: ctypes releases
the GIL) runs on its caller alone, with the same task split, so its result is unchanged.
NumPy BLAS calls running meanwhile or interleaved with kernels give correct results and
finish. Threads are counted in /proc/self/task (Linux); no timing is asserted.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from qorus_core.tensor import Tensor

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc (Linux)")
N_THREADS = 3


def _tids() -> set[str]:
    """The ids of this process's threads, as /proc lists them."""
    return set(os.listdir("/proc/self/task"))


def _new_threads(base: set[str], expected: int) -> int:
    """How many threads exist now that are not in ``base``, once those beyond ``expected``
    that are exiting have left /proc (a joined thread can stay listed a moment after join
    returns: the kernel reaps it just after clearing its tid). Threads are told apart by id,
    so one of ``base`` still leaving does not count either. Polls up to 30 s; the deadline
    only bounds a failure, nothing is asserted on time."""
    deadline = time.monotonic() + 30.0
    while len(_tids() - base) > expected and time.monotonic() < deadline:
        time.sleep(0.005)
    return len(_tids() - base)


def _inputs():
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((192, 192)).astype(np.float32) for _ in range(2))
    x = rng.standard_normal(400_000).astype(np.float32)   # large enough to use every thread
    return a, b, x


def _qorus_step(ck, a, b, x):
    """A threaded GEMM and a threaded GELU; returns copies of the results."""
    c, y = Tensor(np.zeros((192, 192), np.float32)), Tensor(np.zeros_like(x))
    ck.gemm(Tensor(a), Tensor(b), c)
    ck.gelu(Tensor(x), y)
    return c.a.copy(), y.a.copy()


@pytest.fixture
def pool(threads):
    """The C set with a fresh pool of N_THREADS, and the process's threads without it."""
    threads.set_threads(1)          # joins any workers left by earlier tests
    base = _tids()
    threads.set_threads(N_THREADS)  # workers start lazily, on the first threaded kernel
    return threads, base


def test_workers_created_once(pool):
    ck, base = pool
    a, b, x = _inputs()
    ref = _qorus_step(ck, a, b, x)
    assert _new_threads(base, N_THREADS - 1) == N_THREADS - 1
    for _ in range(20):
        got = _qorus_step(ck, a, b, x)
        assert all(np.array_equal(g, r) for g, r in zip(got, ref))
    assert len(_tids() - base) == N_THREADS - 1   # reused, never more
    ck.set_threads(2)                             # resize: the old workers are joined
    _qorus_step(ck, a, b, x)
    assert _new_threads(base, 1) == 1             # one new worker; the joined ones left


def test_concurrent_numpy_blas(pool):
    """NumPy matmuls in another Python thread while qorus kernels run: both correct, both
    finish, qorus still at N_THREADS - 1 workers (BLAS threads are NumPy's own, fixed)."""
    ck, base = pool
    a, b, x = _inputs()
    ref = _qorus_step(ck, a, b, x)
    m = np.random.default_rng(1).standard_normal((256, 256)).astype(np.float32)
    blas_ref = m.astype(np.float64) @ m
    errors: list[str] = []

    def numpy_loop():
        for _ in range(30):
            r = m @ m
            if not np.allclose(r, blas_ref, rtol=1e-4, atol=1e-3):
                errors.append("numpy matmul wrong")

    with_blas = _tids()                           # OpenBLAS may have started its threads now
    t = threading.Thread(target=numpy_loop)
    t.start()
    for _ in range(10):
        got = _qorus_step(ck, a, b, x)
        assert all(np.array_equal(g, r) for g, r in zip(got, ref))
        np.testing.assert_allclose(a @ b, ref[0], rtol=1e-4, atol=1e-4)   # interleaved BLAS
    t.join(timeout=30)
    assert not t.is_alive() and not errors
    assert _new_threads(with_blas, 0) == 0        # the helper thread is gone; nothing new


def test_two_callers_share_the_pool(pool):
    """Two Python threads in qorus kernels at once: the one that finds the pool busy runs its
    tasks itself, so no extra threads appear and both results equal the solo ones."""
    ck, base = pool
    a, b, x = _inputs()
    ref = _qorus_step(ck, a, b, x)
    results: list = [None, None]
    barrier = threading.Barrier(2)

    def caller(i):
        barrier.wait()
        results[i] = [_qorus_step(ck, a, b, x) for _ in range(10)]

    ts = [threading.Thread(target=caller, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in ts)
    for runs in results:
        assert all(np.array_equal(g, r) for got in runs for g, r in zip(got, ref))
    assert _new_threads(base, N_THREADS - 1) == N_THREADS - 1
