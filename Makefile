# Quick start: `make demo` trains an MLP on scikit-learn's digits; `make test` runs every test
# environment (C kernels, NumPy kernels, PyTorch parity, lint, docs) through tox; `make docs`
# builds the documentation site strictly into site/.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test dev docs bench clean

$(BIN)/qorus: pyproject.toml setup.py qorus_layers_mlp/pyproject.toml qorus_layers_llm/pyproject.toml \
		plugins/template/pyproject.toml plugins/cnn/pyproject.toml plugins/rnn/pyproject.toml
	@# tox 4 leaves a plain file named .venv (naming its last env) in the project root
	@if [ -f $(VENV) ]; then rm $(VENV); fi
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@# setuptools>=77 in the venv too: the docs tests build the tutorial's package (an SPDX
	@# license string) without build isolation
	$(BIN)/python -m pip install -q -e . -e ./qorus_layers_mlp -e ./qorus_layers_llm -e ./plugins/template \
		-e ./plugins/cnn -e ./plugins/rnn pytest scikit-learn matplotlib sybil==10.1.0 "setuptools>=77"
	touch $@

dev: $(BIN)/qorus

demo: $(BIN)/qorus
	$(BIN)/qorus backend
	$(BIN)/qorus train examples/digits_mlp.toml --out runs/digits

test:
	$(PY) -m venv .venv-tox
	.venv-tox/bin/python -m pip install -q "tox>=4.11"
	.venv-tox/bin/tox run -e c,numpy,parity,sanitize,lint,docs

docs: $(BIN)/qorus
	$(BIN)/python -m pip install -q -r docs/requirements.txt
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(BIN)/mkdocs build --strict
	@echo "site/index.html (or: $(BIN)/mkdocs serve, http://127.0.0.1:8000)"

bench: $(BIN)/qorus
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python bench/bench_mlp.py
	$(BIN)/python bench/bench_gpt.py

clean:
	rm -rf $(VENV) .venv-tox .tox build runs site qorus_core/kernels/_lib
