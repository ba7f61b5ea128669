# imdb-sentiment: `make run` runs the pipeline, `make test` runs the tests. `make help` lists all.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SOURCE ?=
# P="key=value ...": any params.yaml key of the target's stage(s), for one run (`make run
# P="min_rows=300 C=0.5"`; a key two stages share as stage.key; no spaces inside a value).
# `main --check` and every stage refuse a bad one in one line, as for -P and --flags.
P ?=
P_FLAGS = $(foreach kv,$(P),'--$(kv)')
P_MLFLOW = $(foreach kv,$(P),-P '$(kv)')
# Hints in errors speak make's words (OVERWRITE=1, make promote VERSION=N): steps/stage/hints.py.
export IMDB_CALLER := make

# The interpreter .venv is built with: `make install PYTHON=python3.13` (default python3). Given
# explicitly, a .venv of another Python is rebuilt; without it, a working .venv is kept. A .venv
# that is missing, broken (no pip) or of a Python outside requires-python is rebuilt either way.
PYTHON ?= python3
PYTHON_GIVEN := $(filter command line environment,$(origin PYTHON))
SUPPORTED := $(shell sed -n 's/^requires-python = "\(.*\)"/\1/p' pyproject.toml)
SYSTEM_PATH := $(PATH)
BUILDER = $(shell PATH='$(SYSTEM_PATH)' command -v $(PYTHON))
# Exits with one line unless the Python running it is in requires-python (>=3.N,<3.M).
PYTHON_CHECK = import sys; lo, hi = (tuple(map(int, b.strip(">=<").split("."))) for b in "$(SUPPORTED)".split(",")); v = sys.version_info[:2]; lo <= v < hi or sys.exit("%s is Python %d.%d; imdb-sentiment needs Python $(SUPPORTED): make install PYTHON=python3.%d" % (sys.executable, v[0], v[1], hi[1] - 1))
PYTHON_PROBLEM = $(if $(BUILDER),$(shell $(BUILDER) -c '$(PYTHON_CHECK)' 2>&1),$(PYTHON) not found: install it, or make install PYTHON=python3.N (Python $(SUPPORTED)))
# The stamp holds the venv's Python version: an explicit PYTHON of another version reinstalls.
WANTED := $(if $(PYTHON_GIVEN),$(shell PATH='$(SYSTEM_PATH)' $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null))
REINSTALL := $(if $(PYTHON_GIVEN),$(if $(filter $(WANTED),$(shell cat $(STAMP) 2>/dev/null)),,FORCE))

# The venv's bin comes first so `mlflow`, `uvicorn` and `dvc` are the project's own.
export PATH := $(abspath $(VENV))/bin:$(PATH)
# MLflow's own CLI (`mlflow run`, `mlflow models serve`) picks its store before any project code
# runs: prefix it with this, so it uses the store steps/tracking.py decides (local SQLite, or
# DagsHub when DAGSHUB_REPO is set) and the experiment and store exist with ./mlartifacts.
WITH_TRACKING = exports=$$($(PY) -m steps.models --exports) && eval "$$exports" &&

.PHONY: help install install-spark run test test-fast test-unit lint format bench clean FORCE

help: ## list every target with what it does (target names in colour on a terminal only)
	@if [ -t 1 ]; then on='\033[36m'; off='\033[0m'; fi; \
	grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk -v on="$$on" -v off="$$off" 'BEGIN {FS = ":.*## "}; {printf "  %s%-16s%s %s\n", on, $$1, off, $$2}'

$(STAMP): pyproject.toml $(REINSTALL)
	$(if $(PYTHON_PROBLEM),$(error make install: $(PYTHON_PROBLEM)))
	@want=$$($(BUILDER) -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	have=$$($(PY) -c 'import pip; $(PYTHON_CHECK); print("%d.%d" % sys.version_info[:2])' 2>/dev/null); \
	if [ -z "$$have" ] || { [ -n "$(PYTHON_GIVEN)" ] && [ "$$have" != "$$want" ]; }; then \
		echo "building $(VENV) with $(BUILDER) (Python $$want)"; \
		rm -rf $(VENV) && $(BUILDER) -m venv $(VENV); \
	fi
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@$(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])' > $(STAMP)

FORCE:

install: $(STAMP) ## create .venv and install the project with its dev tools; PYTHON=python3.13

SPARK_STAMP := $(VENV)/.installed-spark
$(SPARK_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,spark]'
	@touch $(SPARK_STAMP)

install-spark: $(SPARK_STAMP) ## add the optional Spark extra (pyspark) for `make score ENGINE=spark`; needs Java 17+

