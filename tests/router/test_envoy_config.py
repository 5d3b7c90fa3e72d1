"""Envoy's configuration from route tables (pure): names, matches, weights, mirror, sticky,
retries, timeouts and the bootstrap's listeners."""

from __future__ import annotations

import re
from pathlib import Path

from sluice.contracts import metrics, ports
from sluice.contracts.routes import (
    CANARY,
    MAIN,
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
from sluice.router import envoy_config, sticky
from sluice.router.endpoints import Endpoint
from sluice.router.envoy_config import Listening

DIR = Path("/run/config")
SPLIT = Route(
    "default",
    (Backend(MAIN, "m-main", 90), Backend(CANARY, "m-canary", 10)),
    mirror=Mirror("shadow", "m-shadow", 12.5),
)
BETA = Route(
    "beta",
    (Backend("beta", "m-beta", 100),),
    Match(headers=(HeaderMatch("x-group", regex="b.*"),), cookies=(CookieMatch("grp", "a.b"),)),
)
TABLE = RouteTable("ns", "m", (BETA, SPLIT), Sticky(header="x-user-id"))
ENDPOINTS = {"m-main": (Endpoint("10.0.0.1", 8080, 8081), Endpoint("10.0.0.2", 8080, 8081))}


def routes(protocol: str = metrics.ROUTER_HTTP) -> list[dict[str, object]]:
    resources = envoy_config.resources(TABLE, ENDPOINTS, DIR)
    found: list[dict[str, object]] = resources.routes[protocol]["virtual_hosts"][0]["routes"]
    return found


def test_one_cluster_per_variant_and_protocol_named_by_the_metrics_contract() -> None:
    resources = envoy_config.resources(TABLE, ENDPOINTS, DIR)
    variants = ("beta", MAIN, CANARY, "shadow")
    names = {metrics.router_cluster(v, p) for v in variants for p in envoy_config.PROTOCOLS}
    assert set(resources.clusters) == names == set(resources.assignments)
    grpc = resources.clusters[metrics.router_cluster(MAIN, metrics.ROUTER_GRPC)]
    assert "typed_extension_protocol_options" in grpc
    assert grpc["lb_policy"] == "LEAST_REQUEST"
    eds = grpc["eds_cluster_config"]["eds_config"]["path_config_source"]
    assert eds == {
        "path": "/run/config/eds_main_grpc.json",
        "watched_directory": {"path": "/run/config"},
    }


def test_endpoints_use_the_port_of_the_protocol_and_missing_services_are_empty() -> None:
    resources = envoy_config.resources(TABLE, ENDPOINTS, DIR)
    grpc = resources.assignments["main_grpc"]["endpoints"][0]["lb_endpoints"]
    assert [e["endpoint"]["address"]["socket_address"] for e in grpc] == [
        {"address": "10.0.0.1", "port_value": 8081},
        {"address": "10.0.0.2", "port_value": 8081},
    ]
    assert resources.assignments["canary_http"]["endpoints"] == []


def test_routes_keep_order_weights_and_name_the_variant() -> None:
    beta, split = routes(metrics.ROUTER_GRPC)
    assert [beta["name"], split["name"]] == ["beta", "default"]
    clusters = split["route"]["weighted_clusters"]["clusters"]  # type: ignore[index]
    assert [(c["name"], c["weight"]) for c in clusters] == [("main_grpc", 90), ("canary_grpc", 10)]
    assert clusters[1]["response_headers_to_add"][0]["header"] == {
        "key": VARIANT_HEADER,
        "value": CANARY,
    }
    assert split["match"] == {"prefix": "/"}


def test_header_and_cookie_matches() -> None:
    headers = routes()[0]["match"]["headers"]  # type: ignore[index]
    assert headers[0] == {"name": "x-group", "string_match": {"safe_regex": {"regex": "b.*"}}}
    cookie = headers[1]["string_match"]["safe_regex"]["regex"]
    assert headers[1]["name"] == "cookie"
    for value, matches in [("grp=a.b", True), ("x=1; grp=a.b; y=2", True), ("grp=axb", False),
                           ("xgrp=a.b", False), ("grp=a.bc", False)]:  # fmt: skip
        assert bool(re.fullmatch(cookie, value)) is matches, value


def test_mirror_fraction_retries_and_timeouts() -> None:
    action = routes()[1]["route"]
    assert action["request_mirror_policies"] == [  # type: ignore[index]
        {
            "cluster": "shadow_http",
            "runtime_fraction": {"default_value": {"numerator": 125_000, "denominator": "MILLION"}},
        }
    ]
    assert action["timeout"] == "0s"  # type: ignore[index]
    assert action["max_stream_duration"] == {"grpc_timeout_header_max": "0s"}  # type: ignore[index]
    retry = action["retry_policy"]  # type: ignore[index]
    assert retry["retry_on"] == "connect-failure,refused-stream,reset-before-request"
    assert retry["num_retries"] == 1
    assert "5xx" not in retry["retry_on"]


def test_sticky_sets_the_hash_header_and_route_metadata() -> None:
    for route in routes():
        action = route["route"]
        assert action["weighted_clusters"]["header_name"] == sticky.HASH_HEADER  # type: ignore[index]
        assert route["metadata"] == {
            "filter_metadata": {"envoy.filters.http.lua": {"header": "x-user-id"}}
        }
    plain = RouteTable("ns", "m", (SPLIT,))
    route = envoy_config.resources(plain, {}, DIR).routes["http"]["virtual_hosts"][0]["routes"][0]
    assert "header_name" not in route["route"]["weighted_clusters"]
    assert "metadata" not in route


def test_bootstrap_listeners_admin_and_sources() -> None:
    config = envoy_config.bootstrap(Listening(), DIR)
    listeners = {x["name"]: x for x in config["static_resources"]["listeners"]}
    port = {n: x["address"]["socket_address"]["port_value"] for n, x in listeners.items()}
    assert port == {
        "http": ports.HTTP_PORT,
        "grpc": ports.GRPC_PORT,
        "sluice_metrics": ports.ROUTER_METRICS_PORT,
    }
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    http = listeners["http"]["filter_chains"][0]["filters"][0]["typed_config"]
    grpc = listeners["grpc"]["filter_chains"][0]["filters"][0]["typed_config"]
    assert (http["codec_type"], grpc["codec_type"]) == ("AUTO", "HTTP2")
    assert [f["name"] for f in http["http_filters"]] == [
        "envoy.filters.http.lua", "envoy.filters.http.router",
    ]  # fmt: skip
    assert [f["name"] for f in grpc["http_filters"]] == [
        "envoy.filters.http.lua", "envoy.filters.http.grpc_stats", "envoy.filters.http.router",
    ]  # fmt: skip
    assert http["rds"]["route_config_name"] == envoy_config.route_name("http")
    metrics_routes = listeners["sluice_metrics"]["filter_chains"][0]["filters"][0]["typed_config"]
    rewrites = {
        r["match"]["path"]: r["route"]["prefix_rewrite"]
        for r in metrics_routes["route_config"]["virtual_hosts"][0]["routes"]
    }
    assert rewrites == {ports.METRICS_PATH: "/stats/prometheus", ports.ROUTER_READY_PATH: "/ready"}


def test_versions_are_digests_of_the_resources() -> None:
    one = envoy_config.discovery_response([{"a": 1}])
    assert one == envoy_config.discovery_response([{"a": 1}])
    assert one["version_info"] != envoy_config.discovery_response([{"a": 2}])["version_info"]
