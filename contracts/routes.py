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

Variants are named as in the ``LABEL_COMPONENT`` label (``labels.PREDICTOR`` for the default);
a backend is addressed by its Service's host name and port (``ports.SERVICE_HTTP_PORT``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
    host: str
    port: int
    weight: int

    def __post_init__(self) -> None:
        _check_destination(self.variant, self.host, self.port)
        if isinstance(self.weight, bool) or not 0 <= self.weight <= 100:
            raise ValueError(f"backend {self.variant!r}: weight must be 0 to 100")


@dataclass(frozen=True)
class Mirror:
    """A variant's Service that receives a copy of ``percent`` of a route's requests."""

    variant: str
    host: str
    port: int
    percent: float

    def __post_init__(self) -> None:
        _check_destination(self.variant, self.host, self.port)
        if not 0 < self.percent <= 100:
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


@dataclass(frozen=True)
class RouteTable:
    """The routes of InferenceService ``name`` in ``namespace``, in the order they are tried."""

    namespace: str
    name: str
    routes: tuple[Route, ...]

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


def _check_destination(variant: str, host: str, port: int) -> None:
    if not _VARIANT_RE.match(variant):
        raise ValueError(f"variant {variant!r} must be a DNS label (lower case, digits, '-')")
    if not host:
        raise ValueError(f"variant {variant!r}: a host is needed")
    if isinstance(port, bool) or not 1 <= port <= 65535:
        raise ValueError(f"variant {variant!r}: port must be 1 to 65535")
