"""Envoy's configuration, built from a route table and the variants' endpoints (pure).

``bootstrap`` is the configuration Envoy starts with and never replaces: the client listeners
(HTTP on ``ports.HTTP_PORT`` with HTTP/1.1 and h2c, gRPC on ``ports.GRPC_PORT``), the metrics
listener that serves Envoy admin's Prometheus text and readiness on ``ports.ROUTER_METRICS_PORT``,
and the admin interface on 127.0.0.1. Everything that changes comes from files in one watched
directory (``sluice.router.files`` writes them): one route configuration per client listener
(RDS), the clusters (CDS), and each cluster's endpoints (EDS). ``resources`` builds their
contents; a weight change alters only the route configurations, so Envoy swaps routes without
touching listeners or connections.

Each variant has one cluster per protocol, named ``metrics.router_cluster``, balanced by least
requests; the rollout analysis reads the variants' statistics by those names.
"""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sluice.contracts import metrics, ports
from sluice.contracts.routes import VARIANT_HEADER, HeaderMatch, Match, Route, RouteTable
from sluice.router import sticky
from sluice.router.endpoints import Endpoint, Endpoints

JSON = dict[str, Any]

# The protocols the router serves, each on its own listener with its own route configuration.
PROTOCOLS: Final = (metrics.ROUTER_HTTP, metrics.ROUTER_GRPC)
# Only failures before the request reached a backend are retried, on another host: a model
# may have run a request that failed later, and inference is not idempotent in cost.
RETRY_ON: Final = "connect-failure,refused-stream,reset-before-request"
ADMIN_PORT: Final = 9901
# Client connections one router accepts at a time; more are refused.
MAX_CONNECTIONS: Final = 50_000

_ADMIN_CLUSTER: Final = "sluice_admin"
_CDS_FILE: Final = "cds.json"
_TYPE: Final = "type.googleapis.com/envoy"
# Far above what a router pod serves: the runtime limits its own queue, and Envoy's default
# thresholds (1024 requests, 3 concurrent retries) would fail requests the backends could take.
_CIRCUIT_LIMIT: Final = 1_000_000


@dataclass(frozen=True)
class Listening:
    """Where the router listens: its client and metrics ports, and the admin port on
    127.0.0.1; ``address`` is where the client and metrics listeners bind."""

    address: str = "0.0.0.0"
    http_port: int = ports.HTTP_PORT
    grpc_port: int = ports.GRPC_PORT
    metrics_port: int = ports.ROUTER_METRICS_PORT
    admin_port: int = ADMIN_PORT


@dataclass(frozen=True)
class Resources:
    """The dynamic configuration, each value an xDS resource as Envoy's JSON reads it:
    route configurations by protocol, clusters and endpoint assignments by cluster name."""

    routes: Mapping[str, JSON]
    clusters: Mapping[str, JSON]
    assignments: Mapping[str, JSON]


def route_file(protocol: str) -> str:
    """The file name of the route configuration of ``protocol``'s listener."""
    return f"rds_{protocol}.json"


def cds_file() -> str:
    """The file name of the clusters."""
    return _CDS_FILE


def eds_file(cluster: str) -> str:
    """The file name of ``cluster``'s endpoints."""
    return f"eds_{cluster}.json"


def discovery_response(resources: list[JSON]) -> JSON:
    """The form of a file that Envoy's path config source reads: a discovery response. Its
    version is a digest of the resources, so Envoy's config dump shows which file it runs."""
    text = json.dumps(resources, sort_keys=True, separators=(",", ":"))
    return {"version_info": hashlib.sha256(text.encode()).hexdigest()[:16], "resources": resources}


def bootstrap(listening: Listening, config_dir: Path) -> JSON:
    """Envoy's static configuration: listeners, admin, and where the dynamic parts are."""
    return {
        "node": {"id": "sluice-router", "cluster": "sluice-router"},
        # Merge latency histograms when /metrics is read, not on a 5 s timer, so a canary's
        # p99 is as current as its request counts.
        "stats_flush_on_admin": True,
        "admin": {"address": _socket("127.0.0.1", listening.admin_port)},
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": f"{_TYPE}.extensions.resource_monitors.downstream_connections"
                        ".v3.DownstreamConnectionsConfig",
                        "max_active_downstream_connections": MAX_CONNECTIONS,
                    },
                }
            ]
        },
        "dynamic_resources": {"cds_config": _file_source(config_dir, cds_file())},
        "static_resources": {
            "listeners": [
                _client_listener(listening, metrics.ROUTER_HTTP, config_dir),
                _client_listener(listening, metrics.ROUTER_GRPC, config_dir),
                _metrics_listener(listening),
            ],
            "clusters": [_admin_cluster(listening.admin_port)],
        },
    }


