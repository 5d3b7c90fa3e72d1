"""Unit tests for sluice.operator.gateway: the HTTPRoute and GRPCRoute of a route table."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
from sluice.contracts import ports
from sluice.contracts.routes import (
    VARIANT_HEADER,
    Backend,
    CookieMatch,
    HeaderMatch,
    Match,
    Mirror,
    Route,
    RouteTable,
    Sticky,
)
from sluice.operator import gateway, routing
from sluice.operator.meta import child_labels, owner_reference
from sluice.operator.spec import InferenceService, SpecError, parse
from sluice.runtime import grpc_service

ANY_PATH = {"path": {"type": "PathPrefix", "value": "/"}}
INFERENCE_CALLS = {"method": {"type": "Exact", "service": gateway.GRPC_SERVICE}}


def make_isvc(gateway_spec: dict[str, Any] | None = None, **spec: Any) -> InferenceService:
    """InferenceService ``resnet`` in namespace ``models``, routed by Gateway ``public``
    unless ``gateway_spec`` names another, with ``spec`` merged in."""
    traffic = {"provider": "GatewayAPI", "gateway": gateway_spec or {"name": "public"}}
    return parse(
        {
            "apiVersion": "serving.sluice.dev/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": "resnet", "namespace": "models", "uid": "uid-1", "generation": 1},
            "spec": {
                "model": {"uri": "https://models.example/resnet.onnx"},
                "traffic": {**traffic, **spec.pop("traffic", {})},
                **spec,
            },
        }
    )


def ab_isvc() -> InferenceService:
    """Variant ``b`` taken by a header, a header regex or a cookie; variant ``shadow``
    mirrored a quarter of the rest; a canary rollout."""
    return make_isvc(
        {"name": "public", "namespace": "edge", "sectionName": "http"},
        rollout={"strategy": "Canary"},
        variants=[
            {
                "name": "b",
                "match": [
                    {"header": {"name": "x-variant", "value": "b"}},
                    {"header": {"name": "x-user", "regex": "tester-.*"}},
                    {"cookie": {"name": "group", "value": "beta"}},
                ],
            },
            {"name": "shadow"},
        ],
        traffic={"mirror": {"variant": "shadow", "percent": 25}},
    )


def table(
    backends: tuple[Backend, ...], *routes: Route, mirror: Mirror | None = None
) -> RouteTable:
    """A table of ``routes`` ending in a catch-all to ``backends``."""
    default = Route("default", backends, mirror=mirror)
    return RouteTable("models", "resnet", (*routes, default))


MAIN_ONLY = (Backend("main", "resnet-predictor", 100),)


def test_routes_are_an_httproute_and_a_grpcroute_of_the_kinds_declared() -> None:
    isvc = make_isvc()
    found = gateway.routes(isvc, table(MAIN_ONLY))
    assert [(r["apiVersion"], r["kind"]) for r in found] == list(gateway.KINDS)
    assert gateway.KINDS == (
        ("gateway.networking.k8s.io/v1", "HTTPRoute"),
        ("gateway.networking.k8s.io/v1", "GRPCRoute"),
    )


@pytest.mark.parametrize("render", [gateway.http_route, gateway.grpc_route])
def test_route_is_named_labelled_and_owned_like_every_child(render: Any) -> None:
    isvc = make_isvc()
    meta = render(isvc, table(MAIN_ONLY))["metadata"]
    assert meta["name"] == "resnet"
    assert meta["namespace"] == "models"
    assert child_labels(isvc).items() <= meta["labels"].items()
    assert meta["ownerReferences"] == [owner_reference(isvc)]


def test_parent_is_the_gateway_in_the_isvc_namespace_by_default() -> None:
    route = gateway.http_route(make_isvc(), table(MAIN_ONLY))
    assert route["spec"]["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": "public",
            "namespace": "models",
        }
    ]


def test_parent_names_the_gateway_namespace_and_listener_the_spec_gives() -> None:
    isvc = make_isvc({"name": "public", "namespace": "edge", "sectionName": "http"})
    for route in gateway.routes(isvc, table(MAIN_ONLY)):
        (parent,) = route["spec"]["parentRefs"]
        assert (parent["name"], parent["namespace"], parent["sectionName"]) == (
            "public",
            "edge",
            "http",
        )


def test_a_missing_gateway_is_a_spec_error() -> None:
    isvc = make_isvc()
    isvc = dataclasses.replace(isvc, traffic=dataclasses.replace(isvc.traffic, gateway_name=None))
    with pytest.raises(SpecError) as raised:
        gateway.http_route(isvc, table(MAIN_ONLY))
    assert raised.value.field == "spec.traffic.gateway"


def test_canary_weights_go_to_the_variant_services_weight_zero_kept() -> None:
    isvc = make_isvc(rollout={"strategy": "Canary"})
    for canary_weight, expected in ((0, [100, 0]), (10, [90, 10])):
        rules = gateway.http_route(isvc, routing.route_table(isvc, canary_weight))["spec"]["rules"]
        (rule,) = rules
        assert rule["matches"] == [ANY_PATH]
        refs = rule["backendRefs"]
        assert [(r["name"], r["port"], r["weight"]) for r in refs] == [
            ("resnet-predictor", ports.SERVICE_HTTP_PORT, expected[0]),
            ("resnet-canary", ports.SERVICE_HTTP_PORT, expected[1]),
        ]


def test_every_backend_names_its_variant_in_the_response() -> None:
    isvc = make_isvc(rollout={"strategy": "Canary"})
    (rule,) = gateway.http_route(isvc, routing.route_table(isvc, 10))["spec"]["rules"]
    filters = [ref["filters"] for ref in rule["backendRefs"]]
    assert filters == [
        [
            {
                "type": "ResponseHeaderModifier",
                "responseHeaderModifier": {"set": [{"name": VARIANT_HEADER, "value": variant}]},
            }
        ]
        for variant in ("main", "canary")
    ]


def test_matches_keep_the_table_order_and_a_variants_entries_share_one_rule() -> None:
    isvc = ab_isvc()
    rules = gateway.http_route(isvc, routing.route_table(isvc, 0))["spec"]["rules"]
    assert len(rules) == 2
    matched, default = rules
    assert matched["matches"] == [
        {**ANY_PATH, "headers": [{"type": "Exact", "name": "x-variant", "value": "b"}]},
        {
            **ANY_PATH,
            "headers": [{"type": "RegularExpression", "name": "x-user", "value": "tester-.*"}],
        },
        {
            **ANY_PATH,
            "headers": [
                {
                    "type": "RegularExpression",
                    "name": "cookie",
                    "value": gateway.cookie_regex("group", "beta"),
                }
            ],
        },
    ]
    assert [(r["name"], r["weight"]) for r in matched["backendRefs"]] == [("resnet-b", 100)]
    assert "filters" not in matched
    assert default["matches"] == [ANY_PATH]
    assert [(r["name"], r["weight"]) for r in default["backendRefs"]] == [
        ("resnet-predictor", 100),
        ("resnet-canary", 0),
        ("resnet-b", 0),
    ]


def test_routes_that_do_different_things_stay_apart_in_order() -> None:
    to_b = (Backend("b", "resnet-b", 100),)
    to_c = (Backend("c", "resnet-c", 100),)
    first = Route("first", to_b, match=Match(headers=(HeaderMatch("x-a", exact="1"),)))
    second = Route("second", to_c, match=Match(headers=(HeaderMatch("x-a", exact="2"),)))
    third = Route("third", to_b, match=Match(headers=(HeaderMatch("x-a", exact="3"),)))
    rules = gateway.http_route(make_isvc(), table(MAIN_ONLY, first, second, third))["spec"]
    assert [
        [m["headers"][0]["value"] for m in r["matches"] if "headers" in m] for r in rules["rules"]
    ] == [["1"], ["2"], ["3"], []]


def test_all_conditions_of_a_match_stay_in_one_match() -> None:
    both = Match(headers=(HeaderMatch("x-a", exact="1"),), cookies=(CookieMatch("g", "v"),))
    route = Route("both", (Backend("b", "resnet-b", 100),), match=both)
    rules = gateway.http_route(make_isvc(), table(MAIN_ONLY, route))["spec"]["rules"]
    (match,) = rules[0]["matches"]
    assert [h["name"] for h in match["headers"]] == ["x-a", "cookie"]


def test_a_match_testing_one_header_twice_is_refused() -> None:
    twice = Match(cookies=(CookieMatch("a", "1"), CookieMatch("b", "2")))
    route = Route("twice", (Backend("b", "resnet-b", 100),), match=twice)
    with pytest.raises(ValueError, match="each header once"):
        gateway.http_route(make_isvc(), table(MAIN_ONLY, route))


@pytest.mark.parametrize(
    ("header", "holds"),
    [
        ("group=beta", True),
        ("session=42; group=beta", True),
        ("group=beta; session=42", True),
        ("a=1;group=beta;b=2", True),
        ("group=betamax", False),
        ("subgroup=beta", False),
        ("group=alpha; other=group=beta", False),
        ("session=42", False),
        ("", False),
    ],
)
def test_cookie_regex_holds_exactly_for_that_cookie(header: str, holds: bool) -> None:
    pattern = gateway.cookie_regex("group", "beta")
    assert bool(re.fullmatch(pattern, header)) is holds
    # An implementation that searches rather than fully matches sees the same.
    assert bool(re.search(pattern, header)) is holds


def test_cookie_regex_takes_names_and_values_literally() -> None:
    pattern = gateway.cookie_regex("a.b", "x+y")
    assert re.fullmatch(pattern, "a.b=x+y")
    assert not re.fullmatch(pattern, "aXb=xxy")


def test_mirror_becomes_a_request_mirror_filter_on_the_rule() -> None:
    isvc = ab_isvc()
    http, grpc = gateway.routes(isvc, routing.route_table(isvc, 0))
    for route, port in ((http, ports.SERVICE_HTTP_PORT), (grpc, ports.SERVICE_GRPC_PORT)):
        default = route["spec"]["rules"][-1]
        assert default["filters"] == [
            {
                "type": "RequestMirror",
                "requestMirror": {
                    "backendRef": {"name": "resnet-shadow", "port": port},
                    "percent": 25,
                },
            }
        ]
        assert "resnet-shadow" not in [r["name"] for r in default["backendRefs"]]


@pytest.mark.parametrize(
    ("percent", "share"),
    [
        (100, {"percent": 100}),
        (1, {"percent": 1}),
        (0.5, {"fraction": {"numerator": 1, "denominator": 200}}),
        (12.5, {"fraction": {"numerator": 1, "denominator": 8}}),
        (0.00001, {"fraction": {"numerator": 1, "denominator": 1_000_000}}),
    ],
)
def test_mirror_share_is_a_whole_percent_or_an_exact_fraction(
    percent: float, share: dict[str, Any]
) -> None:
    mirror = Mirror("shadow", "resnet-shadow", percent)
    rules = gateway.http_route(make_isvc(), table(MAIN_ONLY, mirror=mirror))["spec"]["rules"]
    request_mirror = rules[0]["filters"][0]["requestMirror"]
    assert {k: v for k, v in request_mirror.items() if k != "backendRef"} == share


def test_grpc_route_takes_inference_calls_to_the_grpc_ports() -> None:
    isvc = ab_isvc()
    rules = gateway.grpc_route(isvc, routing.route_table(isvc, 10))["spec"]["rules"]
    matched, default = rules
    assert matched["matches"][0] == {
        **INFERENCE_CALLS,
        "headers": [{"type": "Exact", "name": "x-variant", "value": "b"}],
    }
    assert default["matches"] == [INFERENCE_CALLS]
    ports_used = {ref["port"] for rule in rules for ref in rule["backendRefs"]}
    assert ports_used == {ports.SERVICE_GRPC_PORT}


def test_grpc_service_is_the_one_the_runtime_serves() -> None:
    assert gateway.GRPC_SERVICE == grpc_service.SERVICE


def test_sticky_assignment_has_no_gateway_form_and_changes_nothing() -> None:
    plain = table(MAIN_ONLY)
    sticky = dataclasses.replace(plain, sticky=Sticky(cookie="session"))
    isvc = make_isvc()
    assert gateway.routes(isvc, sticky) == gateway.routes(isvc, plain)


def test_more_rules_than_a_route_holds_is_a_spec_error() -> None:
    routes = [
        Route(
            f"r{i}",
            (Backend(f"v{i}", f"resnet-v{i}", 100),),
            match=Match(headers=(HeaderMatch("x-v", exact=str(i)),)),
        )
        for i in range(gateway.MAX_RULES)
    ]
    isvc = make_isvc()
    # One rule per route plus the default: one too many.
    with pytest.raises(SpecError, match="at most 16 rules"):
        gateway.http_route(isvc, table(MAIN_ONLY, *routes))
    assert len(gateway.http_route(isvc, table(MAIN_ONLY, *routes[1:]))["spec"]["rules"]) == 16


def test_more_matches_than_a_route_holds_is_a_spec_error() -> None:
    variants = [
        {
            "name": f"v{i}",
            "match": [{"header": {"name": "x-v", "value": f"{i}-{j}"}} for j in range(16)],
        }
        for i in range(8)
    ]
    isvc = make_isvc(variants=variants)
    # 8 variants of 16 match entries each, plus the default's: 129 matches.
    with pytest.raises(SpecError, match="128 matches"):
        gateway.http_route(isvc, routing.route_table(isvc))
    isvc = make_isvc(variants=variants[:7])
    rules = gateway.http_route(isvc, routing.route_table(isvc))["spec"]["rules"]
    assert sum(len(rule["matches"]) for rule in rules) == 7 * 16 + 1


def test_rendered_matches_share_no_mutable_parts() -> None:
    isvc = ab_isvc()
    route = gateway.http_route(isvc, routing.route_table(isvc, 0))
    first, *others = [m for rule in route["spec"]["rules"] for m in rule["matches"]]
    first["path"]["value"] = "/changed"
    assert all(m["path"] == ANY_PATH["path"] for m in others)
    assert gateway.http_route(isvc, routing.route_table(isvc, 0)) != route
