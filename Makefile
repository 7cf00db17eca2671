# Every target bootstraps its own environment: a fresh clone needs only python3 (3.11-3.13) and make.
# PYTHON chooses the interpreter .venv is built from (`make test PYTHON=python3.13`; after changing it,
# `make clean` first). PORT is the port of `make serve` (`make serve PORT=3107`).
SHELL := /bin/bash
PYTHON ?= python3
PORT ?= 3000
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
	$(PY) -m tools.serve --root ./var/counters --port $(PORT)

test: lint typecheck unit

lint: $(VENV)/.synced
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m tools.migrations manifest --check
	$(PY) -m tools.migrations check

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

# ---------------------------------------------------------------- Lambda bundle and template
# `sam build` runs `make build-<LogicalId>` for each function with `BuildMethod: makefile`, with
# ARTIFACTS_DIR set to that function's output folder. The three functions ship the same bundle.
LAMBDA_FUNCTIONS := ApiFunction FleetPlanFunction FleetMigrateFunction
# The Lambda platform of template.yaml: python3.13 on arm64. Wheels are chosen for it, not for the
# Python running make, so `sam build` needs neither Docker nor a local Python 3.13 for them.
# LAMBDA_ARCH=x86_64 builds the same bundle for an x86_64 machine (the benchmark's cold start runs the
# bundle here, built by this target).
LAMBDA_ARCH ?= aarch64
LAMBDA_PIP_PLATFORM := --platform manylinux2014_$(LAMBDA_ARCH) --platform manylinux_2_28_$(LAMBDA_ARCH) \
	--implementation cp --python-version 3.13 --only-binary=:all:
# Where the wheels come from; override for a mirror (`make build-ApiFunction BUNDLE_INDEX_URL=...`).
BUNDLE_INDEX_URL ?= https://pypi.org/simple
# Downloaded Lambda wheels, kept so a rebuild needs no network.
LAMBDA_WHEELS := .cache/lambda-wheels
# pip reads no config file (PIP_CONFIG_FILE=/dev/null in the recipe) and no PIP_* variables
# (--isolated): a machine's constraint file, find-links or extra indexes must not change what ships.
BUNDLE_PIP := $(PY) -m pip --isolated --disable-pip-version-check --no-input
# The CPython 3.13 that compiles the bundle's bytecode: LAMBDA_PYTHON if set, else python3.13 on PATH,
# else pyenv's 3.13, else one uv already has (uv python find; downloads stay off).
LAMBDA_PYTHON ?=
# Shipped but never loaded: apsw's test suite, its interactive shell and its SQLite extension and
# shell binaries (13 MB of a 30 MB bundle); the handlers import none of them.
BUNDLE_PRUNE := apsw/tests apsw/shell.py apsw/sqlite_extra_binaries apsw/__main__.py bin
SAM_CLI_VERSION := 1.170.0
SAM_CLI := .cache/sam-cli-$(SAM_CLI_VERSION)

.PHONY: $(addprefix build-,$(LAMBDA_FUNCTIONS)) validate

# 1. Regenerate generated/manifest.json, so a bundle never ships a stale one; an inconsistent
#    migrations folder stops the build with the tool's message.
# 2. Copy the runtime packages; tools/ and tests/ stay out.
# 3. Install exactly uv.lock's runtime set, checked against its hashes and with --no-deps, as
#    Lambda-platform wheels: from $(LAMBDA_WHEELS) when it has them all, else download them there
#    first; then remove what the bundle never loads ($(BUNDLE_PRUNE)).
# 4. Compile every module with CPython 3.13, Lambda's runtime, in unchecked-hash mode: /var/task is
#    read-only, so without shipped bytecode every cold start compiles every module it imports
#    (https://docs.python.org/3/library/compileall.html, https://peps.python.org/pep-0552/); an
#    unchecked .pyc is used without a stat of its source. Without a 3.13 the bundle ships no bytecode,
#    with a warning: it works, but each cold start pays for compiling.
$(addprefix build-,$(LAMBDA_FUNCTIONS)): $(VENV)/.synced
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set - sam build sets it; by hand run: make $@ ARTIFACTS_DIR=/tmp/bundle" >&2; exit 2; }
	$(PY) -m tools.migrations manifest
	mkdir -p "$(ARTIFACTS_DIR)" $(LAMBDA_WHEELS)
	tar --create --exclude=__pycache__ --exclude='*.pyc' handlers counter_core generated \
		| tar --extract --directory "$(ARTIFACTS_DIR)"
	set -euo pipefail; export PIP_CONFIG_FILE=/dev/null; \
	requirements=$$(mktemp); trap 'rm -f "$$requirements"' EXIT; \
	$(UV) export --frozen --no-dev --no-emit-project --no-header --format requirements.txt > "$$requirements"; \
	install() { $(BUNDLE_PIP) install --no-index --find-links $(LAMBDA_WHEELS) --no-deps --no-compile --upgrade \
		--target "$(ARTIFACTS_DIR)" $(LAMBDA_PIP_PLATFORM) --requirement "$$requirements" "$$@"; }; \
	if ! install --quiet 2>/dev/null; then \
		$(BUNDLE_PIP) download --progress-bar off --index-url "$(BUNDLE_INDEX_URL)" --dest $(LAMBDA_WHEELS) \
			--no-deps $(LAMBDA_PIP_PLATFORM) --requirement "$$requirements"; \
		install; \
	fi
	cd "$(ARTIFACTS_DIR)" && rm -rf $(BUNDLE_PRUNE)
	set -uo pipefail; py=""; \
	for candidate in "$(LAMBDA_PYTHON)" "$$(command -v python3.13)" \
		"$$(pyenv prefix 3.13 2>/dev/null | head -n 1)/bin/python3.13" "$$($(UV) python find 3.13 2>/dev/null)"; do \
		if [ -n "$$candidate" ] && [ -x "$$candidate" ] \
			&& "$$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then \
			py="$$candidate"; break; \
		fi; \
	done; \
	if [ -n "$$py" ]; then \
		"$$py" -m compileall -q -j 0 --invalidation-mode unchecked-hash "$(ARTIFACTS_DIR)" >/dev/null \
			|| { echo "compileall with $$py failed" >&2; exit 1; }; \
	else \
		echo "WARNING: no CPython 3.13 found (set LAMBDA_PYTHON=/path/to/python3.13): the bundle ships without" \
			"bytecode, and every cold start on Lambda will compile each module it imports" >&2; \
	fi

# `sam validate --lint` with aws-sam-cli in its own environment (its pins clash with the project's).
# Not part of `make test`: tests/test_template.py runs the same translator and linter in-process.
$(SAM_CLI)/.installed: | $(UV)
	$(UV) venv --quiet --python "$$(command -v $(PYTHON))" $(SAM_CLI)
	$(UV) pip install --quiet --python $(SAM_CLI)/bin/python "aws-sam-cli==$(SAM_CLI_VERSION)"
	touch $@

validate: $(SAM_CLI)/.installed
	SAM_CLI_TELEMETRY=0 $(SAM_CLI)/bin/sam validate --lint --template template.yaml --region us-east-1
