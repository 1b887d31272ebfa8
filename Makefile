# Adaptive query router. `make run` sets up and serves on embedded defaults; `make test` sets up and tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP_VERSION := 26.3
LOCK   := requirements/dev.lock
STAMP  := $(VENV)/.stamp-$(shell cat $(LOCK) pyproject.toml | cksum | cut -d' ' -f1)
ONNX   := $(VENV)/.onnx-exported
OUTCOMES ?= ../shared/data/adarague/outcomes.jsonl
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.DEFAULT_GOAL := help
.PHONY: help setup lock check-lock run serve ingest-sample bundle eval bench bench-quick bench-soak test test-fast lint \
	docs wheel clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# Exactly the locked set (every package at its locked version and hash), then the project itself without resolving.
$(STAMP): $(LOCK) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet pip==$(PIP_VERSION)
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.stamp-* && touch $@

$(ONNX): $(STAMP)
	$(BIN)/router embedder export
	@touch $@

setup: $(STAMP) $(ONNX) ## create .venv from the lock (requirements/dev.lock, CPU torch), export the embedder to ONNX

lock: $(STAMP) ## re-resolve pyproject.toml into requirements/{dev,train,serve}.lock; run it after changing dependencies
	$(BIN)/python requirements/lock.py

check-lock: ## fail when pyproject.toml's requirements and the lock disagree (CI runs it)
	$(PYTHON) requirements/lock.py --check

ingest-sample: setup ## ingest the sample corpus into the default LanceDB table (idempotent)
	$(BIN)/router ingest deploy/sample-corpus --quiet

run: ingest-sample ## set up, ingest the sample corpus, and serve on http://127.0.0.1:8000
	$(BIN)/router serve

serve: setup ## serve without ingesting
	$(BIN)/router serve

bundle: setup ## retrain the default bundle on dev_500, evaluate it on test, record the figures and report
	$(BIN)/router train --outcomes $(OUTCOMES) --split dev_500 --out models/default_bundle
	$(BIN)/router eval --outcomes $(OUTCOMES) --split test --model models/default_bundle --record \
		--out models/default_bundle/report > /dev/null

eval: setup ## evaluate the default bundle on the benchmark's test split (prints the report)
	$(BIN)/router eval --outcomes $(OUTCOMES) --split test

bench: setup ## the performance benchmarks (a few minutes; builds 100k and 1M-chunk tables once, in var/bench)
	$(BIN)/python -m bench

bench-quick: setup ## the benchmarks without the 1M-chunk table
	$(BIN)/python -m bench --quick --seconds 8

bench-soak: setup ## ten minutes at saturation: memory, routing-log files and records over time (bench/soak.json)
	$(BIN)/python -m bench --cases soak --out bench/soak.json

test: setup ## set up and run the whole test suite (includes the real LLM-server test)
	$(BIN)/pytest

test-fast: setup ## the suite without the tests that start a real LLM server
	$(BIN)/pytest -m "not llm_server"

lint: setup ## ruff, mypy and the layer check (import-linter contracts in .importlinter)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

docs: setup ## build the documentation site strictly (mkdocs.yml, docs/) into var/site
	$(BIN)/mkdocs build --strict --site-dir var/site

wheel: setup ## build the wheel into dist/ (the default bundle and the dashboard are package data)
	$(BIN)/pip wheel --quiet --no-deps --no-build-isolation --wheel-dir dist .

clean: ## remove the virtualenv, caches and local data (var/)
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
