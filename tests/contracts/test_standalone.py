"""sluice.contracts stands alone: every module imports only the standard library and itself.

import-linter forbids imports of the rest of sluice; this also keeps third-party packages
out, so any part, image or tool can import the contracts with nothing else installed.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
MODULES = sorted(CONTRACTS.glob("*.py"))


def imported(path: Path) -> set[str]:
    """The modules a source file imports, by absolute name."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            # A relative import stays inside the package.
            names.add("sluice.contracts" if node.level else str(node.module))
    return names


def test_every_module_is_seen() -> None:
    assert {path.stem for path in MODULES} >= {
        "api",
        "labels",
        "ports",
        "metrics",
        "flags",
        "routes",
    }


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.stem)
def test_imports_only_the_standard_library(path: Path) -> None:
    outside = {
        name
        for name in imported(path)
        if name.partition(".")[0] not in sys.stdlib_module_names
        and name != "sluice.contracts"
        and not name.startswith("sluice.contracts.")
    }
    assert outside == set()
