"""Data-parallel training under ``mpirun -n 2`` (tests/mpi_worker.py is each rank) against one
process training on the same global batches: the same loss curve and metrics, parameters
equal within float tolerance (bit-identical across ranks), checkpoints that resume on any
number of ranks, and a failing or stalled rank ending the job with a clear error.

MPI comes from Debian's ``openmpi-bin`` and PyPI's ``mpi4py`` (the ``mpi`` extra); without
them these tests skip, saying so, except where ``QORUS_REQUIRE_MPI=1`` (CI) makes that a
failure. Each rank runs one kernel thread (``QORUS_NUM_THREADS=1``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qorus_core.distributed import Communicator, DistributedError, shard, world
from qorus_core.train import CrossEntropyLoss
from qorus_core.train.metrics import get_metric

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "tests" / "mpi_worker.py"


def _mpi_missing() -> str | None:
    if shutil.which("mpirun") is None:
        return "mpirun not found (apt-get install openmpi-bin)"
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py not installed (pip install qorus-core[mpi])"
    return None


def _require_mpi() -> None:
    missing = _mpi_missing()
    if missing:
        if os.environ.get("QORUS_REQUIRE_MPI") == "1":
            pytest.fail(f"QORUS_REQUIRE_MPI=1 but {missing}")
        pytest.skip(missing)


def _env(**more: str) -> dict[str, str]:
    env = dict(os.environ, QORUS_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_btl="self,vader",
               OMPI_MCA_rmaps_base_oversubscribe="1", PYTHONPATH=str(ROOT / "tests"))
    for var in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"):
        env.pop(var, None)          # the single-process reference must not think it is a rank
    env.update(more)
    return env


def mpirun(ranks: int, *args: str, timeout: float = 240, **env: str) -> subprocess.CompletedProcess:
    _require_mpi()
    cmd = ["mpirun", "-n", str(ranks), *[a for v in env for a in ("-x", v)], *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=_env(**env), cwd=ROOT)


def run_case(tmp: Path, ranks: int, case: str, *opts: str) -> dict:
    """Train ``case`` on ``ranks`` ranks (0: one plain process, no mpirun) in ``tmp``."""
    tmp.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, str(WORKER), case, str(tmp), *opts]
    if ranks == 0:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=240, env=_env(),
                              cwd=ROOT)
    else:
        proc = mpirun(ranks, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads((tmp / "result.json").read_text())
    out["params"] = np.load(tmp / "params0.npy")
    out["per_rank"] = [np.load(tmp / f"params{r}.npy") for r in range(max(ranks, 1))]
    out["buffers"] = dict(np.load(tmp / "result.npz"))
    return out


def assert_same_run(one: dict, many: dict, params_tol: float, loss_tol: float) -> None:
    for p in many["per_rank"][1:]:
        assert np.array_equal(p, many["per_rank"][0]), "parameters differ across ranks"
    assert len(one["history"]) == len(many["history"])
    for a, b in zip(one["history"], many["history"]):
        for key in ("loss", "val_loss"):
            assert abs(a[key] - b[key]) <= loss_tol * max(1.0, abs(a[key])), (key, a, b)
        for key in ("val_accuracy",):
            assert abs(a[key] - b[key]) <= 1e-9, (key, a, b)
    np.testing.assert_allclose(many["params"], one["params"], rtol=0, atol=params_tol)


# ----------------------------------------------------------------- without MPI
def test_shards_are_disjoint_contiguous_and_cover_the_batch():
    class Rank(Communicator):
        def __init__(self, rank: int, size: int) -> None:
            self.rank, self.size = rank, size

    for size in (1, 2, 3, 8):
        for rows in (1, 2, 7, 64, 65):
            parts = [shard(10, rows, Rank(r, size)) for r in range(size)]
            assert parts[0][0] == 10 and parts[-1][1] == 10 + rows
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
            assert max(h - l for l, h in parts) - min(h - l for l, h in parts) <= 1


def test_a_launcher_without_mpi4py_is_a_clear_error(monkeypatch):
    import qorus_core.distributed as dist

    monkeypatch.setattr(dist, "_WORLD", None)
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(DistributedError, match=r"2 ranks, but mpi4py cannot be imported.*"
                                               r"qorus-core\[mpi\]"):
        world()


def test_metric_counters_add_up_to_one_update():
    rng = np.random.default_rng(0)
    y, t = rng.standard_normal((40, 5)), rng.integers(0, 5, 40)
    for name in ("accuracy", "top2", "f1", "precision", "recall", "perplexity"):
        whole, a, b = get_metric(name), get_metric(name), get_metric(name)
        whole.update(y, t)
        a.update(y[:13], t[:13])
        b.update(y[13:], t[13:])
        a.add_counts(b.counts())
        assert a.result() == pytest.approx(whole.result(), rel=1e-12), name
    empty, full = get_metric("f1"), get_metric("f1")
    full.update(y, t)
    empty.add_counts(full.counts())               # a rank that saw no rows
    assert empty.result() == full.result()


def test_cross_entropy_counts_the_targets_not_ignored():
    from qorus_core import Tensor

    t = Tensor(np.array([[1, -100, 2], [-100, -100, 0]], np.int32))
    assert CrossEntropyLoss().mean_count(t) == 3.0
    assert CrossEntropyLoss(ignore_index=7).mean_count(t) == 6.0


# ----------------------------------------------------------------- two ranks
@pytest.mark.parametrize("opt", ["--sgd", "adamw"])
def test_mlp_with_dropout_two_ranks_equal_one_process(tmp_path, opt):
    """Dropout masks are per sample: rank 1 draws the global batch's rows it holds."""
    opts = ("--sgd",) if opt == "--sgd" else ()
    one = run_case(tmp_path / "one", 0, "mlp", *opts)
    two = run_case(tmp_path / "two", 2, "mlp", *opts)
    assert two["world_size"] == 2
    # AdamW divides by sqrt(v): an element whose gradient is ~0 can move by ~lr either way
    assert_same_run(one, two, 1e-6 if opts else 5e-3, 1e-5)


