# recycle-pipeline: the commands a newcomer and CI run.
#   make demo    the whole pipeline in one process, no services, no API key
#   make test    every test, starting the local servers it needs
#   make lint    the chart checks (helm lint, schema, Kubernetes schemas, checkov) and ruff
#   make bench   the benchmarks (not part of make test)
#   make reliability  faults, bad input, load and the chart run; writes docs/reliability.md

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test services bench clean reliability

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

test: install services lint
	$(BIN)/pytest

# Every reliability test, the slow ones too, then docs/reliability.md from their records.
RELIABILITY_RECORDS := build/reliability-records.jsonl

reliability: install services helm
	mkdir -p build && rm -f $(RELIABILITY_RECORDS)
	start=$$(date +%s); \
	RELIABILITY_FULL=1 RELIABILITY_RECORDS=$(CURDIR)/$(RELIABILITY_RECORDS) \
		$(BIN)/pytest tests/reliability; status=$$?; \
	$(BIN)/python scripts/reliability-report $(RELIABILITY_RECORDS) docs/reliability.md \
		$$(( $$(date +%s) - start )); \
	exit $$status

# Benchmarks: real workers on the local servers; writes bench/results/ and docs/performance.md.
bench: install services
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .tools .pytest_cache

# Chart tools, kept in the git-ignored .tools/ folder (make chart-tools installs all three).
HELM := .tools/bin/helm
CHECKOV := .tools/checkov/bin/checkov
CHECKOV_VERSION := 3.3.30
README_GENERATOR := .tools/readme-generator/node_modules/.bin/readme-generator
README_GENERATOR_VERSION := 2.7.2

.PHONY: lint helm chart-tools chart-readme

helm: $(HELM)

$(HELM): scripts/get-helm
	$(PYTHON) scripts/get-helm $(HELM)

# checkov pins many libraries of its own, so it lives in a virtualenv apart from .venv.
$(CHECKOV):
	$(PYTHON) -m venv .tools/checkov
	.tools/checkov/bin/pip install --quiet --upgrade pip
	.tools/checkov/bin/pip install --quiet 'checkov==$(CHECKOV_VERSION)'

$(README_GENERATOR):
	npm install --prefix .tools/readme-generator --no-audit --no-fund --silent \
		'@bitnami/readme-generator-for-helm@$(README_GENERATOR_VERSION)'

chart-tools: $(HELM) $(CHECKOV) $(README_GENERATOR)

chart-readme: $(README_GENERATOR)
	scripts/chart-readme

lint:
	@$(MAKE) --no-print-directory install chart-tools
	scripts/lint-chart
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
