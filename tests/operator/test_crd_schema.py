"""The CRD file itself: documented everywhere, and in step with the operator's parser."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sluice.operator import pods, spec

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "inferenceservices.serving.sluice.dev.yaml"


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CRD_FILE.read_text())
    return loaded


@pytest.fixture(scope="module")
def schema(crd: dict[str, Any]) -> dict[str, Any]:
    (version,) = crd["spec"]["versions"]
    found: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return found


def fields(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every field below ``node`` with its dotted path (list items and map values included)."""
    for name, child in node.get("properties", {}).items():
        yield f"{path}.{name}".lstrip("."), child
        yield from fields(child, f"{path}.{name}")
    if "items" in node:
        yield f"{path}[]", node["items"]
        yield from fields(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield f"{path}{{}}", node["additionalProperties"]
        yield from fields(node["additionalProperties"], f"{path}{{}}")


def at(schema: dict[str, Any], path: str) -> dict[str, Any]:
    node = schema
    for name in path.split("."):
        node = node["properties"][name]
    return node


def test_names_and_version(crd: dict[str, Any]) -> None:
    assert crd["metadata"]["name"] == f"{spec.PLURAL}.{spec.GROUP}"
    assert crd["spec"]["group"] == spec.GROUP
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"] == {
        "kind": spec.KIND,
        "listKind": f"{spec.KIND}List",
        "plural": spec.PLURAL,
        "singular": "inferenceservice",
        "shortNames": ["infsvc"],
        "categories": ["sluice"],
    }
    (version,) = crd["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == (spec.VERSION, True, True)
    assert version["subresources"] == {"status": {}}


def test_every_field_has_a_description(schema: dict[str, Any]) -> None:
    undocumented = [
        path
        for path, node in fields(schema)
        if path != "metadata" and not node.get("description", "").strip()
    ]
    assert undocumented == []
    assert schema["description"]


def test_printer_columns(crd: dict[str, Any]) -> None:
    (version,) = crd["spec"]["versions"]
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Ready": '.status.conditions[?(@.type=="Ready")].status',
        "URL": ".status.url",
        "Replicas": ".status.replicasSummary",
        "GPUs": ".status.gpus",
        "Provider": ".status.provider",
        "Engine": ".spec.runtime.engine",
        "Model": ".spec.model.uri",
        "Age": ".metadata.creationTimestamp",
    }


def test_enums_match_the_parser(schema: dict[str, Any]) -> None:
    assert tuple(at(schema, "spec.runtime.engine")["enum"]) == spec.ENGINES
    assert tuple(at(schema, "spec.model.format")["enum"]) == spec.FORMATS
    assert tuple(
        at(schema, "spec.runtime.env")["items"]["properties"]["valueFrom"]["properties"]
    ) == (spec.KEY_REF_KINDS)
    # Every engine has a default image of its own.
    assert len({pods.DEFAULT_IMAGES.engine(engine) for engine in spec.ENGINES}) == len(spec.ENGINES)


def test_defaults_match_the_parser(schema: dict[str, Any]) -> None:
    defaults = spec.parse(
        {"metadata": {"name": "x", "namespace": "y"}, "spec": {"model": {"uri": "/m"}}}
    )
    assert at(schema, "spec.model.format")["default"] == defaults.model.format
    assert at(schema, "spec.runtime.engine")["default"] == defaults.runtime.engine
    assert at(schema, "spec.runtime.batching.maxBatchSize")["default"] == (
        defaults.runtime.batching.max_batch_size
    )
    assert at(schema, "spec.runtime.batching.maxQueueDelayMicroseconds")["default"] == (
        defaults.runtime.batching.max_queue_delay_us
    )
    assert at(schema, "spec.resources.gpus")["default"] == defaults.resources.gpus
    assert at(schema, "spec.replicas")["default"] == defaults.replicas


def test_limits_match_the_parser(schema: dict[str, Any]) -> None:
    assert at(schema, "spec.resources.gpus")["maximum"] == spec.MAX_GPUS
    assert at(schema, "spec.replicas")["maximum"] == spec.MAX_REPLICAS
    assert f"<= {spec.MAX_NAME_LENGTH}" in schema["x-kubernetes-validations"][0]["rule"]