def test_gpt_with_ignored_targets_two_ranks_equal_one_process(tmp_path):
    """20% of the targets are ignore_index: the ranks weigh their means by counted targets
    (an odd global batch of 13 also gives the ranks unequal rows)."""
    one = run_case(tmp_path / "one", 0, "gpt", "--sgd", "--batch", "13")
    two = run_case(tmp_path / "two", 2, "gpt", "--sgd", "--batch", "13")
    assert_same_run(one, two, 1e-6, 1e-5)
    assert abs(one["final"]["perplexity"] - two["final"]["perplexity"]) < 1e-4


def test_cnn_synchronized_batchnorm_equals_one_process(tmp_path):
    one = run_case(tmp_path / "one", 0, "cnn-sync", "--sgd", "--batch", "50")
    two = run_case(tmp_path / "two", 2, "cnn-sync", "--sgd", "--batch", "50")
    assert_same_run(one, two, 1e-6, 1e-5)
    for k in ("buffer:1.running_mean", "buffer:1.running_var", "buffer:1.num_batches_tracked"):
        np.testing.assert_allclose(two["buffers"][k], one["buffers"][k], rtol=0, atol=1e-6)


def test_cnn_per_rank_batchnorm_keeps_ranks_identical(tmp_path):
    """DDP's default: each rank normalises with its own batch statistics (so the run is not
    one process's), and the parameters stay the same on every rank."""
    one = run_case(tmp_path / "one", 0, "cnn", "--sgd", "--batch", "50")
    two = run_case(tmp_path / "two", 2, "cnn", "--sgd", "--batch", "50")
    assert np.array_equal(two["per_rank"][0], two["per_rank"][1])
    assert np.abs(two["params"] - one["params"]).max() > 1e-5     # statistics of 25, not 50
    assert two["history"][-1]["val_accuracy"] > 0.6


