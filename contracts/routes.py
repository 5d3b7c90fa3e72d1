"""The route table of one InferenceService: which variant answers which request.

The operator derives a ``RouteTable`` from a spec (the stable variant, a canary step's
weights, A/B tests' header and cookie matches, a shadow); the router control plane turns it
into Envoy configuration (a virtual host whose routes have weighted clusters and a request
mirror policy). Every value is frozen and checks its invariants when built, so a table that
exists is one Envoy can serve as written:

- routes are tried in order and the first whose ``match`` holds wins; the last route has no
  match and catches every other request, and only the last;
- a route's backends are distinct variants whose weights are whole percentages summing to 100
  (a variant at weight 0 keeps its place, ready for the next step of a rollout);
- a mirror copies a share of a route's requests to a variant that does not serve the route,
  and its answers are discarded.

A variant is named as requests and metrics see it (``MAIN`` for the main model, ``CANARY``
during a rollout, an A/B variant's own name) and is addressed by its Service, in the table's
namespace: the router sends a variant's traffic to the ready endpoints of that Service's
EndpointSlices, on their ports named ``ports.HTTP`` and ``ports.GRPC``.

A table may also make the split sticky: requests carrying the same value of a header or a
cookie land on the same backend of a route while its weights stay put.

The operator stores a table as JSON (``to_json``) under ``CONFIGMAP_KEY`` in the ConfigMap
``NAME-router``; the router reads it back with ``from_json``, which checks every invariant
again and names the field at fault. The router tells clients which variant answered in the
``VARIANT_HEADER`` response header (gRPC: initial metadata). docs/router.md describes the form.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

_T = TypeVar("_T")

# The variant names the router shows in VARIANT_HEADER and its metrics.
MAIN: Final = "main"
CANARY: Final = "canary"
# The key of the route table's JSON in the router's ConfigMap.
CONFIGMAP_KEY: Final = "routes.json"
# The response header (and gRPC initial metadata) naming the variant that answered.
VARIANT_HEADER: Final = "x-sluice-variant"

# A variant names Kubernetes objects (NAME-<variant>): a DNS label.
_VARIANT_RE = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
# An HTTP header name (an RFC 9110 token), lower case as HTTP/2 and Envoy carry it.
_HEADER_RE = re.compile(r"^[a-z0-9!#$%&'*+.^_`|~-]+$")
# A cookie name (an RFC 6265 token).
_COOKIE_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")


@dataclass(frozen=True)
class HeaderMatch:
    """A request header ``name`` equal to ``exact``, or fully matching ``regex``.

    Exactly one of the two is set. Envoy evaluates ``regex`` with RE2, which has no
    backreferences or lookaround; it is checked here with Python's ``re``, which catches
    syntax errors.
    """

    name: str
    exact: str | None = None
    regex: str | None = None

    def __post_init__(self) -> None:
        if not _HEADER_RE.match(self.name):
            raise ValueError(f"header name {self.name!r} must be a lower-case HTTP token")
        if (self.exact is None) == (self.regex is None):
            raise ValueError(f"header {self.name!r}: set exactly one of exact and regex")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"header {self.name!r}: bad regex: {exc}") from None


@dataclass(frozen=True)
class CookieMatch:
    """A cookie ``name`` whose value equals ``value``."""

    name: str
    value: str

    def __post_init__(self) -> None:
        if not _COOKIE_RE.match(self.name):
            raise ValueError(f"cookie name {self.name!r} must be an HTTP token")


@dataclass(frozen=True)
class Match:
    """Conditions on a request, all of which must hold; at least one is given."""

    headers: tuple[HeaderMatch, ...] = ()
    cookies: tuple[CookieMatch, ...] = ()

    def __post_init__(self) -> None:
        if not self.headers and not self.cookies:
            raise ValueError("a match needs at least one header or cookie condition")


@dataclass(frozen=True)
class Backend:
    """A variant's Service and the percentage of a route's requests it answers."""

    variant: str
    service: str
    weight: int

    def __post_init__(self) -> None:
        _check_destination(self.variant, self.service)
        if isinstance(self.weight, bool) or not 0 <= self.weight <= 100:
            raise ValueError(f"backend {self.variant!r}: weight must be 0 to 100")


@dataclass(frozen=True)
class Mirror:
    """A variant's Service that receives a copy of ``percent`` of a route's requests."""

    variant: str
    service: str
    percent: float

    def __post_init__(self) -> None:
        _check_destination(self.variant, self.service)
        if isinstance(self.percent, bool) or not 0 < self.percent <= 100:
            raise ValueError(f"mirror {self.variant!r}: percent must be above 0, at most 100")


@dataclass(frozen=True)
class Route:
    """Where requests that satisfy ``match`` go; ``match`` None takes every request."""

    name: str
    backends: tuple[Backend, ...]
    match: Match | None = None
    mirror: Mirror | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a route needs a name")
        if not self.backends:
            raise ValueError(f"route {self.name!r}: at least one backend is needed")
        variants = [backend.variant for backend in self.backends]
        if len(set(variants)) != len(variants):
            raise ValueError(f"route {self.name!r}: variants must be distinct, got {variants}")
        total = sum(backend.weight for backend in self.backends)
        if total != 100:
            raise ValueError(f"route {self.name!r}: weights must sum to 100, got {total}")
        if self.mirror is not None and self.mirror.variant in variants:
            raise ValueError(
                f"route {self.name!r}: mirror {self.mirror.variant!r} already serves the route"
            )

    def destinations(self) -> tuple[Backend | Mirror, ...]:
        """Every variant the route sends requests to: its backends, then its mirror."""
        return (*self.backends, *((self.mirror,) if self.mirror is not None else ()))


@dataclass(frozen=True)
class Sticky:
    """Sticky assignment by the value of request header ``header`` or of cookie ``cookie``
    (exactly one): equal values land on the same backend while the weights stay put; requests
    without it are split at random."""

    header: str | None = None
    cookie: str | None = None

    def __post_init__(self) -> None:
        if (self.header is None) == (self.cookie is None):
            raise ValueError("sticky: set exactly one of header and cookie")
        if self.header is not None and not _HEADER_RE.match(self.header):
            raise ValueError(f"sticky header {self.header!r} must be a lower-case HTTP token")
        if self.cookie is not None and not _COOKIE_RE.match(self.cookie):
            raise ValueError(f"sticky cookie {self.cookie!r} must be an HTTP token")


@dataclass(frozen=True)
class RouteTable:
    """The routes of InferenceService ``name`` in ``namespace``, in the order they are tried."""

    namespace: str
    name: str
    routes: tuple[Route, ...]
    sticky: Sticky | None = None

    def __post_init__(self) -> None:
        if not self.namespace or not self.name:
            raise ValueError("a route table needs a namespace and a name")
        if not self.routes or self.routes[-1].match is not None:
            raise ValueError(f"{self.name}: the last route must match every request")
        if any(route.match is None for route in self.routes[:-1]):
            raise ValueError(f"{self.name}: only the last route may match every request")
        names = [route.name for route in self.routes]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: route names must be distinct, got {names}")
        services: dict[str, str] = {}
        for route in self.routes:
            for dest in route.destinations():
                if services.setdefault(dest.variant, dest.service) != dest.service:
                    raise ValueError(
                        f"{self.name}: variant {dest.variant!r} names two Services, "
                        f"{services[dest.variant]!r} and {dest.service!r}"
                    )

    def services(self) -> dict[str, str]:
        """Every variant the table sends requests to, with its Service, in first-seen order."""
        found: dict[str, str] = {}
        for route in self.routes:
            for dest in route.destinations():
                found.setdefault(dest.variant, dest.service)
        return found


def to_json(table: RouteTable) -> str:
    """The table as the JSON the operator stores under ``CONFIGMAP_KEY``."""
    return json.dumps(_plain(table), sort_keys=True, separators=(",", ":"))


def from_json(text: str) -> RouteTable:
    """A table from its JSON form; ``ValueError`` names the field at fault."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"route table: not JSON: {exc}") from None
    return _table(_object(raw, "table"))


