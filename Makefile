# Every target bootstraps its own environment: a fresh clone needs only python3 (3.11-3.13) and make.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9
UV := .cache/uv-$(UV_VERSION)/bin/uv
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
export UV_PYTHON_DOWNLOADS := never
export UV_CACHE_DIR := $(CURDIR)/.cache/uv-cache

.PHONY: serve test lint typecheck unit bench manifest clean

$(UV):
	$(PYTHON) -m venv .cache/uv-$(UV_VERSION)
	.cache/uv-$(UV_VERSION)/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --python "$$(command -v $(PYTHON))"
	touch $@

serve: $(VENV)/.synced
	$(PY) -m tools.serve --root ./var/counters

test: lint typecheck unit

lint: $(VENV)/.synced
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m tools.migrations manifest --check

typecheck: $(VENV)/.synced
	$(VENV)/bin/mypy

unit: $(VENV)/.synced
	$(PY) -m pytest

bench: $(VENV)/.synced
	$(PY) -m tools.bench

manifest: $(VENV)/.synced
	$(PY) -m tools.migrations manifest

clean:
	rm -rf $(VENV) .cache .mypy_cache .pytest_cache .ruff_cache var
