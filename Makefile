# The two entry points: `make demo` runs Sluice on a local cluster, `make test` runs every test.
# Both install what they need first (idempotently) into .venv and the binary cache.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
WORKDIR ?= .work/cluster

.PHONY: install binaries lint test demo down

install: $(STAMP)

# -P keeps the working directory off sys.path: the source folder operator/ would otherwise
# shadow the standard library's operator module while the venv has nothing installed.
$(STAMP): pyproject.toml
	$(PYTHON) -P -m venv $(VENV)
	$(PY) -P -m pip install --quiet --upgrade pip
	$(PY) -P -m pip install --quiet -e '.[dev]'
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
	$(VENV)/bin/mypy -p sluice.operator -p sluice.runtime -p e2e -p benchmarks
	PYTHONPATH=$(VENV)/typing $(VENV)/bin/lint-imports

test: lint binaries
	$(PY) -m pytest

demo: binaries
	$(PY) -m e2e.demo --workdir $(WORKDIR)

down: install
	$(PY) -m e2e.cluster down --workdir $(WORKDIR)
