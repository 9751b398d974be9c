# recycle-pipeline: the commands a newcomer and CI run.
#   make demo    the whole pipeline in one process, no services, no API key
#   make test    every test, starting the local servers it needs
#   make lint    the chart checks (helm lint, schema, Kubernetes schemas, checkov)
#   make bench   the benchmarks (not part of make test)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-python services bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: install
	$(BIN)/recycle-workers demo

services:
	@scripts/ensure-services

test: install services
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .tools .pytest_cache
