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
        "Canary": ".status.rollout.canaryWeight",
        "Age": ".metadata.creationTimestamp",
    }
    canary = next(c for c in version["additionalPrinterColumns"] if c["name"] == "Canary")
    assert (canary["type"], canary.get("priority", 0)) == ("integer", 0)


def test_enums_match_the_parser(schema: dict[str, Any]) -> None:
    assert tuple(at(schema, "spec.runtime.engine")["enum"]) == spec.ENGINES
    assert tuple(at(schema, "spec.model.format")["enum"]) == spec.FORMATS
    assert tuple(
        at(schema, "spec.runtime.env")["items"]["properties"]["valueFrom"]["properties"]
    ) == (spec.KEY_REF_KINDS)
    assert tuple(at(schema, "spec.rollout.strategy")["enum"]) == spec.ROLLOUT_STRATEGIES
    assert tuple(at(schema, "spec.traffic.provider")["enum"]) == spec.TRAFFIC_PROVIDERS
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
    rollout = defaults.rollout
    assert at(schema, "spec.rollout.strategy")["default"] == rollout.strategy
    assert at(schema, "spec.rollout.paused")["default"] == rollout.paused
    canary = at(schema, "spec.rollout.canary")["properties"]
    assert tuple(canary["steps"]["default"]) == rollout.canary.steps
    assert canary["stepSeconds"]["default"] == rollout.canary.step_seconds
    assert canary["readyDeadlineSeconds"]["default"] == rollout.canary.ready_deadline_seconds
    analysis = canary["analysis"]["properties"]
    assert analysis["minRequests"]["default"] == rollout.canary.analysis.min_requests
    assert analysis["maxErrorRate"]["default"] == rollout.canary.analysis.max_error_rate
    assert "default" not in analysis["maxP99LatencySeconds"]
    assert rollout.canary.analysis.max_p99_latency_seconds is None
    assert analysis["failureLimit"]["default"] == rollout.canary.analysis.failure_limit
    assert analysis["deadlineSeconds"]["default"] == rollout.canary.analysis.deadline_seconds
    assert at(schema, "spec.traffic.provider")["default"] == defaults.traffic.provider
    assert at(schema, "spec.traffic.mirror.percent")["default"] == spec.MirrorSpec("b").percent


def variant_schema(schema: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = at(schema, "spec.variants")["items"]
    return found


def test_variant_defaults_match_the_parser(schema: dict[str, Any]) -> None:
    body = {
        "metadata": {"name": "x", "namespace": "y"},
        "spec": {"model": {"uri": "/m"}, "variants": [{"name": "b"}]},
    }
    (variant,) = spec.parse(body).variants
    props = variant_schema(schema)["properties"]
    assert (props["weight"]["default"], props["replicas"]["default"]) == (
        variant.weight,
        variant.replicas,
    )


def test_variant_overrides_carry_no_defaults(schema: dict[str, Any]) -> None:
    """A default inside an override would replace the main model's value of that field."""
    overrides = variant_schema(schema)["properties"]
    assert set(spec.VARIANT_OVERRIDES) <= set(overrides)
    for name in spec.VARIANT_OVERRIDES:
        defaulted = [path for path, node in fields(overrides[name], name) if "default" in node]
        assert defaulted == [], name


def test_variant_overrides_are_fields_of_the_main_model(schema: dict[str, Any]) -> None:
    overrides = variant_schema(schema)["properties"]
    for name in spec.VARIANT_OVERRIDES:
        main = {path for path, _ in fields(at(schema, f"spec.{name}"))}
        assert {path for path, _ in fields(overrides[name])} <= main, name


def test_variant_names_match_the_parser(schema: dict[str, Any]) -> None:
    name = variant_schema(schema)["properties"]["name"]
    (reserved,) = name["x-kubernetes-validations"]
    assert reserved["rule"] == "!(self in [{}])".format(
        ", ".join(f"'{n}'" for n in spec.RESERVED_VARIANT_NAMES)
    )
    assert name["maxLength"] == spec.MAX_CHILD_NAME_LENGTH
    assert "63 characters" in name["description"]
    budget = [r["rule"] for r in schema["x-kubernetes-validations"] if "spec.variants" in r["rule"]]
    assert len(budget) == 1
    assert f"<= {spec.MAX_CHILD_NAME_LENGTH}" in budget[0]


def test_header_and_cookie_names_match_the_parser(schema: dict[str, Any]) -> None:
    match = variant_schema(schema)["properties"]["match"]["items"]["properties"]
    sticky = at(schema, "spec.traffic.stickyBy")["properties"]
    assert match["header"]["properties"]["name"]["pattern"] == spec.HEADER_NAME_RE.pattern
    assert sticky["header"]["pattern"] == spec.HEADER_NAME_RE.pattern
    assert match["cookie"]["properties"]["name"]["pattern"] == spec.COOKIE_NAME_RE.pattern
    assert sticky["cookie"]["pattern"] == spec.COOKIE_NAME_RE.pattern


def test_limits_match_the_parser(schema: dict[str, Any]) -> None:
    assert at(schema, "spec.resources.gpus")["maximum"] == spec.MAX_GPUS
    assert at(schema, "spec.replicas")["maximum"] == spec.MAX_REPLICAS
    assert f"<= {spec.MAX_NAME_LENGTH}" in schema["x-kubernetes-validations"][0]["rule"]
    assert at(schema, "spec.variants")["maxItems"] == spec.MAX_VARIANTS
    assert variant_schema(schema)["properties"]["replicas"]["maximum"] == spec.MAX_REPLICAS
    assert variant_schema(schema)["properties"]["match"]["maxItems"] == spec.MAX_MATCHES
    canary = at(schema, "spec.rollout.canary")["properties"]
    assert canary["steps"]["maxItems"] == spec.MAX_CANARY_STEPS
    analysis = canary["analysis"]["properties"]
    seconds = [
        canary["stepSeconds"],
        canary["readyDeadlineSeconds"],
        analysis["deadlineSeconds"],
    ]
    assert {node["maximum"] for node in seconds} == {spec.MAX_ROLLOUT_SECONDS}
    assert analysis["minRequests"]["maximum"] == spec.MAX_MIN_REQUESTS
    assert analysis["failureLimit"]["maximum"] == spec.MAX_FAILURE_LIMIT
    assert analysis["maxP99LatencySeconds"]["maximum"] == spec.MAX_P99_SECONDS