run: $(STAMP) ## run the whole pipeline (MLproject `main`); SOURCE=path-or-uri, P="min_rows=300 C=0.5"
	@# Checked first: `mlflow run` logs every -P value before any project code runs.
	@$(PY) -m steps.main --check $(if $(SOURCE),--source '$(SOURCE)') $(P_FLAGS)
	$(WITH_TRACKING) mlflow run . -e main --env-manager local $(if $(SOURCE),-P 'source=$(SOURCE)') \
		$(P_MLFLOW)

# Every tier runs on every CPU (pytest-xdist): a file's tests on one worker, and the tests that
# share the Docker engine, the Spark JVM or the model servers on one worker (tests/xdist_groups.py).
PARALLEL := -n auto --dist loadgroup

test: $(STAMP) ## run the whole test suite (real-data tests need ../shared/data/imdb), with coverage
	$(PY) -m pytest $(PARALLEL) --cov --cov-report=term:skip-covered --durations=25

test-fast: $(STAMP) ## run the tests not marked slow
	$(PY) -m pytest -m "not slow" $(PARALLEL)

test-unit: $(STAMP) ## the inner loop: the tests that start no process, server or container (< 1 min)
	$(PY) -m pytest -m unit $(PARALLEL)

lint: $(STAMP) ## ruff lint and format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP) ## ruff: fix imports and format the code
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

bench: $(STAMP) ## benchmarks: print tables of speed, memory and accuracy (with date and machine)
	@echo "# make bench: $$(date -u '+%Y-%m-%d %H:%M UTC'), $$(nproc) cores ($$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $$(free -g | awk '/^Mem/ {print $$2}') GiB, load $$(cut -d' ' -f1-3 /proc/loadavg), commit $$(git rev-parse --short HEAD 2>/dev/null || echo none)"
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# What the pipeline regenerates (steps/stage/paths.py). reports/{train_,}metrics.json are not here:
# DVC keeps them in git (cache: false), so no `dvc checkout` brings them back.
CLEANED := data/ingested data/validated.json models reports/validation reports/plots \
	reports/misclassified.csv reports/analysis_sample.json reports/behavioural.json \
	reports/evaluation.json reports/monitor

clean: ## remove what the pipeline regenerates (data/ingested, models, reports/...) that git does not track; keeps downloads, mlflow.db, metrics files
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
		git ls-files -z --others -- $(CLEANED) | xargs -0 -r rm -f --; \
		find $(CLEANED) -depth -type d -empty -delete 2>/dev/null || true; \
	else rm -rf $(CLEANED); fi

.PHONY: deploy deploy-plan deploy-rollback monitoring-files
IMAGE ?=

deploy: $(STAMP) ## roll the registry's champion out blue/green (k8s/); IMAGE=... skips the build
	@$(PY) -m steps.models --champion >/dev/null
	$(PY) -m steps.deploy $(if $(IMAGE),--image '$(IMAGE)') $(P_FLAGS)

deploy-plan: $(STAMP) ## print what `make deploy` would do, touching nothing
	@$(PY) -m steps.models --champion >/dev/null
	$(PY) -m steps.deploy --dry-run $(if $(IMAGE),--image '$(IMAGE)') $(P_FLAGS)

deploy-rollback: $(STAMP) ## switch the live Service back to the other slot, at once
	$(PY) -m steps.deploy --rollback

monitoring-files: $(STAMP) ## regenerate k8s/monitoring's alert rules and dashboard (steps/monitoring/promql.py)
	@$(PY) -c 'from steps.monitoring import promql; from steps.stage.config import load_params; \
		changed = promql.write_files(load_params().deploy); \
		print("\n".join(f"wrote {p}" for p in changed) or "k8s/monitoring is up to date")'

.PHONY: serve models promote rollback migrate dockerfile image base-image deployer-image
PORT ?= 5001
WORKERS ?= 1
# METRICS_PORT=9102: the model's Prometheus metrics on 127.0.0.1:9102/metrics and a JSON line
# per call on stdout, labelled with the champion's version (k8s/monitoring/README.md).
METRICS_PORT ?=
MONITORING_ENV = export IMDB_METRICS_PORT=127.0.0.1:$(METRICS_PORT) IMDB_PREDICTION_LOG=1 \
	IMDB_MODEL_NAME='$(MODEL_NAME)' IMDB_MODEL_VERSION=$$($(PY) -m steps.models --champion) &&
# The served model's request limits in characters and reviews (pyfunc/model.py), as the pods set
# them (k8s/deployment-*.yaml; a test keeps them equal). Batches are scored without them.
MAX_CALL_CHARS ?= 5000000
MAX_REVIEW_CHARS ?= 100000
MAX_CALL_REVIEWS ?= 20000
# The model is code and data (pyfunc/README.md): served as the pods serve it, refusing any pickle
# (a champion logged as pickles, before that, is refused in one line saying how to re-log it).
REFUSE_PICKLES = MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false
VERSION ?=
# Read from params.yaml only when a target below needs it (one source of truth for the name).
MODEL_NAME = $(shell $(PY) -c 'from steps.stage.config import load_params; print(load_params().register.model_name)')
DOCKER_DIR ?= build/docker