def _plain(table: RouteTable) -> dict[str, Any]:
    def drop_none(value: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in value.items() if v is not None and v != []}

    def match(m: Match) -> dict[str, Any]:
        return drop_none(
            {
                "headers": [drop_none(vars(h)) for h in m.headers],
                "cookies": [vars(c) for c in m.cookies],
            }
        )

    routes = []
    for route in table.routes:
        routes.append(
            drop_none(
                {
                    "name": route.name,
                    "match": None if route.match is None else match(route.match),
                    "backends": [vars(b) for b in route.backends],
                    "mirror": None if route.mirror is None else vars(route.mirror),
                }
            )
        )
    return drop_none(
        {
            "namespace": table.namespace,
            "name": table.name,
            "routes": routes,
            "sticky": None if table.sticky is None else drop_none(vars(table.sticky)),
        }
    )


def _table(raw: Mapping[str, Any]) -> RouteTable:
    routes = []
    for i, item in enumerate(_list(raw.get("routes"), "routes")):
        where = f"routes[{i}]"
        route = _object(item, where)
        match = None
        if route.get("match") is not None:
            m = _object(route["match"], f"{where}.match")
            match = _build(
                Match,
                f"{where}.match",
                headers=tuple(
                    _build(HeaderMatch, f"{where}.match.headers[{j}]", **_object(h, "header"))
                    for j, h in enumerate(_list(m.get("headers"), f"{where}.match.headers"))
                ),
                cookies=tuple(
                    _build(CookieMatch, f"{where}.match.cookies[{j}]", **_object(c, "cookie"))
                    for j, c in enumerate(_list(m.get("cookies"), f"{where}.match.cookies"))
                ),
            )
        backends = tuple(
            _build(Backend, f"{where}.backends[{j}]", **_object(b, "backend"))
            for j, b in enumerate(_list(route.get("backends"), f"{where}.backends"))
        )
        mirror = None
        if route.get("mirror") is not None:
            mirror = _build(Mirror, f"{where}.mirror", **_object(route["mirror"], "mirror"))
        routes.append(
            _build(
                Route, where, name=route.get("name"), backends=backends, match=match, mirror=mirror
            )
        )
    sticky = None
    if raw.get("sticky") is not None:
        sticky = _build(Sticky, "sticky", **_object(raw["sticky"], "sticky"))
    return _build(
        RouteTable,
        "table",
        namespace=raw.get("namespace"),
        name=raw.get("name"),
        routes=tuple(routes),
        sticky=sticky,
    )


def _build(cls: Callable[..., _T], where: str, **fields: Any) -> _T:
    try:
        return cls(**fields)
    except TypeError as exc:
        raise ValueError(f"route table: {where}: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"route table: {where}: {exc}") from None


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"route table: {where} must be an object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"route table: {where} must be a list")
    return value


def _check_destination(variant: str, service: str) -> None:
    if not _VARIANT_RE.match(variant):
        raise ValueError(f"variant {variant!r} must be a DNS label (lower case, digits, '-')")
    if not isinstance(service, str) or not _VARIANT_RE.match(service):
        raise ValueError(f"variant {variant!r}: service must be a Service name (a DNS label)")
