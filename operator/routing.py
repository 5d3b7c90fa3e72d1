"""Which variant answers which request: the route table an InferenceService's spec implies.

Pure functions. The main model (``routes.MAIN``) runs as component ``predictor`` (its
Deployment ``NAME-predictor``), a rollout's canary as ``canary``, an A/B variant under its
own name; each gets a Service of the same name when traffic is split, and the route table
addresses variants by those Services. The table (``sluice.contracts.routes``) is what the
router serves, or what an HTTPRoute carries:

- one route per ``match`` entry of each A/B variant, in spec order, sending every matching
  request to that variant;
- then the default route: each A/B variant its ``weight`` percent, the main model the rest,
  and during a rollout the canary its step's share *of the main model's share*; a mirror, when
  asked for, copies a percentage of these requests to its variant.

Weights are whole percentages, so a canary's share is rounded, and never to 0 while its step
asks for traffic (a 1 % step of a 30 % main share still sends the canary some).
"""

from __future__ import annotations

from sluice.contracts import routes
from sluice.contracts.labels import PREDICTOR
from sluice.contracts.routes import (
    Backend,
    CookieMatch,
    HeaderMatch,
    Match,
    Mirror,
    Route,
    RouteTable,
    Sticky,
)
from sluice.operator.spec import InferenceService, SpecError, VariantMatch, VariantSpec

DEFAULT_ROUTE = "default"


def component_of(variant: str) -> str:
    """The component (pod label, child name suffix) running ``variant``."""
    return PREDICTOR if variant == routes.MAIN else variant


def service_of(isvc: InferenceService, variant: str) -> str:
    """The Service in front of one variant's pods: ``NAME-<component>``."""
    return f"{isvc.name}-{component_of(variant)}"


def router_in_front(isvc: InferenceService) -> bool:
    """Whether Sluice's router serves the stable Service: traffic is split (canary rollouts,
    A/B variants, a mirror) and no Gateway API implementation was asked to do it. Without
    it, the stable Service selects the main model's pods directly, as with no split at all."""
    return isvc.traffic.provider == "Router" and splits_traffic(isvc)


def splits_traffic(isvc: InferenceService) -> bool:
    """Whether the spec asks for more than one variant or a canary: a router or a Gateway."""
    return (
        isvc.rollout.strategy == "Canary" or bool(isvc.variants) or isvc.traffic.mirror is not None
    )


def canary_share(main_share: int, weight: int) -> int:
    """The canary's percent of all traffic when it takes ``weight`` percent of the main
    model's ``main_share``: rounded, at least 1 while both are above 0."""
    if weight <= 0 or main_share <= 0:
        return 0
    return min(main_share, max(1, round(main_share * weight / 100)))


def route_table(isvc: InferenceService, canary_weight: int | None = None) -> RouteTable:
    """The routes of ``isvc``; ``canary_weight`` None when no canary runs, else its step's
    percent of the main model's traffic (0 keeps the canary in the table, ready for a step).

    Raises ``SpecError`` for a mirror to a variant that also takes weighted traffic.
    """
    mirror_spec = isvc.traffic.mirror
    matched = [
        _matched_route(isvc, variant, index, entry)
        for variant in isvc.variants
        for index, entry in enumerate(variant.match)
    ]
    weighted = [v for v in isvc.variants if mirror_spec is None or v.name != mirror_spec.variant]
    main_share = 100 - sum(v.weight for v in weighted)
    canary = None if canary_weight is None else canary_share(main_share, canary_weight)
    backends = [Backend(routes.MAIN, service_of(isvc, routes.MAIN), main_share - (canary or 0))]
    if canary is not None:
        backends.append(Backend(routes.CANARY, service_of(isvc, routes.CANARY), canary))
    backends += [Backend(v.name, service_of(isvc, v.name), v.weight) for v in weighted]
    mirror = None
    if mirror_spec is not None:
        target = next((v for v in isvc.variants if v.name == mirror_spec.variant), None)
        if target is None or target.weight:
            raise SpecError(
                "spec.traffic.mirror.variant",
                "must name a variant of spec.variants whose weight is 0",
            )
        mirror = Mirror(target.name, service_of(isvc, target.name), mirror_spec.percent)
    default = Route(DEFAULT_ROUTE, tuple(backends), mirror=mirror)
    return RouteTable(isvc.namespace, isvc.name, (*matched, default), sticky=_sticky(isvc))


def _matched_route(
    isvc: InferenceService, variant: VariantSpec, index: int, entry: VariantMatch
) -> Route:
    if entry.header is not None:
        match = Match(headers=(HeaderMatch(entry.header, exact=entry.value, regex=entry.regex),))
    else:
        match = Match(cookies=(CookieMatch(str(entry.cookie), str(entry.value)),))
    return Route(
        f"match-{variant.name}-{index}",
        (Backend(variant.name, service_of(isvc, variant.name), 100),),
        match=match,
    )


def _sticky(isvc: InferenceService) -> Sticky | None:
    traffic = isvc.traffic
    if traffic.sticky_header is None and traffic.sticky_cookie is None:
        return None
    return Sticky(header=traffic.sticky_header, cookie=traffic.sticky_cookie)
