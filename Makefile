# imdb-sentiment: `make run` runs the pipeline, `make test` runs the tests. `make help` lists all.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SOURCE ?=

# The venv's bin comes first so `mlflow`, `uvicorn` and `dvc` are the project's own.
export PATH := $(abspath $(VENV))/bin:$(PATH)
export MLFLOW_TRACKING_URI ?= sqlite:///mlflow.db
export MLFLOW_EXPERIMENT_NAME ?= imdb-sentiment

.PHONY: help install run test test-fast lint format bench clean

help: ## list every target with what it does
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv (if missing) and install the project with its dev tools

run: $(STAMP) ## run the whole pipeline (MLproject `main`); SOURCE=path-or-uri for other data
	$(PY) -m steps.tracking
	mlflow run . -e main --env-manager local $(if $(SOURCE),-P 'source=$(SOURCE)')

test: $(STAMP) ## run the whole test suite (real-data tests need ../shared/data/imdb)
	$(PY) -m pytest

test-fast: $(STAMP) ## run the tests not marked slow
	$(PY) -m pytest -m "not slow"

lint: $(STAMP) ## ruff lint and format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP) ## ruff: fix imports and format the code
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

bench: $(STAMP) ## benchmarks: print tables of speed, memory and accuracy
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean: ## remove pipeline outputs (data/ingested, reports, models); keeps downloads and mlflow.db
	rm -rf data/ingested data/validated.json reports models
