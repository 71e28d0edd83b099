"""`qorus bench kernels`: the report's shape (never its speed), with and without the C library."""

from __future__ import annotations

import json

import pytest

from qorus_core.cli import main
from qorus_core.kernels import c_status, get_kernels

ARGS = ["bench", "kernels", "--quick", "--json", "--runs", "1", "--filter", "gemm"]


def _report(capsys, extra=()) -> dict:
    rc = main([*ARGS, *extra])
    out = capsys.readouterr().out
    assert rc == 0
    return json.loads(out)


def _check_common(rep: dict) -> None:
    m = rep["machine"]
    assert m["fma_peak_gflops"] > 0
    assert m["bandwidth_gbs"] > 0
    assert m["threads"] >= 1
    assert rep["rows"], "the gemm filter selects rows"
    for row in rep["rows"]:
        assert "gemm" in f"{row['kernel']} {row['case']}"
        assert row["unit"] == "GFLOP/s"
        assert row["numpy"] > 0
        assert row["torch"] is None or row["torch"] > 0


def test_bench_kernels_json(capsys):
    rep = _report(capsys, ["--threads", "1", "--no-torch"])
    _check_common(rep)
    assert rep["machine"]["threads"] == 1
    if c_status()[0] and get_kernels().name == "c":     # the bench follows QORUS_KERNELS
        assert rep["c_available"] and rep["c_reason"] is None
        assert rep["machine"]["fma_peak_gflops_1t"] > 0
        for row in rep["rows"]:
            assert row["c"] > 0 and row["c_vs_numpy"] > 0 and row["c_pct_peak"] > 0
    for row in rep["rows"]:
        assert row["torch"] is None and row["c_vs_torch"] is None


def test_bench_kernels_without_c(capsys, monkeypatch):
    monkeypatch.setenv("QORUS_KERNELS", "numpy")
    rep = _report(capsys, ["--no-torch"])
    _check_common(rep)
    assert rep["c_available"] is False
    assert "QORUS_KERNELS" in rep["c_reason"] or not c_status()[0]
    assert "numpy.matmul" in rep["machine"]["peak_source"]
    for row in rep["rows"]:
        assert row["c"] is None and row["c_vs_numpy"] is None
    main(ARGS[:3] + ["--runs", "1", "--filter", "square 64", "--no-torch"])   # the table
    text = capsys.readouterr().out
    assert text.startswith("machine:") and "C kernels unavailable" in text


def test_bench_kernels_torch_column(capsys):
    pytest.importorskip("torch")
    rep = _report(capsys, ["--filter", "square 64"])
    assert rep["machine"]["torch"]
    assert all(row["torch"] > 0 for row in rep["rows"])


def test_bench_needs_a_target(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench"])
    assert exc.value.code == 2
