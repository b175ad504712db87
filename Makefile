# Feature platform: one command for the demo, one for the tests. Run `make help`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help deps venv up down status lint typecheck test test-unit test-integration demo clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

deps: ## Install missing system packages (redis-server, mariadb-server, JRE) from apt
	@scripts/install-system-deps.sh

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing Python dependencies into $(VENV) ..."
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[dev,spark]'
	@touch $(STAMP)

venv: $(STAMP) ## Create the project virtualenv with the Python dependencies

up: deps venv ## Start MariaDB (TiDB stand-in) and Redis on loopback; print the settings
	@$(PY) -m devstack up

down: ## Stop the local stack
	@if [ -x $(PY) ]; then $(PY) -m devstack down; else echo "No virtualenv, nothing to stop."; fi

status: venv ## Show whether the local stack runs
	@$(PY) -m devstack status

lint: venv ## ruff (lint + format check) and mypy
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy providers devstack serving

test: deps venv lint ## Lint, then unit + integration + e2e tests on real servers the tests start
	@$(VENV)/bin/pytest $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; fi; exit $$rc

test-unit: venv ## Only the unit tests (no servers)
	@$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

test-integration: deps venv ## Only the integration tests
	@$(VENV)/bin/pytest tests/integration $(PYTEST_ARGS)

demo: up ## Run the platform end to end on the local stack
	@source .stack/env && $(PY) -m scripts.demo

clean: down ## Stop the stack and remove local data (keeps the virtualenv)
	rm -rf .stack feature_repo/data .pytest_cache .mypy_cache .ruff_cache
