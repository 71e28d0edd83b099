"""The Python kernel layer's shared state and entry points (review of the kernel table).

A kernel set is shared by every plan and thread that uses it: all a NumPy kernel keeps
between calls (scratch arrays, index maps, matmul_qf's panel Tensors) is per thread, never
on the kernel-set object. ``qorus kernels --family`` names an unknown family.
"""

from __future__ import annotations

import argparse
import threading

import numpy as np
import pytest

from qorus_core.errors import KernelError
from qorus_core.kernels import NumpyKernels
from qorus_core.kernels.decl import TABLE
from qorus_core.kernels.examples import build
from qorus_core.kernels.numpy_quant import QWeight
from qorus_core.tensor import Tensor


def _in_thread(fn):
    out = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


def test_no_kernel_keeps_state_on_the_kernel_set():
    """Every declared example run on a fresh set: nothing lands in the set's own __dict__
    (where two threads would share it), only in its per-thread cache."""
    nk = NumpyKernels()
    for k in TABLE:
        for ex in k.examples:
            with np.errstate(all="ignore"):
                getattr(nk, k.name)(*build(k, ex))
    assert set(vars(nk)) == {"_local"}, sorted(vars(nk))
    assert nk._cache                             # ... and the cache did fill


def test_kept_objects_and_scratch_are_per_thread():
    nk = NumpyKernels()
    make = lambda: (nk.scratch("s", (4,)), nk._kept(("k", 4), lambda: np.arange(4)))  # noqa: E731
    mine, again, theirs = make(), make(), _in_thread(make)
    assert mine[0] is again[0] and mine[1] is again[1]          # kept across calls
    assert mine[0] is not theirs[0] and mine[1] is not theirs[1]  # not across threads


def test_matmul_qf_from_two_threads():
    """matmul_qf's panel and output scratch Tensors were one dict on the set, shared by
    threads: two prompts at once could multiply each other's panels."""
    nk = NumpyKernels()
    rng = np.random.default_rng(3)
    w = QWeight.empty("q8_0", 300, 64)             # three panels of up to 128 rows
    nk.quantize(Tensor(rng.standard_normal((300, 64)).astype(np.float32)), w, "q8_0")
    xs = [Tensor(rng.standard_normal((3, 64)).astype(np.float32)) for _ in range(2)]
    want = []
    for x in xs:
        y = Tensor(np.empty((3, 300), np.float32))
        nk.matmul_qf(x, w, y)
        want.append(y.a.copy())
    barrier, bad = threading.Barrier(2), []

    def work(i):
        y = Tensor(np.empty((3, 300), np.float32))
        barrier.wait()
        for _ in range(30):
            nk.matmul_qf(xs[i], w, y)
            if not np.array_equal(y.a, want[i]):
                bad.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad
    panels = [nk._kept(("matmul_qf", "panel", (128, 64)), lambda: None),
              _in_thread(lambda: nk._kept(("matmul_qf", "panel", (128, 64)), lambda: None))]
    assert panels[0] is not None and panels[1] is None       # the other thread has its own


def test_qorus_kernels_refuses_an_unknown_family(capsys):
    from qorus_core.cli import main
    from qorus_core.kernels import listing

    with pytest.raises(KernelError, match=r"--family nrom: no such kernel family; the families "
                                          r"are act, .*norm"):
        listing.run(argparse.Namespace(json=False, family="nrom"))
    assert main(["kernels", "--family", "nrom"]) == 2
    assert "no such kernel family" in capsys.readouterr().err


def test_bench_refuses_an_unknown_tier_before_timing(ck):
    from qorus_core.kernels.bench import _extra_tiers

    with pytest.raises(KernelError, match="simd path 'avx3': expected one of auto"):
        _extra_tiers(ck, ["avx3"])
    assert _extra_tiers(ck, ["portable"]) == ["portable"] and ck.simd_path != "portable"
