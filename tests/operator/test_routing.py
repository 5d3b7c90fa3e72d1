"""Unit tests for sluice.operator.routing and the children of split traffic: the route table
a spec implies, and what the builders render around it."""

from __future__ import annotations

from typing import Any

import pytest
from sluice.contracts import routes
from sluice.contracts.labels import LABEL_COMPONENT
from sluice.operator import builders, router_objects, routing
from sluice.operator.pods import Images
from sluice.operator.spec import SpecError

from tests.operator.test_builders import make_isvc

AB = {
    "variants": [
        {
            "name": "b",
            "weight": 30,
            "model": {"uri": "https://models.example/b.onnx"},
            "match": [
                {"header": {"name": "x-cohort", "value": "beta"}},
                {"cookie": {"name": "tier", "value": "gold"}},
            ],
        },
        {"name": "shadow", "model": {"uri": "https://models.example/s.onnx"}},
    ],
    "traffic": {"stickyBy": {"cookie": "session"}, "mirror": {"variant": "shadow", "percent": 5}},
}
CANARY = {"rollout": {"strategy": "Canary"}}


def weights(table: routes.RouteTable) -> dict[str, int]:
    return {b.variant: b.weight for b in table.routes[-1].backends}


def test_variants_get_a_route_per_match_then_share_the_rest() -> None:
    table = routing.route_table(make_isvc(AB))
    matched, cookie, default = table.routes
    assert matched.match is not None
    assert matched.match.headers[0].exact == "beta"
    assert cookie.match is not None
    assert cookie.match.cookies[0].value == "gold"
    assert [b.service for b in matched.backends] == ["resnet-b"]
    assert weights(table) == {"main": 70, "b": 30}
    assert default.mirror == routes.Mirror("shadow", "resnet-shadow", 5)
    assert table.sticky == routes.Sticky(cookie="session")
    assert table.services()["main"] == "resnet-predictor"


@pytest.mark.parametrize(
    ("canary", "expected"),
    [(None, {"main": 70, "b": 30}), (0, {"main": 70, "canary": 0, "b": 30}),
     (50, {"main": 35, "canary": 35, "b": 30}), (1, {"main": 69, "canary": 1, "b": 30})],
)  # fmt: skip
def test_a_canary_takes_its_share_of_the_main_models_traffic(
    canary: int | None, expected: dict[str, int]
) -> None:
    assert weights(routing.route_table(make_isvc(AB), canary)) == expected


def test_a_mirror_to_a_weighted_variant_is_refused() -> None:
    spec: dict[str, Any] = {**AB, "variants": [{**AB["variants"][0], "name": "shadow"}]}
    with pytest.raises(SpecError, match=r"spec.traffic.mirror.variant"):
        routing.route_table(make_isvc(spec))


def test_the_router_stands_in_front_only_when_traffic_is_split() -> None:
    assert not routing.router_in_front(make_isvc())
    assert routing.router_in_front(make_isvc(AB))
    assert routing.router_in_front(make_isvc(CANARY))
    gateway = {**AB, "traffic": {"provider": "GatewayAPI", "gateway": {"name": "web"}}}
    assert not routing.router_in_front(make_isvc(gateway))
    assert routing.splits_traffic(make_isvc(gateway))


def kinds(children: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(c["kind"], c["metadata"]["name"]) for c in children]


def test_no_split_keeps_todays_shape() -> None:
    children = builders.desired_children(make_isvc(), plan=builders.Plan())
    assert kinds(children) == [("Deployment", "resnet-predictor"), ("Service", "resnet")]


def test_a_split_renders_variants_their_services_and_the_router_before_the_stable_service() -> None:
    isvc = make_isvc(AB)
    plan = builders.Plan(router=True, service_to_router=True)
    children = builders.desired_children(isvc, Images(router="local/router:1"), plan)
    assert kinds(children) == [
        ("Deployment", "resnet-predictor"),
        ("Deployment", "resnet-b"),
        ("Deployment", "resnet-shadow"),
        ("Service", "resnet-predictor"),
        ("Service", "resnet-b"),
        ("Service", "resnet-shadow"),
        ("ServiceAccount", "resnet-router"),
        ("Role", "resnet-router"),
        ("RoleBinding", "resnet-router"),
        ("ConfigMap", "resnet-router"),
        ("Deployment", "resnet-router"),
        ("Service", "resnet"),
    ]
    by_name = {(c["kind"], c["metadata"]["name"]): c for c in children}
    stable = by_name[("Service", "resnet")]
    assert stable["spec"]["selector"][LABEL_COMPONENT] == "router"
    table = routes.from_json(by_name[("ConfigMap", "resnet-router")]["data"]["routes.json"])
    assert table == routing.route_table(isvc)
    pod = by_name[("Deployment", "resnet-router")]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "resnet-router"
    assert pod["containers"][0]["image"] == "local/router:1"
    # The variant's override, the main model's everything else.
    b = by_name[("Deployment", "resnet-b")]["spec"]["template"]["spec"]
    assert any("b.onnx" in arg for c in b["initContainers"] for arg in c["command"])


def test_the_routers_role_reads_exactly_its_table_and_the_endpoints() -> None:
    role = router_objects.role(make_isvc(AB))
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["resnet-router"],
            "verbs": ["get", "list", "watch"],
        },
        {
            "apiGroups": ["discovery.k8s.io"],
            "resources": ["endpointslices"],
            "verbs": ["list", "watch"],
        },
    ]


def test_a_rollout_keeps_the_stable_template_and_sizes_the_canary() -> None:
    isvc = make_isvc({**CANARY, "replicas": 8, "model": {"uri": "https://models.example/v2.onnx"}})
    held = {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "old"}]}}
    plan = builders.Plan(stable_template=held, canary_replicas=1, canary_weight=10, router=True)
    children = {
        (c["kind"], c["metadata"]["name"]): c for c in builders.desired_children(isvc, plan=plan)
    }
    assert children[("Deployment", "resnet-predictor")]["spec"]["template"] == held
    canary = children[("Deployment", "resnet-canary")]
    assert canary["spec"]["replicas"] == 1
    assert "v2.onnx" in str(canary["spec"]["template"]["spec"])
    table = routes.from_json(children[("ConfigMap", "resnet-router")]["data"]["routes.json"])
    assert weights(table) == {"main": 90, "canary": 10}
    # The router is not serving yet: the stable Service stays on the main model's pods.
    assert children[("Service", "resnet")]["spec"]["selector"][LABEL_COMPONENT] == "predictor"


def test_a_promotion_rolls_the_stable_pods_in_place() -> None:
    isvc = make_isvc({**CANARY, "replicas": 4})
    plan = builders.Plan(canary_replicas=2, canary_weight=50, stable_replaces_in_place=True)
    (stable, *_) = builders.desired_children(isvc, plan=plan)
    assert stable["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": 0}
    (usual, *_) = builders.desired_children(isvc)
    assert usual["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
