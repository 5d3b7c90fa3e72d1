"""Plugins for every test tier: the local cluster's fixtures live in e2e.cluster.fixtures;
pytester runs pytest on small generated test files (tests/cluster/test_fixtures.py).

The strict editable install (docs/development.md) links each source file into
``build/__editable__.*``: a module added since the last ``make install`` would fail its
imports with a bare ``ModuleNotFoundError``, so the session stops first and says why.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["e2e.cluster.fixtures", "pytester"]

ROOT = Path(__file__).resolve().parent


def unlinked_modules(root: Path = ROOT) -> list[str]:
    """Source modules of the components that the editable install's link tree lacks; empty
    when there is no strict editable install to check (a wheel, or none)."""
    trees = sorted(root.glob("build/__editable__.*/sluice"))
    if not trees:
        return []
    linked = {path.relative_to(trees[-1]) for path in trees[-1].rglob("*.py")}
    return sorted(
        str(source.relative_to(root))
        for component in (tree.name for tree in trees[-1].iterdir() if tree.is_dir())
        for source in (root / component).rglob("*.py")
        if "__pycache__" not in source.parts and source.relative_to(root) not in linked
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop at once when the install is older than the source tree."""
    missing = unlinked_modules()
    if missing:
        pytest.exit(
            f"{', '.join(missing)} not in the editable install yet: run `make install`",
            returncode=4,
        )