def resources(table: RouteTable, endpoints: Endpoints, config_dir: Path) -> Resources:
    """The route configurations, clusters and endpoints that serve ``table``; a Service with
    no ready endpoints gets an empty assignment (Envoy answers 503 for it)."""
    routes = {protocol: _route_configuration(table, protocol) for protocol in PROTOCOLS}
    clusters: dict[str, JSON] = {}
    assignments: dict[str, JSON] = {}
    for variant, service in table.services().items():
        for protocol in PROTOCOLS:
            name = metrics.router_cluster(variant, protocol)
            clusters[name] = _cluster(name, protocol, config_dir)
            assignments[name] = _assignment(name, protocol, endpoints.get(service, ()))
    return Resources(routes=routes, clusters=clusters, assignments=assignments)


def route_name(protocol: str) -> str:
    """The name of the route configuration that ``protocol``'s listener asks for."""
    return f"sluice_{protocol}"


_GRPC_STATS_FILTER: Final = {
    "name": "envoy.filters.http.grpc_stats",
    "typed_config": {
        "@type": f"{_TYPE}.extensions.filters.http.grpc_stats.v3.FilterConfig",
        "emit_filter_state": False,
        "stats_for_all_methods": False,
    },
}


def _client_listener(listening: Listening, protocol: str, config_dir: Path) -> JSON:
    codec = "AUTO" if protocol == metrics.ROUTER_HTTP else "HTTP2"
    port = listening.http_port if protocol == metrics.ROUTER_HTTP else listening.grpc_port
    manager: JSON = {
        "@type": f"{_TYPE}.extensions.filters.network.http_connection_manager.v3"
        ".HttpConnectionManager",
        "stat_prefix": protocol,
        "codec_type": codec,
        # No x-request-id is made up per request: nothing here traces or logs by it, and a
        # UUID per request is a measurable share of a proxy's CPU.
        "generate_request_id": False,
        "rds": {
            "route_config_name": route_name(protocol),
            "config_source": _file_source(config_dir, route_file(protocol)),
        },
        # gRPC statistics only where gRPC arrives: every filter costs each request.
        "http_filters": [
            sticky.http_filter(),
            *([_GRPC_STATS_FILTER] if protocol == metrics.ROUTER_GRPC else []),
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": f"{_TYPE}.extensions.filters.http.router.v3.Router"},
            },
        ],
        # Inference may run long: no idle or stream timeout cuts a request short.
        "stream_idle_timeout": "0s",
        "request_timeout": "0s",
    }
    return {
        "name": protocol,
        "address": _socket(listening.address, port),
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": manager,
                    }
                ]
            }
        ],
    }


def _metrics_listener(listening: Listening) -> JSON:
    def to_admin(path: str, admin_path: str) -> JSON:
        return {
            "match": {"path": path},
            "route": {"cluster": _ADMIN_CLUSTER, "prefix_rewrite": admin_path},
        }

    manager: JSON = {
        "@type": f"{_TYPE}.extensions.filters.network.http_connection_manager.v3"
        ".HttpConnectionManager",
        "stat_prefix": "sluice_metrics",
        "codec_type": "AUTO",
        "route_config": {
            "name": "sluice_metrics",
            "virtual_hosts": [
                {
                    "name": "metrics",
                    "domains": ["*"],
                    "routes": [
                        to_admin(ports.METRICS_PATH, "/stats/prometheus"),
                        to_admin(ports.ROUTER_READY_PATH, "/ready"),
                    ],
                }
            ],
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": f"{_TYPE}.extensions.filters.http.router.v3.Router"},
            }
        ],
    }
    return {
        "name": "sluice_metrics",
        "address": _socket(listening.address, listening.metrics_port),
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": manager,
                    }
                ]
            }
        ],
    }


def _admin_cluster(admin_port: int) -> JSON:
    return {
        "name": _ADMIN_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": _ADMIN_CLUSTER,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": _socket("127.0.0.1", admin_port)}}]}
            ],
        },
    }


def _route_configuration(table: RouteTable, protocol: str) -> JSON:
    virtual_host: JSON = {
        "name": f"{table.namespace}_{table.name}",
        "domains": ["*"],
        "routes": [_route(table, route, protocol) for route in table.routes],
    }
    return {
        "@type": f"{_TYPE}.config.route.v3.RouteConfiguration",
        "name": route_name(protocol),
        "virtual_hosts": [virtual_host],
    }


