"""Generate a page per architecture example (``examples/*.py`` and ``examples/*.toml``).

Each page is made from the example itself, so it cannot drift: the module docstring (or the
TOML file's leading comments) says what it builds and how to run it; then the result it gets
(``RESULTS``: measured with the default options, on the machine and kernels named there),
what its tests check on a small run, and the source. Add an example to ``examples/`` and it
gets a page; give it a ``RESULTS`` entry once you have run it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
#: helpers the examples import, not examples of their own
HELPERS = {"fortunes_data"}
#: example -> the result of its default command (what it prints), where and when measured
#: (2-core AVX-512 machine, C kernels, 2 threads, December 2026)
RESULTS: dict[str, str] = {
    "digits_mlp": "100 epochs in 0.4 s, 19,210 parameters: test accuracy 0.9889 (loss 0.5655), "
                  "validation accuracy 0.9667.",
    "train_digits": "100 epochs in 0.9 s: test accuracy 0.9889, test loss 0.5655 (the TOML "
                    "run's figures: the same model, data split and seeds); writes "
                    "`runs/digits_py/loss_curve.png`.",
    "digits_multitask": "Early stopping after 19 of 40 epochs: test digit accuracy 0.9554, "
                        "'5 or more' accuracy 0.9554.",
    "gru_seq2seq": "12 epochs (55 s): greedy decoding of 500 test sequences reverses 98.2% exactly, "
                   "99.6% of the digits in place.",
    "transformer_sort": "12 epochs (46 s): greedy decoding of 500 test sequences sorts 98.6% "
                        "exactly, 99.8% of the digits in place.",
    "textcnn_fortunes": "10 epochs (24 s): test accuracy 0.9176 over 704 fortunes of four files "
                        "(computers, definitions, songs-poems, zippy; chance 0.25).",
    "bert_fortunes": "6 epochs (50 s): test accuracy 0.9077 over the same 704 fortunes (chance 0.25).",
    "bilstm_tagger": "6 epochs (36 s): test per-character accuracy 0.9927 (all lower case: "
                     "0.9688); letters only 0.9906 (all lower case: 0.9599).",
    "unet_fashion": "3 epochs on 6000 images (40 s): test MSE over 2000 test images (noise std "
                    "0.3) 0.0899 noisy, 0.0089 denoised.",
    "siamese_fashion": "5 epochs on 20000 pairs (60 s): test pair accuracy 0.9030 over 4000 pairs, "
                       "half of the same class (chance 0.50).",
    "vit_fashion": "3 epochs on 20000 images (43 s): test accuracy 0.7816 on the 10000 test images.",
    "char_lstm": "30 epochs (316 s, under `nice` beside benchmarks) on 1375 training windows of "
                 "64 bytes, 938,240 parameters: validation loss 1.832 nats/byte against the "
                 "unigram baseline 3.176 (2.64 vs 4.58 bits/byte); the 400-byte sample is "
                 "fortune-shaped (`%` separators, \"You will be ...\" openings) with many "
                 "misspelt words (\"You will be a tappich of you.\").",
    "fashion_cnn": "4 epochs in 173 s (under `nice` beside benchmarks), 421,738 parameters: test "
                   "accuracy 0.9172 (loss 0.2239) on the 10000 test images, validation accuracy "
                   "0.9233.",
    "gpt_bytes": "6 epochs in 281 s (under `nice` beside benchmarks), 3,257,856 parameters: "
                 "validation loss 2.105 nats/byte (accuracy 0.4082) against the unigram baseline "
                 "3.177; the 120-byte sample keeps the fortunes' `%` layout but few real words.",
}
#: example -> what the test suite checks on a short run (and where)
CHECKS: dict[str, str] = {
    "digits_mlp": "`make demo` trains it (>= 97% test accuracy); `tests/test_cli_train.py` runs "
                  "`qorus train` end to end on configs like it.",
    "train_digits": "The same model as `digits_mlp.toml`; the first tutorial builds it step by step.",
    "digits_multitask": "`tests/test_functional.py::test_digits_multitask_example` runs it for a "
                        "few epochs: both heads learn.",
    "bert_fortunes": "`tests/test_examples_attention.py`: the network matches PyTorch after 3 "
                     "AdamW steps; 4 epochs on stand-in fortunes files reach > 60% accuracy.",
    "vit_fashion": "`tests/test_examples_attention.py`: matches PyTorch after 3 AdamW steps; "
                   "3 epochs on stand-in images reach > 90% accuracy.",
    "transformer_sort": "`tests/test_examples_attention.py`: matches PyTorch; 5 epochs on 3000 "
                        "sequences put > 90% of the digits in place.",
    "unet_fashion": "`tests/test_examples_cnn.py`: matches PyTorch; 3 epochs on 800 stand-in "
                    "images halve the noisy inputs' MSE.",
    "textcnn_fortunes": "`tests/test_examples_cnn.py`: matches PyTorch; 6 epochs on stand-in "
                        "fortunes files reach > 60% accuracy.",
    "siamese_fashion": "`tests/test_examples_cnn.py`: matches PyTorch; balanced pairs; 3 epochs "
                       "on 1500 stand-in pairs reach > 90% accuracy.",
    "bilstm_tagger": "`tests/test_examples_rnn.py`: matches PyTorch; 8 epochs on stand-in text "
                     "restore the case of > 97% of the letters.",
    "gru_seq2seq": "`tests/test_examples_rnn.py`: matches PyTorch; the step decoder gives the "
                   "trained graph's tokens; 6 epochs on length-5 sequences learn to reverse them.",
    "char_lstm": "`plugins/rnn/tests/test_rnn_layers.py::test_char_lstm_example_smoke` runs it on "
                 "a tiny corpus: training lowers the loss and sampling runs.",
    "fashion_cnn": "`plugins/cnn/tests/test_cnn_layers.py` smoke-tests the config on stand-in images.",
    "gpt_bytes": "`tests/test_llm_gpt.py` covers `llm.GPT`; the file itself is not run by the tests.",
}


def describe_py(path: Path) -> tuple[str, str, list[str]]:
    """(title, description, commands) from a script's docstring: its first paragraph, the
    prose, and the indented command lines."""
    doc = ast.get_docstring(ast.parse(path.read_text())) or path.stem
    title, _, rest = doc.partition("\n\n")                # the first paragraph
    title = " ".join(title.split())
    commands, prose = [], []
    for line in rest.splitlines():
        if line.startswith("    ") and line.strip():
            commands.append(line.strip())
        else:
            prose.append(line)
    return title.strip(), "\n".join(prose).strip(), commands


def describe_toml(path: Path) -> tuple[str, str, list[str]]:
    """(title, description, commands) from a TOML file's leading comment block; comment lines
    indented under ``#`` are commands, the others prose."""
    head = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        head.append(line[1:])
    commands = [h.strip() for h in head if h.startswith("  ") and h.strip()]
    prose = [h.strip() for h in head if not h.startswith("  ")]
    title = prose[0] if prose else path.name
    return title, " ".join(prose[1:]), commands


