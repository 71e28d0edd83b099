"""The C library's review fixes: the "elementwise" kernel family (csrc/elementwise.c) in the
per-family tier table and bit-identical on every SIMD tier, the quant family's extra F16C need
read from the table, and the build installing the library under a staging name of its own
(setup._install), so builds racing to one path never clash.
"""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest
from test_simd_tiers import EDGE, LENGTHS, ROOT, assert_same, need, run_py, tiers_here

from qorus_core.kernels import simd
from qorus_core.tensor import Tensor

F16C = 1 << simd.CPU_BITS.index("f16c")
_spec = importlib.util.spec_from_file_location("qorus_setup", os.path.join(ROOT, "setup.py"))
setup = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(setup)   # setup.py runs setup() only as __main__


def T(a) -> Tensor:
    return Tensor(np.array(a, np.float32, copy=True))


def prim_inputs(n: int, seed: int) -> np.ndarray:
    """n floats: the edge values (NaN, inf, zeros, subnormals, huge) first, then N(0, 4^2)."""
    x = (np.random.default_rng(seed).standard_normal(n) * 4.0).astype(np.float32)
    k = min(n, EDGE.size)
    x[:k] = EDGE[np.random.default_rng(seed + 1).permutation(EDGE.size)[:k]]
    return x


def prim_results(ck, n: int) -> dict[str, np.ndarray]:
    """Every primitive of csrc/elementwise.c, forward and backward, on n elements."""
    a, b, dy = prim_inputs(n, 11), prim_inputs(n, 12), prim_inputs(n, 13)
    b[: n // 3] = a[: n // 3]                        # ties for maximum / minimum
    cond = np.where(np.arange(n) % 3 == 0, 0.0, a).astype(np.float32)   # zeros, NaN, others
    out: dict[str, np.ndarray] = {}

    def run(name, fn, *arrays, outs=1):
        res = [T(np.full(n, 7.0, np.float32)) for _ in range(outs)]
        with np.errstate(all="ignore"):
            fn(*[T(x) for x in arrays], *res)
        for i, r in enumerate(res):
            out[f"{name}.{i}"] = r.a.copy()

    for name in ("sub", "div", "maximum", "minimum"):
        run(name, getattr(ck, name), a, b)
        run(f"{name}_bwd", getattr(ck, f"{name}_bwd"), *(() if name == "sub" else (a, b)), dy,
            outs=2)
    run("where", ck.where, cond, a, b)
    run("where_bwd", ck.where_bwd, cond, dy, outs=2)
    for name in ("exp", "log", "sqrt", "abs", "neg"):
        run(name, getattr(ck, name), a)
    for name in ("exp", "log", "sqrt", "abs"):
        run(f"{name}_bwd", getattr(ck, f"{name}_bwd"), a, dy)
    run("neg_bwd", ck.neg_bwd, dy)
    return out


@pytest.mark.parametrize("tier", ["avx2", "avx512"])
@pytest.mark.parametrize("n", LENGTHS)
def test_elementwise_family_bit_identical_to_portable(threads, tier, n):
    need(threads, tier)
    ck = threads
    ck.set_simd_path("portable")
    ref = prim_results(ck, n)
    assert ck.set_simd_path(tier) == tier and ck.simd_families()["elementwise"] == tier
    got = prim_results(ck, n)
    assert got.keys() == ref.keys()
    for name in ref:
        assert_same(got[name], ref[name], f"{name} n={n} on {tier}")


def test_quant_family_needs_f16c(ck):
    """Without F16C the quant kernels run portable (quant.c's use_avx2), and the family table
    says so, while the families that need no F16C keep AVX2."""
    if "avx2" not in tiers_here(ck):
        pytest.skip("the CPU or build has no AVX2 tier")
    code = ("import json; from qorus_core.kernels import get_kernels; ck = get_kernels('c'); "
            "ck.set_simd_path('avx2'); print(json.dumps(ck.simd_families()))")
    proc = run_py(code, QORUS_CPU_MASK=hex(F16C))
    assert proc.returncode == 0, proc.stderr
    fam = json.loads(proc.stdout)
    assert fam["quant"] == "portable"
    assert fam["vec"] == fam["elementwise"] == fam["gemm"] == fam["rnn"] == "avx2"


def test_install_stages_under_a_name_of_its_own(tmp_path, monkeypatch):
    """Two installs to one path stage in distinct files beside it (a shared name let one build
    rename the other's half-written copy into place), leave no staging file behind, and the
    target holds one whole library, readable by all."""
    target = tmp_path / "lib" / "libqorus.so"
    target.parent.mkdir()
    builds = []
    for i in range(2):
        p = tmp_path / f"build{i}.so"
        p.write_bytes(bytes([i]) * 100_000)
        builds.append(p)
    staged = []
    replace = os.replace

    def spy(src, dst):
        staged.append(os.fspath(src))
        assert os.path.getsize(src) == 100_000       # the whole copy, before the rename
        replace(src, dst)

    monkeypatch.setattr(setup.os, "replace", spy)
    for p in builds:
        setup._install(os.fspath(p), os.fspath(target))
    assert len(set(staged)) == 2
    assert all(os.path.dirname(s) == os.fspath(target.parent) for s in staged)
    assert os.listdir(target.parent) == ["libqorus.so"]
    assert target.read_bytes() == builds[1].read_bytes()
    assert target.stat().st_mode & 0o644 == 0o644


def test_install_leaves_nothing_when_the_copy_fails(tmp_path):
    target = tmp_path / "libqorus.so"
    with pytest.raises(FileNotFoundError):
        setup._install(os.fspath(tmp_path / "missing.so"), os.fspath(target))
    assert os.listdir(tmp_path) == []
