"""The Gateway API form of a route table: an HTTPRoute, and a GRPCRoute beside it.

With ``spec.traffic.provider: GatewayAPI`` Sluice runs no router of its own: a Gateway API
implementation the cluster already runs splits the traffic, following two routes rendered
here from the same ``RouteTable`` the router would serve (``routing.route_table``).
``builders.desired_children`` calls ``routes``. Pure functions: no API calls.

Both routes are named NAME, carry the labels and controller owner reference of every child
(``meta``), and attach to the Gateway that ``spec.traffic`` names (in the InferenceService's
namespace unless it names another), at its listener ``gateway_section`` when set. The
table's routes become rules, in the table's order; consecutive routes that send requests to
the same place share one rule (``_action``), so a route stays within the schema's limits:

- a route's match becomes one route match, all of whose conditions must hold: a header
  condition an ``Exact`` or ``RegularExpression`` header match, a cookie condition a
  ``RegularExpression`` match on the ``cookie`` header (``cookie_regex``);
- its backends become weighted backendRefs to the variants' Services (a weight 0 keeps its
  place, ready for a rollout's next step), each setting ``VARIANT_HEADER`` on its responses;
- its mirror becomes a ``RequestMirror`` filter copying the same share of requests.

The HTTPRoute sends to the Services' ``SERVICE_HTTP_PORT``; the GRPCRoute takes the Open
Inference Protocol's gRPC service (``GRPC_SERVICE``) to their ``SERVICE_GRPC_PORT``. What does
not carry over (sticky assignment; rule order, which the Gateway API consults only between
equally specific matches) is written up in docs/gateway-api.md.
"""

from __future__ import annotations

import copy
import re
from fractions import Fraction
from itertools import groupby
from typing import Any, Final

from sluice.contracts import ports
from sluice.contracts.labels import ROUTER
from sluice.contracts.routes import VARIANT_HEADER, Backend, Match, Mirror, Route, RouteTable
from sluice.operator.meta import metadata
from sluice.operator.spec import InferenceService, SpecError

GROUP: Final = "gateway.networking.k8s.io"
API_VERSION: Final = f"{GROUP}/v1"
HTTP_ROUTE: Final = "HTTPRoute"
GRPC_ROUTE: Final = "GRPCRoute"
# (apiVersion, kind) of every object ``routes`` returns.
KINDS: Final = ((API_VERSION, HTTP_ROUTE), (API_VERSION, GRPC_ROUTE))
# The Open Inference Protocol's gRPC service, as Sluice's runtime and Triton both serve it.
GRPC_SERVICE: Final = "inference.GRPCInferenceService"
# What the v1 schemas allow in one route: rules, matches in all, matches in one rule.
MAX_RULES: Final = 16
MAX_MATCHES: Final = 128
MAX_RULE_MATCHES: Final = 64
# A mirror's share is a whole percent where it can be, else a fraction at most this fine.
_MAX_DENOMINATOR: Final = 1_000_000


def routes(isvc: InferenceService, table: RouteTable) -> list[dict[str, Any]]:
    """The HTTPRoute and the GRPCRoute carrying ``table`` for ``isvc``, in apply order."""
    return [http_route(isvc, table), grpc_route(isvc, table)]


def http_route(isvc: InferenceService, table: RouteTable) -> dict[str, Any]:
    """The HTTPRoute NAME sending the table's HTTP requests to the variants' HTTP ports.

    Raises ``SpecError`` when the table needs more rules or matches than a route may hold,
    or no Gateway is named; ``ValueError`` for a match that tests one header twice."""
    base = {"path": {"type": "PathPrefix", "value": "/"}}
    return _route(isvc, table, HTTP_ROUTE, ports.SERVICE_HTTP_PORT, base)


def grpc_route(isvc: InferenceService, table: RouteTable) -> dict[str, Any]:
    """The GRPCRoute NAME sending calls to ``GRPC_SERVICE`` to the variants' gRPC ports.

    The method match keeps the route to inference calls, so it never competes with the
    HTTPRoute for plain HTTP requests. Raises as ``http_route`` does."""
    base = {"method": {"type": "Exact", "service": GRPC_SERVICE}}
    return _route(isvc, table, GRPC_ROUTE, ports.SERVICE_GRPC_PORT, base)


def cookie_regex(name: str, value: str) -> str:
    """A regular expression that a ``cookie`` request header fully matches exactly when it
    holds cookie ``name`` with ``value``, among any others (RFC 6265 separates them by
    ``; ``). It also holds when matched anywhere in the header, whichever way an
    implementation applies it."""
    return f"(^|.*; ?){re.escape(name)}={re.escape(value)}(;.*|$)"


