# ecom lakehouse — every target is what CI and people run. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PY_VERSION   ?= 3.11
VENV         := .venv
BIN          := $(VENV)/bin
CACHE        := $(CURDIR)/.cache
UV_VERSION   := 0.13.9
export UV_CACHE_DIR := $(CACHE)/uv
export SPARK_LOCAL_IP ?= 127.0.0.1
export GX_ANALYTICS_ENABLED := false
PROFILE      ?= quick
PYTEST_ARGS  ?=

UV := $(shell command -v uv 2>/dev/null || echo $(CACHE)/uv-venv/bin/uv)

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

setup: sysdeps $(BIN)/.installed jars ## Install system packages if missing, .venv (uv, locked), the project, pinned jars (idempotent)

# Debian packages the platform needs: PostgreSQL server (the local cluster), unixODBC and
# FreeTDS (SQL Server from Python), Chromium (headless Data Docs checks in the tests).
# Installed only when missing, as root.
SYSPKGS := postgresql unixodbc tdsodbc chromium
sysdeps: ## Install missing Debian packages (postgresql, unixodbc, tdsodbc, chromium) when root; else say what to install
	@missing=""; for p in $(SYSPKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then echo "system packages: present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing:$$missing"; apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing >/dev/null; \
	else echo "please install:$$missing (Debian/Ubuntu: sudo apt-get install$$missing; macOS: brew install postgresql@15 unixodbc freetds)"; exit 1; fi

$(CACHE)/uv-venv/bin/uv:
	python$(PY_VERSION) -m venv $(CACHE)/uv-venv
	$(CACHE)/uv-venv/bin/pip install -q uv==$(UV_VERSION)

$(BIN)/.installed: requirements.lock pyproject.toml | $(UV)
	@test -x $(BIN)/python || $(UV) venv -q --python $(PY_VERSION) $(VENV)
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(UV) pip sync -q requirements.lock
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(UV) pip install -q --no-deps -e .
	@touch $@

lock: | $(UV) ## Re-resolve requirements.lock from pyproject.toml (then commit it)
	$(UV) pip compile pyproject.toml --extra dev --python $(PY_VERSION) --no-annotate -o requirements.lock

jars: ## Fetch the JVM jars pinned in jars/pom.xml into jars/lib and verify their checksums
	@if (cd jars/lib 2>/dev/null && sha256sum --quiet -c ../checksums.sha256 >/dev/null 2>&1); then \
		echo "jars: present and verified"; \
	else \
		command -v mvn >/dev/null || { echo "Maven (mvn) is needed once to fetch the jars: apt-get install maven"; exit 1; }; \
		mvn -q -B -Dmaven.repo.local=$(CACHE)/m2 -f jars/pom.xml dependency:copy-dependencies \
			-DoutputDirectory=lib -DexcludeTransitive=true && \
		(cd jars/lib && sha256sum -c ../checksums.sha256); \
	fi

db: setup ## Start the local PostgreSQL cluster and create databases, tables and roles (idempotent)
	$(BIN)/ecom db up
	$(BIN)/ecom db init

demo: db ## Set up everything and run the whole pipeline on the local default
	$(BIN)/ecom demo

test: db airflow-init ## Set up everything and run the whole test suite (unit, integration, e2e)
	$(BIN)/pytest --ignore=tests/reliability $(PYTEST_ARGS)

test-reliability: db ## Fault injection against the real components: kill -9, reruns, concurrency (a summary table)
	$(BIN)/pytest tests/reliability -m "not soak" $(PYTEST_ARGS)

soak: db ## The generator streams while ECOM_SOAK_CYCLES (20) full cycles run; prints a reconciliation table
	$(BIN)/pytest tests/reliability -m soak -s $(PYTEST_ARGS)

airflow-init: setup ## Migrate Airflow's metadata DB and create its pools (idempotent)
	orchestration/airflow.sh init

test-unit: setup ## Only the fast unit tests (no database)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-mssql: setup ## The whole pipeline against the SQL Server named by ECOM_TEST_MSSQL_* (skipped without them)
	$(BIN)/pytest tests/mssql $(PYTEST_ARGS)

lint: setup ## ruff (lint + format check), mypy, and a secret scan
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	@git ls-files -z | xargs -0 $(BIN)/detect-secrets-hook --baseline .secrets.baseline

format: setup ## Apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: db ## Print performance figures beside their baselines (PROFILE=quick|full)
	$(BIN)/python -m bench --profile $(PROFILE)

airflow-up: db ## Start Airflow (api-server on 127.0.0.1:8085, scheduler, dag-processor, triggerer)
	orchestration/airflow.sh start

airflow-down: ## Stop every Airflow process this project started
	orchestration/airflow.sh stop

db-down: ## Stop the local PostgreSQL cluster
	$(BIN)/ecom db down

clean-lake: ## Delete the local lake (tables, ledger, watermarks); the databases stay
	rm -rf lake/bronze lake/silver lake/quarantine lake/gold lake/_ops lake/_warehouse

.PHONY: test-reliability soak airflow-init help sysdeps setup lock jars db demo test test-unit test-mssql lint format bench airflow-up airflow-down db-down clean-lake
