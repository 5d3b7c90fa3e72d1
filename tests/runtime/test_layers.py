"""The runtime's layers: transport adapters -> data plane -> model and batcher, never back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import sluice.runtime

RUNTIME = Path(sluice.runtime.__file__).parent

# module -> runtime modules it must not import
FORBIDDEN = {
    "rest": {"batching", "providers", "model", "grpc_service", "app"},
    "rest_codec": {"batching", "providers", "model", "rest", "grpc_service", "app"},
    "grpc_service": {"batching", "providers", "model", "rest", "rest_codec", "app"},
    "dataplane": {"rest", "rest_codec", "grpc_service", "app"},
    "batching": {"dataplane", "rest", "rest_codec", "grpc_service", "app"},
    "model": {"dataplane", "batching", "rest", "rest_codec", "grpc_service", "app"},
}


def runtime_imports(module: str) -> set[str]:
    tree = ast.parse((RUNTIME / f"{module}.py").read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {
        name.removeprefix("sluice.runtime.") for name in names if name.startswith("sluice.runtime.")
    }


@pytest.mark.parametrize("module", sorted(FORBIDDEN))
def test_imports_point_one_way(module: str) -> None:
    assert not runtime_imports(module) & FORBIDDEN[module]


@pytest.mark.parametrize("module", ["rest", "rest_codec", "grpc_service"])
def test_adapters_do_not_touch_onnxruntime(module: str) -> None:
    source = (RUNTIME / f"{module}.py").read_text()
    assert "onnxruntime" not in source
