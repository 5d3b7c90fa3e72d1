# The two entry points: `make demo` runs Sluice on a local cluster, `make test` runs every test.
# `make unit` is the fast loop: every test that needs no cluster. All of them install what they
# need first (idempotently) into .venv and the binary cache.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The development virtualenv holds every component, the CPU runtime, and the test tools.
EXTRAS := operator,runtime,router,s3,dev
# The component folders shipped as sluice.<folder> (setup.py lists them).
SOURCES := contracts operator router runtime
# Reinstalled when the distribution changes (its metadata, or the set of modules) and when the
# link tree is gone. The editable install is strict: a tree of links to the source files under
# build/, found through a plain .pth file, so mypy, lint-imports and editors resolve sluice.*
# as Python does; a module added or removed needs the tree made again (docs/development.md
# says why this mode).
STAMP := $(VENV)/.installed-$(shell (cat pyproject.toml setup.py; find $(SOURCES) -name '*.py' 2>/dev/null | sort; ls -d build/__editable__.* 2>/dev/null) | sha256sum | cut -c1-12)
WORKDIR ?= .work/cluster

.PHONY: install binaries images lint unit test demo down

install: $(STAMP)

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]' --config-settings editable_mode=strict
	rm -f $(VENV)/.installed-*
	touch $@

binaries: install
	$(PY) -m e2e.cluster build

# Sluice's runtime and operator images, built from their Dockerfiles (cached until an input
# changes); the real node imports them when it starts.
images: install
	$(PY) -m e2e.cluster images

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy -p sluice.contracts -p sluice.operator -p sluice.runtime -p sluice.router -p e2e -p benchmarks
	$(VENV)/bin/lint-imports

# Tests that use the cluster fixture are marked `cluster` when collected (e2e/cluster/fixtures.py),
# so none can run here by mistake.
unit: install
	$(PY) -m pytest -m 'not cluster'

# The real node's lifecycle tests start and stop clusters of their own; a machine holds one
# real node, so they run before the session cluster's tests, not beside them.
test: lint binaries images
	$(PY) -m pytest -m node_lifecycle
	$(PY) -m pytest

demo: binaries
	$(PY) -m e2e.demo --workdir $(WORKDIR)

down: install
	$(PY) -m e2e.cluster down --workdir $(WORKDIR)