def _route(
    isvc: InferenceService, table: RouteTable, kind: str, port: int, base: dict[str, Any]
) -> dict[str, Any]:
    rules = [_rule(list(group), port, base) for _, group in groupby(table.routes, _action)]
    _check_limits(kind, rules)
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        # The route does the router's work, so it is labelled as the router's component.
        "metadata": metadata(isvc, isvc.name, component=ROUTER),
        "spec": {"parentRefs": [_parent_ref(isvc)], "rules": rules},
    }


def _action(route: Route) -> tuple[tuple[Backend, ...], Mirror | None]:
    """What a route does with the requests it takes. Consecutive routes that do the same
    share one rule (an A/B variant's match entries, mostly): the Gateway API breaks ties
    between equally specific matches by their order, which sharing keeps, and a route holds
    few rules."""
    return route.backends, route.mirror


def _check_limits(kind: str, rules: list[dict[str, Any]]) -> None:
    matches = [len(rule["matches"]) for rule in rules]
    if len(rules) > MAX_RULES or max(matches) > MAX_RULE_MATCHES or sum(matches) > MAX_MATCHES:
        raise SpecError(
            "spec.variants",
            f"a {kind} holds at most {MAX_RULES} rules and {MAX_MATCHES} matches, "
            f"{MAX_RULE_MATCHES} in one rule; these variants need {len(rules)} rules "
            f"and {sum(matches)} matches, at most {max(matches)} in one rule",
        )


def _parent_ref(isvc: InferenceService) -> dict[str, Any]:
    traffic = isvc.traffic
    if traffic.gateway_name is None:
        raise SpecError("spec.traffic.gateway", "is required with provider GatewayAPI")
    ref: dict[str, Any] = {
        "group": GROUP,
        "kind": "Gateway",
        "name": traffic.gateway_name,
        "namespace": traffic.gateway_namespace or isvc.namespace,
    }
    if traffic.gateway_section is not None:
        ref["sectionName"] = traffic.gateway_section
    return ref


def _rule(group: list[Route], port: int, base: dict[str, Any]) -> dict[str, Any]:
    """Routes that do the same as one rule of either kind: both kinds share this shape."""
    first = group[0]
    rule: dict[str, Any] = {"matches": [_match(route.match, base) for route in group]}
    if first.mirror is not None:
        rule["filters"] = [_mirror_filter(first.mirror, port)]
    rule["backendRefs"] = [_backend_ref(backend, port) for backend in first.backends]
    return rule


def _match(match: Match | None, base: dict[str, Any]) -> dict[str, Any]:
    # A copy for every match: objects handed to callers share no mutable parts.
    if match is None:
        return copy.deepcopy(base)
    headers = [
        {
            "type": "Exact" if header.exact is not None else "RegularExpression",
            "name": header.name,
            "value": header.exact if header.exact is not None else header.regex,
        }
        for header in match.headers
    ]
    headers += [
        {"type": "RegularExpression", "name": "cookie", "value": cookie_regex(c.name, c.value)}
        for c in match.cookies
    ]
    names = [header["name"] for header in headers]
    if len(set(names)) != len(names):
        # The schema keys header matches by name: one condition per header in a match.
        raise ValueError(f"a Gateway API match tests each header once; this one tests {names}")
    return {**copy.deepcopy(base), "headers": headers}


def _backend_ref(backend: Backend, port: int) -> dict[str, Any]:
    return {
        "name": backend.service,
        "port": port,
        "weight": backend.weight,
        "filters": [
            {
                "type": "ResponseHeaderModifier",
                "responseHeaderModifier": {
                    "set": [{"name": VARIANT_HEADER, "value": backend.variant}]
                },
            }
        ],
    }


def _mirror_filter(mirror: Mirror, port: int) -> dict[str, Any]:
    # Never rounded down to nothing: a mirror the table asks for copies some requests.
    finest = Fraction(1, _MAX_DENOMINATOR)
    share = max(finest, (Fraction(mirror.percent) / 100).limit_denominator(_MAX_DENOMINATOR))
    amount: dict[str, Any]
    if (share * 100).denominator == 1:
        amount = {"percent": int(share * 100)}
    else:
        amount = {"fraction": {"numerator": share.numerator, "denominator": share.denominator}}
    return {
        "type": "RequestMirror",
        "requestMirror": {"backendRef": {"name": mirror.service, "port": port}, **amount},
    }