serve: $(STAMP) ## serve models:/<name>@champion on 127.0.0.1 (PORT=5001, WORKERS=1, METRICS_PORT=)
	@# No champion (or one this environment cannot load): one line saying how to make one.
	@$(REFUSE_PICKLES) $(PY) -m steps.models --servable >/dev/null
	$(WITH_TRACKING) $(if $(METRICS_PORT),$(MONITORING_ENV)) $(REFUSE_PICKLES) \
	IMDB_MAX_CALL_CHARS=$(MAX_CALL_CHARS) IMDB_MAX_REVIEW_CHARS=$(MAX_REVIEW_CHARS) \
	IMDB_MAX_CALL_REVIEWS=$(MAX_CALL_REVIEWS) \
	mlflow models serve -m 'models:/$(MODEL_NAME)@champion' --env-manager local \
		-h 127.0.0.1 -p $(PORT) --workers $(WORKERS)

models: $(STAMP) ## list the registered versions: aliases, promotion decisions, metrics
	$(PY) -m steps.models

promote: $(STAMP) ## latest version vs @champion (promote.* in params.yaml); VERSION=N by hand
	$(PY) -m steps.promote $(if $(VERSION),--version '$(VERSION)') $(P_FLAGS)

rollback: $(STAMP) ## move @champion back to @previous
	$(PY) -m steps.promote --rollback

migrate: $(STAMP) ## re-log VERSION=N, logged as pickles, as code and data (a new version; no alias moves)
	$(PY) -m steps.migrate --version '$(VERSION)'

dockerfile: $(STAMP) ## write the serving image's Dockerfile + bundled @champion to DOCKER_DIR
	@$(PY) -m steps.models --champion >/dev/null
	$(WITH_TRACKING) mlflow models generate-dockerfile -m 'models:/$(MODEL_NAME)@champion' \
		--env-manager local \
		-d $(DOCKER_DIR)

image: $(STAMP) ## build imdb-sentiment:<champion version> with mlflow models build-docker (Docker engine)
	@$(PY) -m steps.models --champion >/dev/null
	$(PY) -m steps.image $(P_FLAGS)

base-image: $(STAMP) ## pull python:<this Python>-slim, or build a stand-in from Debian packages (no Docker Hub)
	$(PY) -m steps.image --base-only

deployer-image: $(STAMP) ## build the deployer's image (k8s/deployer/Dockerfile) on the same base
	$(PY) -m steps.image --deployer

.PHONY: ui
UI_PORT ?= 5000

ui: $(STAMP) ## MLflow UI on the project's store (UI_PORT=5000): prints the link that opens the runs view
	@# The link names the classic runs view: the UI otherwise reopens the GenAI view it remembers.
	@$(WITH_TRACKING) echo "runs: $$($(PY) -m steps.models --ui $(UI_PORT))" && \
	case "$$MLFLOW_TRACKING_URI" in http://*|https://*) ;; *) \
		mlflow ui --backend-store-uri "$$MLFLOW_TRACKING_URI" \
			--registry-store-uri "$$MLFLOW_REGISTRY_URI" -h 127.0.0.1 -p $(UI_PORT) ;; esac

.PHONY: compare repro monitor score tune
METRIC ?=
GRID ?=
BATCH ?=
INPUT ?=
OUTPUT ?=
OVERWRITE ?=
ENGINE ?=
MODEL ?=

score: $(STAMP) ## label + score INPUT=<source> into OUTPUT=<.parquet|.csv> (ENGINE=, MODEL=uri, OVERWRITE=1)
	$(PY) -m steps.score --input '$(INPUT)' --output '$(OUTPUT)' $(if $(ENGINE),--engine '$(ENGINE)') \
		$(if $(MODEL),--model '$(MODEL)') $(if $(filter 1 true yes,$(OVERWRITE)),--overwrite true) \
		$(P_FLAGS)

tune: $(STAMP) ## cross-validate train recipes by movie (tune.* in params.yaml; GRID='C=10|30;min_df=2|3'); reports/tune.md
	$(PY) -m steps.tune $(if $(GRID),--grid '$(GRID)') $(P_FLAGS)

compare: $(STAMP) ## table + chart of the experiment's best runs (reports/compare.*); METRIC=val_f1
	$(PY) -m steps.compare $(if $(METRIC),--metric '$(METRIC)') $(P_FLAGS)

monitor: $(STAMP) ## drift report of BATCH=<source> against @champion's training profile (reports/monitor/)
	$(PY) -m steps.monitor $(if $(BATCH),--batch '$(BATCH)') $(P_FLAGS)

repro: $(STAMP) ## dvc repro: rerun only the stages whose code, data or params changed (dvc.yaml)
	dvc repro
