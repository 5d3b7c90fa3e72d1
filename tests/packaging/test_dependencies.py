"""Every third-party distribution a component imports is declared for it in pyproject.toml.

Each image installs one component's extra (docs/development.md), so an import that only the
development virtualenv happens to satisfy breaks that image and no other test. The imports of
every module are read with ``ast`` (imports inside functions too), each top-level name is
mapped to the installed distribution that provides it (``importlib.metadata``), and that
distribution must be required by the base install or by the component's extras.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# The extras each component's modules may rely on, besides the base install.
EXTRAS_OF = {
    "contracts": [],
    "operator": ["operator"],
    # fetching.py imports boto3 only for s3:// URIs.
    "runtime": ["runtime", "s3"],
    "router": ["router"],
}
# The onnxruntime builds: alternatives, one module name, never installed side by side.
ONNXRUNTIME_BUILDS = {"onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"}


def canonical(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(requirements: list[str]) -> set[str]:
    """The distribution names of PEP 508 requirement strings."""
    found = set()
    for requirement in requirements:
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
        assert match, requirement
        found.add(canonical(match.group()))
    return found


def declared(extras: list[str]) -> set[str]:
    """What the base install and ``extras`` require."""
    optional = PYPROJECT["project"]["optional-dependencies"]
    requirements = PYPROJECT["project"]["dependencies"]
    return requirement_names([*requirements, *(r for extra in extras for r in optional[extra])])


def components() -> tuple[str, ...]:
    """The component folders setup.py ships, read from its ``COMPONENTS``."""
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "COMPONENTS":
            value: tuple[str, ...] = ast.literal_eval(node.value)
            return value
    raise AssertionError("setup.py defines no COMPONENTS")


def third_party_imports(folder: Path) -> dict[str, set[Path]]:
    """Top-level names imported by the modules under ``folder`` that are neither the standard
    library nor sluice, each with the files importing it."""
    found: dict[str, set[Path]] = {}
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in {"sluice", "__future__"}:
                    found.setdefault(top, set()).add(path.relative_to(REPO))
    return found


def test_every_component_has_its_extras_named_here() -> None:
    assert set(components()) == set(EXTRAS_OF)


@pytest.mark.parametrize("component", sorted(EXTRAS_OF))
def test_every_imported_distribution_is_declared(component: str) -> None:
    providers = importlib.metadata.packages_distributions()
    allowed = declared(EXTRAS_OF[component])
    undeclared = {}
    for name, files in third_party_imports(REPO / component).items():
        dists = {canonical(dist) for dist in providers.get(name, [])}
        # One onnxruntime build is installed; whichever it is, the extra may declare another.
        if dists & ONNXRUNTIME_BUILDS:
            dists = ONNXRUNTIME_BUILDS
        if not dists & allowed:
            undeclared[name] = (sorted(dists), sorted(map(str, files)))
    assert undeclared == {}


def test_the_gpu_runtime_differs_from_the_cpu_runtime_only_in_its_onnxruntime_build() -> None:
    optional = PYPROJECT["project"]["optional-dependencies"]
    cpu = [r for r in optional["runtime"] if not r.startswith("onnxruntime")]
    gpu = [r for r in optional["gpu"] if not r.startswith("onnxruntime")]
    assert cpu == gpu
    assert requirement_names(optional["runtime"]) - requirement_names(cpu) == {"onnxruntime"}
    assert requirement_names(optional["gpu"]) - requirement_names(gpu) == {"onnxruntime-gpu"}


def test_no_extra_brings_more_than_one_onnxruntime_build() -> None:
    for extra, requirements in PYPROJECT["project"]["optional-dependencies"].items():
        builds = requirement_names(requirements) & ONNXRUNTIME_BUILDS
        assert len(builds) <= 1, (extra, builds)
    assert not requirement_names(PYPROJECT["project"]["dependencies"]) & ONNXRUNTIME_BUILDS
