# The two entry points: `make demo` runs Sluice on a local cluster, `make test` runs every test.
# Both install what they need first (idempotently) into .venv and the binary cache.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
WORKDIR ?= .work/cluster

.PHONY: install binaries lint test demo down

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@# mypy cannot follow the editable install's import hook; give it the package tree.
	mkdir -p $(VENV)/typing/sluice
	ln -sfn ../../../operator $(VENV)/typing/sluice/operator
	ln -sfn ../../../runtime $(VENV)/typing/sluice/runtime
	rm -f $(VENV)/.installed-*
	touch $@

binaries: install
	$(PY) -m e2e.cluster build

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy -p sluice.operator -p sluice.runtime -p e2e

test: lint binaries
	$(PY) -m pytest

demo: binaries
	$(PY) -m e2e.demo --workdir $(WORKDIR)

down: install
	$(PY) -m e2e.cluster down --workdir $(WORKDIR)
