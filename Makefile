# Quick start: `make run` (app on http://127.0.0.1:8001 with a demo account) and `make test`.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8001
DEV_ENV := DEBUG=$${DEBUG:-1}

.PHONY: run test install migrate seed check lint clean bench

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

migrate: install
	$(DEV_ENV) $(PY) manage.py migrate --noinput

seed: migrate
	$(DEV_ENV) $(PY) manage.py seed --demo

run: seed
	@echo ""
	@echo "  AI Hub is starting on http://$(HOST):$(PORT)/"
	@echo "  Demo login: demo@aihub.local / aihub-demo-2026"
	@echo ""
	$(DEV_ENV) $(VENV)/bin/daphne -b $(HOST) -p $(PORT) aihub.asgi:application

test: install
	$(VENV)/bin/pytest

# ruff (lint and format) and mypy (strict on the gateway, admission, metering and API keys): see pyproject.toml.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	DEBUG=1 $(VENV)/bin/mypy

check: install
	$(VENV)/bin/python manage.py check --deploy --fail-level WARNING

# Gateway load benchmark (bench/run_all.sh): the shared harness (BENCH_DIR) and LiteLLM, each in a venv of its own
# under BENCH_VENVS (outside the repository), then LiteLLM and AI Hub on both plans in one session: one table.
BENCH_VENVS ?= $(HOME)/.cache/aihub-bench
BENCH_DIR ?= $(shell git rev-parse --path-format=absolute --git-common-dir)/../../shared/bench
LITELLM_VERSION := 1.106.2

$(BENCH_VENVS)/venv-harness/.installed: $(BENCH_DIR)/requirements-bench.txt
	$(PYTHON) -m venv $(@D)
	timeout 900 $(@D)/bin/pip install --quiet -r $< py-spy
	touch $@

$(BENCH_VENVS)/venv-litellm-$(LITELLM_VERSION)/.installed:
	$(PYTHON) -m venv $(@D)
	timeout 1800 $(@D)/bin/pip install --quiet 'litellm[proxy]==$(LITELLM_VERSION)'
	touch $@

bench: install $(BENCH_VENVS)/venv-harness/.installed $(BENCH_VENVS)/venv-litellm-$(LITELLM_VERSION)/.installed
	BENCH_VENVS=$(BENCH_VENVS) BENCH_DIR=$(BENCH_DIR) bench/run_all.sh $(SCENARIOS)

clean:
	rm -rf $(VENV) db.sqlite3 staticfiles
