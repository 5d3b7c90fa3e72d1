"""Unit tests for sluice.contracts.routes: a route table that exists is one Envoy can serve."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from sluice.contracts.routes import (
    Backend,
    CookieMatch,
    HeaderMatch,
    Match,
    Mirror,
    Route,
    RouteTable,
    Sticky,
    from_json,
    to_json,
)


def backend(variant: str = "main", weight: int = 100, **changes: Any) -> Backend:
    fields: dict[str, Any] = {
        "variant": variant,
        "service": f"resnet-{variant}",
        "weight": weight,
        **changes,
    }
    return Backend(**fields)


def canary_table() -> RouteTable:
    """A header-matched A/B route, then a canary step at 10% with a shadow of 5%."""
    return RouteTable(
        namespace="models",
        name="resnet",
        routes=(
            Route(
                name="beta-testers",
                match=Match(
                    headers=(HeaderMatch("x-user-group", exact="beta"),),
                    cookies=(CookieMatch("session-tier", "gold"),),
                ),
                backends=(backend("candidate"),),
            ),
            Route(
                name="default",
                backends=(backend("main", 90), backend("canary", 10)),
                mirror=Mirror("shadow", "resnet-shadow", 5.0),
            ),
        ),
        sticky=Sticky(header="x-user-id"),
    )


def test_a_canary_table_with_matches_weights_and_a_mirror() -> None:
    table = canary_table()
    default = table.routes[-1]
    assert default.match is None
    assert [(b.variant, b.weight) for b in default.backends] == [("main", 90), ("canary", 10)]
    assert default.mirror is not None
    assert (default.mirror.variant, default.mirror.percent) == ("shadow", 5.0)


def test_values_are_frozen() -> None:
    table = canary_table()
    with pytest.raises(dataclasses.FrozenInstanceError):
        table.routes[0].backends[0].weight = 50  # type: ignore[misc]


@pytest.mark.parametrize("weights", [(90,), (60, 30), (60, 50), (100, 1)])
def test_weights_must_sum_to_100(weights: tuple[int, ...]) -> None:
    backends = tuple(backend(f"v{i}", w) for i, w in enumerate(weights))
    with pytest.raises(ValueError, match="sum to 100"):
        Route(name="default", backends=backends)


def test_a_variant_at_weight_0_keeps_its_place() -> None:
    route = Route(name="default", backends=(backend("main", 100), backend("canary", 0)))
    assert [b.weight for b in route.backends] == [100, 0]


@pytest.mark.parametrize("weight", [-1, 101, True])
def test_a_weight_is_a_whole_percentage(weight: int) -> None:
    with pytest.raises(ValueError, match="weight"):
        backend(weight=weight)


def test_a_route_needs_a_name_and_distinct_backends() -> None:
    with pytest.raises(ValueError, match="needs a name"):
        Route(name="", backends=(backend(),))
    with pytest.raises(ValueError, match="at least one backend"):
        Route(name="default", backends=())
    with pytest.raises(ValueError, match="distinct"):
        Route(name="default", backends=(backend("a", 50), backend("a", 50)))


@pytest.mark.parametrize(
    "changes",
    [
        {"variant": "Canary"},
        {"variant": "-canary"},
        {"variant": "a" * 64},
        {"service": ""},
        {"service": "Resnet"},
        {"service": "a.b"},
    ],
)
def test_a_backend_is_a_variant_service_address(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="variant"):
        backend(**changes)


@pytest.mark.parametrize("percent", [0, -5, 100.5])
def test_a_mirror_copies_a_share_above_0_and_at_most_100(percent: float) -> None:
    with pytest.raises(ValueError, match="percent"):
        Mirror("shadow", "resnet-shadow", percent)


def test_a_mirror_copies_to_a_variant_the_route_does_not_serve() -> None:
    with pytest.raises(ValueError, match="already serves"):
        Route(
            name="default",
            backends=(backend("main"),),
            mirror=Mirror("main", "resnet-main", 100),
        )


def test_a_header_match_is_exact_or_regex() -> None:
    assert HeaderMatch("x-variant", regex="^(b|c)$").regex == "^(b|c)$"
    with pytest.raises(ValueError, match="exactly one"):
        HeaderMatch("x-variant")
    with pytest.raises(ValueError, match="exactly one"):
        HeaderMatch("x-variant", exact="b", regex="b")
    with pytest.raises(ValueError, match="bad regex"):
        HeaderMatch("x-variant", regex="(unclosed")


@pytest.mark.parametrize("name", ["X-Variant", "x variant", ":path", ""])
def test_header_names_are_lower_case_tokens(name: str) -> None:
    with pytest.raises(ValueError, match="header name"):
        HeaderMatch(name, exact="b")


@pytest.mark.parametrize("name", ["a=b", "a;b", ""])
def test_cookie_names_are_tokens(name: str) -> None:
    with pytest.raises(ValueError, match="cookie name"):
        CookieMatch(name, "gold")


def test_an_empty_match_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Match()


def test_the_last_route_and_only_the_last_catches_every_request() -> None:
    matched = Route(
        name="beta",
        match=Match(headers=(HeaderMatch("x-beta", exact="1"),)),
        backends=(backend("canary"),),
    )
    default = Route(name="default", backends=(backend(),))
    with pytest.raises(ValueError, match="last route must match every request"):
        RouteTable("models", "resnet", (default, matched))
    with pytest.raises(ValueError, match="last route must match every request"):
        RouteTable("models", "resnet", ())
    with pytest.raises(ValueError, match="only the last"):
        RouteTable("models", "resnet", (default, dataclasses.replace(default, name="other")))


def test_route_names_are_distinct() -> None:
    matched = Route(
        name="default",
        match=Match(headers=(HeaderMatch("x-beta", exact="1"),)),
        backends=(backend("canary"),),
    )
    with pytest.raises(ValueError, match="distinct"):
        RouteTable("models", "resnet", (matched, Route(name="default", backends=(backend(),))))


def test_a_table_names_its_inferenceservice() -> None:
    routes = (Route(name="default", backends=(backend(),)),)
    with pytest.raises(ValueError, match="namespace and a name"):
        RouteTable("", "resnet", routes)
    with pytest.raises(ValueError, match="namespace and a name"):
        RouteTable("models", "", routes)


def test_a_variant_names_one_service_throughout_the_table() -> None:
    beta = Route(
        name="beta",
        match=Match(headers=(HeaderMatch("x-beta", exact="1"),)),
        backends=(backend("b", service="resnet-b"),),
    )
    default = Route(name="default", backends=(backend("main", 50), backend("b", 50, service="x")))
    with pytest.raises(ValueError, match="two Services"):
        RouteTable("models", "resnet", (beta, default))


def test_services_lists_every_destination_once() -> None:
    assert canary_table().services() == {
        "candidate": "resnet-candidate",
        "main": "resnet-main",
        "canary": "resnet-canary",
        "shadow": "resnet-shadow",
    }


def test_a_sticky_split_follows_one_header_or_one_cookie() -> None:
    assert Sticky(cookie="session").cookie == "session"
    with pytest.raises(ValueError, match="exactly one"):
        Sticky()
    with pytest.raises(ValueError, match="exactly one"):
        Sticky(header="x-user-id", cookie="session")
    with pytest.raises(ValueError, match="sticky header"):
        Sticky(header="X-User")


def test_the_json_form_round_trips() -> None:
    table = canary_table()
    assert from_json(to_json(table)) == table
    plain = Route(name="default", backends=(backend(),))
    assert from_json(to_json(RouteTable("models", "resnet", (plain,)))).sticky is None


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("[", "not JSON"),
        ("[]", "table must be an object"),
        ('{"namespace": "m", "name": "r", "routes": {}}', "routes must be a list"),
        (
            '{"namespace": "m", "name": "r", "routes": [{"name": "d", "backends": '
            '[{"variant": "main", "service": "r-main", "weight": 90}]}]}',
            r"routes\[0\]: .*sum to 100",
        ),
        (
            '{"namespace": "m", "name": "r", "routes": [{"name": "d", "backends": '
            '[{"variant": "main", "service": "r-main", "weight": 100, "port": 80}]}]}',
            r"routes\[0\].backends\[0\]",
        ),
        (
            '{"namespace": "m", "name": "r", "sticky": {}, "routes": [{"name": "d", '
            '"backends": [{"variant": "main", "service": "r-main", "weight": 100}]}]}',
            "sticky: sticky: set exactly one",
        ),
    ],
)
def test_bad_json_is_refused_naming_the_field(text: str, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        from_json(text)
