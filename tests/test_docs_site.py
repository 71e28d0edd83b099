"""The documentation site's own machinery (the site is built by ``tox -e docs``; the tutorials'
code blocks run through ``docs/conftest.py``): the performance page generator on results
shaped as the benchmarks emit them, and that every code block of every tutorial is one the
doc tests run (or one marked to skip)."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+)(?P<info>[^\n`]*)$", re.MULTILINE)


@pytest.fixture(scope="module")
def gen_perf():
    spec = importlib.util.spec_from_file_location("gen_perf", DOCS / "gen_perf.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gen_perf"] = mod         # (dataclasses look their module up)
    try:
        spec.loader.exec_module(mod)      # defines the functions; main() runs only under mkdocs
        yield mod
    finally:
        del sys.modules["gen_perf"]


#: bench_mlp.py --json (harness.dump_json): named rows of metrics, torch ratios
MLP = {"threads": 2, "runs": 7, "model": "784-512-256-10 ReLU", "batch": 128, "optimizer": "AdamW",
       "rows": {"qorus-c": {"train_steps_per_s": 450.2, "infer_batch1_us": 41.0,
                            "train_ratio_vs_torch": 1.65, "infer_speedup_vs_torch": 2.2},
                "qorus-numpy": {"train_steps_per_s": 120.5, "infer_batch1_us": 160.3,
                                "train_ratio_vs_torch": 0.44, "infer_speedup_vs_torch": 0.56},
                "torch-2.13-eager": {"train_steps_per_s": 272.9, "infer_batch1_us": 90.1,
                                     "train_ratio_vs_torch": 1.0, "infer_speedup_vs_torch": 1.0}}}
#: bench_gemm.py --json: a list of flat rows
GEMM = [{"shape": "256^3", "op": "NN", "m": 256, "n": 256, "k": 256, "threads": 1, "simd": "avx2",
         "peak_gflops": 102.0, "qorus_gflops": 88.1, "numpy_gflops": 90.0, "ratio": 0.98},
        {"shape": "512^3", "op": "NN", "m": 512, "n": 512, "k": 512, "threads": 2, "simd": "avx2",
         "peak_gflops": 204.0, "qorus_gflops": 180.3, "numpy_gflops": 171.2, "ratio": 1.05}]
#: bench_quant.py --json: nested, no rows
QUANT = {"runs": 31, "simd": "avx2", "bandwidth_GBs": 28.5,
         "threads": {"2": {"decode": [{"qtype": "q4_0", "cold_GBs": 30.1}]}}}


def test_perf_page_without_results_says_what_fills_it(gen_perf):
    page = gen_perf.page({}, {})
    assert "Measured: none yet." in page
    for name, bench in gen_perf.BENCHES.items():
        assert f"{bench.command} > docs/perf/{name}.json" in page


def test_perf_tables_and_figures_from_bench_json(gen_perf, tmp_path):
    for name, data in {"mlp": MLP, "gemm": GEMM, "quant": QUANT}.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
    results = gen_perf.load_results(tmp_path)
    assert set(results) == {"mlp", "gemm", "quant"}

    mlp = "\n".join(gen_perf.tables("mlp", results["mlp"]))
    assert "| name | train_steps_per_s | infer_batch1_us |" in mlp
    assert "| qorus-c | 450 | 41 | 1.65 | 2.2 |" in mlp and "threads: 2" in mlp
    gemm = "\n".join(gen_perf.tables("gemm", results["gemm"]))
    assert gemm.count("\n| 512^3 |") == 1 and "qorus_gflops" in gemm
    quant = "\n".join(gen_perf.tables("quant", results["quant"]))
    assert "| threads.2.decode.0.cold_GBs | 30.1 |" in quant

    for name in ("mlp", "gemm"):
        png = gen_perf.figure(name, results[name], gen_perf.BENCHES[name])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
    assert gen_perf.figure("quant", results["quant"], gen_perf.BENCHES["quant"]) is None

    page = gen_perf.page(results, {"mlp": "perf/mlp.png", "gemm": "perf/gemm.png"})
    assert "Measured: mlp, gemm, quant." in page
    assert "![MLP 784-512-256-10 training and batch-1 inference](perf/mlp.png)" in page
    assert f"{gen_perf.BENCHES['mlp'].command} > docs/perf/mlp.json" in page


#: qorus bench kernels --json: rows of kernels beside a nested ``machine`` mapping
KERNELS = {"threads": 2, "machine": {"cpu_features": ["avx2", "avx512f"], "peak_gflops": 493.0,
                                     "memory": {"bandwidth_GBs": 28.6}},
           "rows": [{"kernel": "gemm", "case": "1024^3", "c_vs_numpy": 1.04, "c_vs_torch": 0.9},
                    {"kernel": "matmul_q", "case": "q4_0", "c_vs_numpy": 88.0,
                     "c_vs_torch": None}]}


def test_nested_context_and_unmeasured_peers(gen_perf):
    kernels = "\n".join(gen_perf.tables("kernels", KERNELS))
    assert "`machine`:" in kernels
    assert "| cpu_features | avx2, avx512f |" in kernels
    assert "| memory.bandwidth_GBs | 28.6 |" in kernels
    assert "| matmul_q | q4_0 | 88 | None |" in kernels
    # a peer that was not measured is no bar (NaN), not a bar at 0
    assert gen_perf._value(None) != gen_perf._value(None)
    assert gen_perf._value(True) != gen_perf._value(True) and gen_perf._value(2) == 2.0
    png = gen_perf.figure("kernels", KERNELS, gen_perf.BENCHES["kernels"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_result_names_its_own_command(gen_perf):
    data = dict(MLP, command="python bench/bench_mlp.py --threads 1 --json")
    section = "\n".join(gen_perf.section("mlp", data, gen_perf.BENCHES["mlp"], None))
    assert "python bench/bench_mlp.py --threads 1 --json > docs/perf/mlp.json" in section
    unknown = "\n".join(gen_perf.section("mine", {"rows": {"a": {"x": 1.0}}}, None, None))
    assert "## mine" in unknown and "| a | 1 |" in unknown


def fences(text: str) -> list[tuple[int, str, str]]:
    """(line, info string, the text just before) of each opening fence of a Markdown page."""
    out, open_fence = [], None
    for m in FENCE.finditer(text):
        if open_fence is None:
            open_fence = m.group("fence")
            before = text[:m.start()].rstrip().rsplit("\n", 1)[-1]
            out.append((text.count("\n", 0, m.start()) + 1, m.group("info").strip(), before))
        elif m.group("fence") == open_fence and not m.group("info").strip():
            open_fence = None
    return out


TUTORIALS = sorted((DOCS / "tutorials").glob("*.md"))


@pytest.mark.parametrize("page", TUTORIALS, ids=lambda p: p.name)
def test_every_tutorial_block_runs_or_is_marked(page):
    """Each fence is run by docs/conftest.py (python, sh, or a file title) or skipped on
    purpose; an untagged or other block would silently go untested."""
    for line, info, before in fences(page.read_text()):
        runs = info in ("python", "sh") or re.fullmatch(r'[\w+-]+\s+title="[^"]+"', info)
        assert runs or before == "<!-- skip: next -->" or info == "text", (
            f"{page.name}:{line}: a ```{info} block the doc tests do not run; use python, sh, "
            'a title="FILE", or mark it <!-- skip: next -->')


def test_the_nav_lists_every_tutorial():
    nav = (ROOT / "mkdocs.yml").read_text()
    # distributed.md (MPI training) joins the nav when it is written
    for page in TUTORIALS:
        assert f"tutorials/{page.name}" in nav or page.name == "distributed.md", page.name
