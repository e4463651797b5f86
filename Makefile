PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# checkov has its own virtual environment: its pinned dependencies would fight the project's.
CHECKOV_VENV := .venv-checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov
ACCEPTANCE := ../shared/acceptance

.PHONY: demo test venv test-venv bench-venv bench bench-quick lambda-package clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

venv: $(BIN)/python
	$(BIN)/pip install --quiet -e .

test-venv: $(BIN)/python $(CHECKOV)
	$(BIN)/pip install --quiet -e '.[test]'

$(CHECKOV):
	$(PY) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet 'checkov>=3.2'

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

# The Lambda deployment artifact for manylinux2014_x86_64 / Python 3.12 (terraform/lambda/README.md).
lambda-package: venv
	$(BIN)/python terraform/lambda/package.py

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) build *.egg-info