def _route(table: RouteTable, route: Route, protocol: str) -> JSON:
    weighted: JSON = {
        "clusters": [
            {
                "name": metrics.router_cluster(backend.variant, protocol),
                "weight": backend.weight,
                "response_headers_to_add": [
                    {
                        "header": {"key": VARIANT_HEADER, "value": backend.variant},
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                    }
                ],
            }
            for backend in route.backends
        ]
    }
    if table.sticky is not None:
        weighted["header_name"] = sticky.HASH_HEADER
    action: JSON = {
        "weighted_clusters": weighted,
        "timeout": "0s",
        "max_stream_duration": {"grpc_timeout_header_max": "0s"},
        "retry_policy": {
            "retry_on": RETRY_ON,
            "num_retries": 1,
            "retry_host_predicate": [
                {
                    "name": "envoy.retry_host_predicates.previous_hosts",
                    "typed_config": {
                        "@type": f"{_TYPE}.extensions.retry.host.previous_hosts.v3"
                        ".PreviousHostsPredicate"
                    },
                }
            ],
            # Least-request picks may land on the failed host again; each pick is cheap.
            "host_selection_retry_max_attempts": "20",
        },
    }
    if route.mirror is not None:
        action["request_mirror_policies"] = [
            {
                "cluster": metrics.router_cluster(route.mirror.variant, protocol),
                "runtime_fraction": {
                    "default_value": {
                        "numerator": round(route.mirror.percent * 10_000),
                        "denominator": "MILLION",
                    }
                },
            }
        ]
    result: JSON = {"name": route.name, "match": _match(route.match), "route": action}
    result.update(sticky.route_config(table.sticky))
    return result


def _match(match: Match | None) -> JSON:
    result: JSON = {"prefix": "/"}
    if match is None:
        return result
    headers = [_header(h) for h in match.headers]
    headers += [
        {
            "name": "cookie",
            "string_match": {
                "safe_regex": {
                    "regex": f"(^|.*;\\s*){_re2_literal(c.name)}={_re2_literal(c.value)}(;.*|$)"
                }
            },
        }
        for c in match.cookies
    ]
    result["headers"] = headers
    return result


def _header(header: HeaderMatch) -> JSON:
    if header.exact is not None:
        return {"name": header.name, "string_match": {"exact": header.exact}}
    return {"name": header.name, "string_match": {"safe_regex": {"regex": header.regex}}}


def _re2_literal(text: str) -> str:
    """``text`` as an RE2 pattern matching exactly it: RE2 takes a backslash before any ASCII
    punctuation, and ``\\x{...}`` for any other character."""
    out = []
    for char in text:
        if char.isascii() and (char.isalnum() or char == "_"):
            out.append(char)
        elif char in string.punctuation:
            out.append("\\" + char)
        else:
            out.append(f"\\x{{{ord(char):x}}}")
    return "".join(out)


def _cluster(name: str, protocol: str, config_dir: Path) -> JSON:
    cluster: JSON = {
        "@type": f"{_TYPE}.config.cluster.v3.Cluster",
        "name": name,
        "type": "EDS",
        "eds_cluster_config": {
            "service_name": name,
            "eds_config": _file_source(config_dir, eds_file(name)),
        },
        "connect_timeout": "2s",
        # Least requests between two hosts picked at random (Envoy's default choice count).
        "lb_policy": "LEAST_REQUEST",
        # A host that refuses connections is set aside for a while; answers the model gave
        # (5xx included) never eject a host.
        "outlier_detection": {
            "split_external_local_origin_errors": True,
            "consecutive_local_origin_failure": 3,
            "enforcing_consecutive_local_origin_failure": 100,
            "enforcing_local_origin_success_rate": 0,
            "enforcing_consecutive_5xx": 0,
            "enforcing_consecutive_gateway_failure": 0,
            "enforcing_success_rate": 0,
            "base_ejection_time": "5s",
            "max_ejection_percent": 50,
        },
        "circuit_breakers": {
            "thresholds": [
                {
                    "max_connections": _CIRCUIT_LIMIT,
                    "max_pending_requests": _CIRCUIT_LIMIT,
                    "max_requests": _CIRCUIT_LIMIT,
                    "max_retries": _CIRCUIT_LIMIT,
                }
            ]
        },
    }
    if protocol == metrics.ROUTER_GRPC:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": f"{_TYPE}.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
    return cluster


def _assignment(name: str, protocol: str, found: tuple[Endpoint, ...]) -> JSON:
    return {
        "@type": f"{_TYPE}.config.endpoint.v3.ClusterLoadAssignment",
        "cluster_name": name,
        "endpoints": [
            {
                "lb_endpoints": [
                    {
                        "endpoint": {
                            "address": _socket(
                                endpoint.address,
                                endpoint.http_port
                                if protocol == metrics.ROUTER_HTTP
                                else endpoint.grpc_port,
                            )
                        }
                    }
                    for endpoint in found
                ]
            }
        ]
        if found
        else [],
    }


def _socket(address: str, port: int) -> JSON:
    return {"socket_address": {"address": address, "port_value": port}}


def _file_source(config_dir: Path, name: str) -> JSON:
    return {
        "path_config_source": {
            "path": str(config_dir / name),
            "watched_directory": {"path": str(config_dir)},
        },
        "resource_api_version": "V3",
    }