def page(path: Path) -> str:
    """One example's page."""
    name = path.stem
    title, prose, commands = (describe_toml if path.suffix == ".toml" else describe_py)(path)
    lang = "toml" if path.suffix == ".toml" else "python"
    prose = re.sub(r"``([^`]+)``", r"`\1`", prose)
    lines = [f"# {path.name}", "", f"**{title}**", "", prose, "", "## Run it", "",
             "From a Qorus checkout, after `make dev` (or `make demo`):", "",
             "```sh", *commands, "```", "", "## Result", ""]
    lines.append(RESULTS.get(name, "Not recorded here yet: the command above prints it (add it to "
                                  "`RESULTS` in `docs/gen_examples.py`)."))
    if name in CHECKS:
        lines += ["", "## Tested", "", CHECKS[name]]
    lines += ["", "## Source", "", f'??? note "examples/{path.name}"', "",
              f"    ```{lang}", *("    " + ln if ln else "" for ln in path.read_text().splitlines()),
              "    ```", ""]
    return "\n".join(lines)


def main() -> None:
    files = sorted(p for p in EXAMPLES.iterdir()
                   if p.suffix in (".py", ".toml") and p.stem not in HELPERS)
    index = ["# Examples", "",
             "One per architecture, each runnable as it stands (`examples/`). The TOML ones run "
             "with `qorus train FILE`; the scripts with `python examples/NAME.py` (`--kernels "
             "numpy` runs them on the NumPy kernels).", "",
             "| example | what it builds |", "|---|---|"]
    nav = ["* [All examples](index.md)"]
    for path in files:
        md = f"{path.stem}.md" if path.suffix == ".py" else f"{path.stem}_toml.md"
        title = (describe_toml if path.suffix == ".toml" else describe_py)(path)[0]
        with mkdocs_gen_files.open(f"examples/{md}", "w") as f:
            f.write(page(path))
        mkdocs_gen_files.set_edit_path(f"examples/{md}", path.relative_to(ROOT))
        index.append(f"| [{path.name}]({md}) | {title.replace('|', '/')} |")
        nav.append(f"* [{path.name}]({md})")
    with mkdocs_gen_files.open("examples/index.md", "w") as f:
        f.write("\n".join(index) + "\n")
    with mkdocs_gen_files.open("examples/SUMMARY.md", "w") as f:
        f.write("\n".join(nav) + "\n")


main()
