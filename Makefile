PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
ACCEPTANCE := ../shared/acceptance

.PHONY: demo test venv test-venv bench-venv bench bench-quick clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

venv: $(BIN)/python
	$(BIN)/pip install --quiet -e .

test-venv: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'

bench-venv: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,bench]'

demo: venv
	$(BIN)/python -m flussfs.demo

# ACCEPTANCE_FILES is set by .ci/run; by default every acceptance file this project has resolved.
ACCEPTANCE_FILES ?= test_log_tables.py test_pk_tables.py test_compaction_iceberg.py
test: test-venv
	PYTHONDONTWRITEBYTECODE=1 $(BIN)/python -m pytest -q tests
	cd $(ACCEPTANCE) && PYTHONDONTWRITEBYTECODE=1 $(CURDIR)/$(BIN)/python -m pytest -q $(ACCEPTANCE_FILES)

# The suite against deltalake, pyiceberg and Lance (benchmarks/README.md), then flussfs's own.
bench: bench-venv
	$(BIN)/python -m benchmarks.suite
	$(BIN)/python -m benchmarks.log_bench
	$(BIN)/python -m benchmarks.pk_bench
	$(BIN)/python -m benchmarks.compaction_bench

bench-quick: bench-venv
	$(BIN)/python -m benchmarks.suite --quick

clean:
	rm -rf $(VENV) build *.egg-info
