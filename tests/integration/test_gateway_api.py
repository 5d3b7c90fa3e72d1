"""The Gateway API routes the operator renders, as a real API server takes them.

The Gateway API's standard channel is installed from its Go module (``e2e.cluster.gateway_api``);
the HTTPRoute and GRPCRoute that ``sluice.operator.gateway`` renders for a canary rollout with
a header-matched variant and a mirror are applied with server-side apply, as the operator
applies its children, and read back whole: the schema and its validation rules accept them
and prune nothing. A route with a deliberate mistake is refused. No Gateway implementation
runs here, so nothing proves that traffic follows the routes (docs/gateway-api.md).

The first tests need no cluster: they read the manifests as ``install`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, dynamic
from kubernetes.dynamic.exceptions import UnprocessibleEntityError
from sluice.contracts.routes import Mirror
from sluice.operator import gateway, routing
from sluice.operator.spec import InferenceService, parse

from e2e.cluster import gateway_api
from e2e.cluster.client import Cluster

from .support import Isvcs, isvc_body

FIELD_MANAGER = "sluice-test"


def crd(name: str, *, conditions: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "status": {"conditions": conditions or []},
    }


def test_manifests_are_every_document_of_the_channel_in_file_order(tmp_path: Path) -> None:
    channel = tmp_path / gateway_api.CHANNEL_DIR
    channel.mkdir(parents=True)
    (channel / "b_routes.yaml").write_text(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
        "metadata: {name: routes.example}\n"
    )
    (channel / "a_policy.yaml").write_text(
        "---\napiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicy\n"
        "metadata: {name: policy}\n---\n"
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicyBinding\n"
        "metadata: {name: policy}\n"
    )
    (channel / "kustomization.yml").write_text("resources: []\n")
    objects = gateway_api.manifests(tmp_path)
    assert [obj["kind"] for obj in objects] == [
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "CustomResourceDefinition",
    ]
    assert gateway_api.crd_names(objects) == ["routes.example"]


def test_a_module_without_the_channel_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no manifests"):
        gateway_api.manifests(tmp_path)


def test_established_reads_the_condition() -> None:
    assert gateway_api.established(crd("a", conditions=[{"type": "Established", "status": "True"}]))
    assert not gateway_api.established(
        crd("a", conditions=[{"type": "Established", "status": "False"}])
    )
    assert not gateway_api.established(
        crd("a", conditions=[{"type": "NamesAccepted", "status": "True"}])
    )
    assert not gateway_api.established({"metadata": {"name": "a"}})


@pytest.fixture(scope="session")
def gateway_crds(installed: Cluster, api: client.ApiClient) -> list[str]:
    """The Gateway API's standard channel, beside Sluice's own CRD."""
    return gateway_api.install(api, log=lambda message: None)


@pytest.fixture
def resources(api: client.ApiClient, gateway_crds: list[str]) -> dynamic.DynamicClient:
    """A client for any kind, made once the Gateway API's kinds are discoverable."""
    return dynamic.DynamicClient(api)


def canary_isvc(api: client.ApiClient, namespace: str) -> InferenceService:
    """An InferenceService created in ``namespace`` (so its routes' owner exists): a canary
    rollout, variant ``b`` taken by a header, variant ``shadow`` mirrored, routed through a
    Gateway. No operator runs: nothing acts on it."""
    body = isvc_body(
        "canary",
        rollout={"strategy": "Canary"},
        variants=[
            {"name": "b", "match": [{"header": {"name": "x-variant", "value": "b"}}]},
            {"name": "shadow"},
        ],
        traffic={
            "provider": "GatewayAPI",
            "gateway": {"name": "public", "sectionName": "http"},
            "mirror": {"variant": "shadow", "percent": 25},
        },
    )
    return parse(Isvcs(api, namespace).create(body))


def apply(
    resources: dynamic.DynamicClient, route: dict[str, Any], *, dry_run: bool = False
) -> dict[str, Any]:
    kind = resources.resources.get(api_version=route["apiVersion"], kind=route["kind"])
    applied = resources.server_side_apply(
        kind,
        body=route,
        field_manager=FIELD_MANAGER,
        dry_run="All" if dry_run else None,
    )
    found: dict[str, Any] = applied.to_dict()
    return found


def contains(stored: Any, rendered: Any) -> bool:
    """Whether ``stored`` holds everything ``rendered`` says, the server's defaults aside."""
    if isinstance(rendered, dict):
        return isinstance(stored, dict) and all(
            key in stored and contains(stored[key], value) for key, value in rendered.items()
        )
    if isinstance(rendered, list):
        return (
            isinstance(stored, list)
            and len(stored) == len(rendered)
            and all(contains(s, r) for s, r in zip(stored, rendered, strict=True))
        )
    return bool(stored == rendered)


def test_rendered_routes_are_accepted_as_rendered(
    api: client.ApiClient, namespace: str, resources: dynamic.DynamicClient
) -> None:
    isvc = canary_isvc(api, namespace)
    table = routing.route_table(isvc, 10)
    matched, default = table.routes
    assert matched.match is not None
    assert isinstance(default.mirror, Mirror)
    rendered = gateway.routes(isvc, table)
    assert [route["kind"] for route in rendered] == ["HTTPRoute", "GRPCRoute"]
    for route in rendered:
        apply(resources, route)
        kind = resources.resources.get(api_version=route["apiVersion"], kind=route["kind"])
        stored = kind.get(name=isvc.name, namespace=namespace).to_dict()
        assert contains(stored["spec"], route["spec"]), (route["kind"], stored["spec"])
        assert stored["metadata"]["ownerReferences"][0]["uid"] == isvc.uid
        # Applied again unchanged, as every resync of the operator does: nothing is written.
        again = apply(resources, route)
        assert again["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]


def test_a_wrong_route_is_refused(
    api: client.ApiClient, namespace: str, resources: dynamic.DynamicClient
) -> None:
    isvc = canary_isvc(api, namespace)
    route = gateway.http_route(isvc, routing.route_table(isvc, 10))
    # The right one passes a dry run, so the refusal below is the mistake's alone.
    apply(resources, route, dry_run=True)
    backend = route["spec"]["rules"][-1]["backendRefs"][0]
    del backend["port"]
    with pytest.raises(UnprocessibleEntityError) as refused:
        apply(resources, route, dry_run=True)
    assert "Must have port for Service reference" in str(refused.value)
    kind = resources.resources.get(api_version=route["apiVersion"], kind=route["kind"])
    assert kind.get(namespace=namespace).to_dict()["items"] == []