@pytest.mark.parametrize("case", ["mlp", "cnn-sync"])
def test_data_parallel_epochs_leave_no_array_behind(tmp_path, case):
    """After the first epoch (plans, scratch, buffers), the epochs' steps, all-reduces,
    synchronised BatchNorm and validation leave no NumPy array behind on any rank."""
    run_case(tmp_path, 2, case, "--trace", "--batch", "50")
    for r in range(2):
        trace = json.loads((tmp_path / f"trace{r}.json").read_text())
        assert trace["array_bytes"] == 0, (r, trace["where"])


@pytest.mark.parametrize("ranks_after", [0, 2])
def test_checkpoint_resumes_on_another_number_of_ranks(tmp_path, ranks_after):
    whole = run_case(tmp_path / "whole", 0, "mlp", "--sgd")
    part = tmp_path / "part"
    run_case(part, 2, "mlp", "--sgd", "--until", "2")
    assert (part / "checkpoint").is_dir()
    resumed = run_case(part, ranks_after, "mlp", "--sgd", "--resume")
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    assert_same_run(whole, resumed, 1e-6, 1e-5)


def test_a_failing_rank_ends_every_rank_with_its_error(tmp_path):
    proc = mpirun(2, sys.executable, str(WORKER), "mlp", str(tmp_path), "--fail", "raise",
                  timeout=120)
    assert proc.returncode != 0
    # the peer is ended by MPI_Abort (what it and mpirun print then varies with timing)
    assert "qorus: rank 1 of 2 failed: RuntimeError: injected failure on rank 1" in proc.stderr


def test_a_stalled_rank_times_out_the_others(tmp_path):
    """Rank 1 sleeps 120 s after epoch 1; rank 0's next collective gives up after 3 s and
    ends the job (mpirun's own timeout, 90 s, would fail the test)."""
    proc = mpirun(2, sys.executable, str(WORKER), "mlp", str(tmp_path), "--fail", "stall",
                  timeout=90, QORUS_MPI_TIMEOUT="3")
    assert proc.returncode != 0
    assert "rank 0 of 2 failed: DistributedError: rank 0 of 2:" in proc.stderr
    assert "did not complete within 3 s" in proc.stderr


def test_parameters_that_drift_apart_are_caught(tmp_path):
    """check_sync_every=1 (the worker's): rank 1's parameter changed after epoch 1 is found
    after the next step."""
    proc = mpirun(2, sys.executable, str(WORKER), "mlp", str(tmp_path), "--fail", "diverge",
                  timeout=120)
    assert proc.returncode != 0
    assert "the parameters differ across ranks (CRC32 per rank:" in proc.stderr


def test_cli_train_under_mpirun(tmp_path):
    """``mpirun -n 2 qorus train`` on the digits MLP: rank 0 alone prints and writes
    metrics.json (world_size 2), whose figures are one process's."""
    qorus = str(Path(sys.executable).with_name("qorus"))
    cfg = str(ROOT / "examples" / "digits_mlp.toml")
    single = subprocess.run([qorus, "train", cfg, "--epochs", "3", "--no-progress", "--out",
                             str(tmp_path / "one")], capture_output=True, text=True,
                            timeout=240, env=_env(), cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    proc = mpirun(2, qorus, "train", cfg, "--epochs", "3", "--out", str(tmp_path / "two"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("epochs in") == 1 and "2 ranks" in proc.stdout
    assert proc.stderr.count("epoch 3/3") == 1               # rank 0's progress only
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert (one["world_size"], two["world_size"]) == (1, 2)
    for split in ("train", "validation", "test"):
        for key, value in one[split].items():
            assert two[split][key] == pytest.approx(value, rel=2e-3, abs=2e-3), (split, key)
    assert (tmp_path / "two" / "checkpoint").is_dir()
