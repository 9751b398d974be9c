# recycle-pipeline: the commands a newcomer and CI run.
#   make demo    the whole pipeline in one process, no services, no API key
#   make test    every test, starting the local servers it needs
#   make lint    the chart checks (helm lint, schema, Kubernetes schemas, checkov)
#   make bench   the benchmarks (not part of make test)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test services bench clean

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
