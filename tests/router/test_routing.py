"""The router on real Envoy, over plain HTTP backends: splits, matches, stickiness, mirrors,
changes under load, retries, metrics and readiness.

One router serves the module; each test writes the route table it needs and waits until
Envoy runs it.
"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sluice.contracts import metrics
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

from e2e.cluster.waiting import wait_for
from tests.router import routing
from tests.router.routing import RouterProcess, get
from tests.runtime.serving import free_port


@dataclass
class Backends:
    """The backends every test may route to, by variant."""

    main: routing.Backend
    canary: routing.Backend
    beta: routing.Backend
    shadow: routing.Backend


def table(*routes: Route, sticky: Sticky | None = None) -> RouteTable:
    """A route table of the test model."""
    return RouteTable("default", "m", routes, sticky)


def split(main: int, canary: int, **kwargs: object) -> Route:
    """The catch-all route at main/canary weights."""
    return Route(
        "default",
        (Backend(MAIN, "m-main", main), Backend(CANARY, "m-canary", canary)),
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def backends() -> Iterator[Backends]:
    """Four plain backends; the shadow is slow."""
    found = Backends(
        main=routing.Backend(MAIN),
        canary=routing.Backend(CANARY),
        beta=routing.Backend("beta"),
        shadow=routing.Backend("shadow", delay=1.0),
    )
    yield found
    for backend in vars(found).values():
        backend.close()


def endpoints_of(backends: Backends) -> dict[str, list[routing.Endpoint]]:
    """Each backend as the only endpoint of its variant's Service."""
    return {f"m-{name}": [backend.endpoint()] for name, backend in vars(backends).items()}


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory, backends: Backends) -> Iterator[RouterProcess]:
    """One router for the module, starting at 100% main."""
    workdir = tmp_path_factory.mktemp("router")
    with routing.running_router(workdir, table(split(100, 0)), endpoints_of(backends)) as found:
        yield found


@pytest.fixture
def apply(router: RouterProcess, backends: Backends) -> RouterProcess:
    """The module's router, reset to every backend as its variant's only endpoint."""
    router.set_endpoints(endpoints_of(backends))
    router.wait_applied()
    return router


def configure(router: RouterProcess, routes: RouteTable) -> None:
    """Write ``routes`` and wait until Envoy runs them."""
    router.set_routes(routes)
    router.wait_applied()


def variants(router: RouterProcess, count: int, **headers: str) -> Counter[str]:
    """The variants that answered ``count`` requests; every answer must be a 200 whose body
    names the variant in the header."""
    seen: Counter[str] = Counter()
    for _ in range(count):
        status, variant, body = get(router.http_port, headers=headers)
        assert (status, body) == (200, variant)
        seen[variant] += 1
    return seen


def test_weighted_split_within_binomial_bounds(apply: RouterProcess) -> None:
    configure(apply, table(split(70, 30)))
    seen = variants(apply, 400)
    # 280 expected; the standard deviation is sqrt(400 * 0.7 * 0.3) = 9.2: five of them.
    assert 234 <= seen[MAIN] <= 326, seen
    assert seen[MAIN] + seen[CANARY] == 400


def test_header_and_cookie_matches_route_to_their_variant(apply: RouterProcess) -> None:
    beta = (Backend("beta", "m-beta", 100),)
    configure(
        apply,
        table(
            Route("by-header", beta, Match(headers=(HeaderMatch("x-group", exact="beta"),))),
            Route("by-cookie", beta, Match(cookies=(CookieMatch("group", "beta"),))),
            split(100, 0),
        ),
    )
    assert variants(apply, 5, **{"x-group": "beta"}) == {"beta": 5}
    assert variants(apply, 5, **{"x-group": "alpha"}) == {MAIN: 5}
    assert variants(apply, 5, cookie="a=1; group=beta; z=2") == {"beta": 5}
    assert variants(apply, 5, cookie="group=betamax; xgroup=beta") == {MAIN: 5}


def test_sticky_header_keeps_a_user_on_one_variant(apply: RouterProcess) -> None:
    configure(apply, table(split(50, 50), sticky=Sticky(header="x-user-id")))
    chosen = {}
    for user in range(40):
        seen = variants(apply, 4, **{"x-user-id": f"user-{user}"})
        assert len(seen) == 1, (user, seen)
        chosen[user] = next(iter(seen))
    assert 8 <= Counter(chosen.values())[MAIN] <= 32, chosen
    # A client cannot choose by sending the hash header: requests without a user spread.
    forged = variants(apply, 40, **{"x-sluice-sticky-hash": "0"})
    assert len(forged) == 2, forged


def test_sticky_cookie(apply: RouterProcess) -> None:
    configure(apply, table(split(50, 50), sticky=Sticky(cookie="session")))
    spread = set()
    for user in range(20):
        seen = variants(apply, 3, cookie=f"theme=dark; session=s{user}")
        assert len(seen) == 1, (user, seen)
        spread |= set(seen)
    assert spread == {MAIN, CANARY}


def test_mirror_copies_requests_and_its_answers_are_discarded(
    apply: RouterProcess, backends: Backends
) -> None:
    configure(apply, table(split(100, 0, mirror=Mirror("shadow", "m-shadow", 100))))
    before = len(backends.shadow.requests)
    started = time.monotonic()
    assert variants(apply, 5) == {MAIN: 5}
    # The shadow takes 1 s per request; the client never waits for it.
    assert time.monotonic() - started < 2.5
    wait_for(
        lambda: len(backends.shadow.requests) - before >= 5,
        timeout=10,
        interval=0.1,
        what="the shadow to receive the copies",
    )


def test_retry_after_connection_refused_reaches_another_endpoint(
    apply: RouterProcess, backends: Backends
) -> None:
    refusing = routing.Endpoint("127.0.0.1", free_port(), free_port())
    configure(apply, table(split(100, 0)))
    apply.set_endpoints({**endpoints_of(backends), "m-main": [refusing, backends.main.endpoint()]})
    apply.wait_applied()
    assert variants(apply, 40) == {MAIN: 40}
    assert _counter(apply, "envoy_cluster_upstream_rq_retry", "main_http") > 0


class Load:
    """Requests sent back to back from a few threads over kept-alive connections."""

    def __init__(self, port: int, threads: int = 4, limit_seconds: float = 20.0) -> None:
        self.port = port
        self.results: list[tuple[float, int, str]] = []  # (sent at, status, variant)
        self._stop = threading.Event()
        self._deadline = time.monotonic() + limit_seconds
        self._threads = [threading.Thread(target=self._send) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def _send(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            sent = time.monotonic()
            try:
                connection.request("GET", "/")
                answer = connection.getresponse()
                answer.read()
                self.results.append((sent, answer.status, answer.getheader(VARIANT_HEADER, "")))
            except (OSError, http.client.HTTPException) as exc:
                self.results.append((sent, 0, repr(exc)))
                connection.close()
        connection.close()

    def stop(self) -> list[tuple[float, int, str]]:
        """Stop sending; every result."""
        self._stop.set()
        for thread in self._threads:
            thread.join(15)
        return self.results


def test_weight_change_takes_effect_within_a_second_under_load(apply: RouterProcess) -> None:
    configure(apply, table(split(100, 0)))
    load = Load(apply.http_port)
    try:
        time.sleep(0.5)
        changed = time.monotonic()
        apply.set_routes(table(split(0, 100)))
        time.sleep(2.0)
    finally:
        results = load.stop()
    assert [r for r in results if r[1] != 200] == []
    late = [variant for sent, _, variant in results if sent > changed + 1.0]
    assert late
    assert set(late) == {CANARY}
    assert {variant for sent, _, variant in results if sent < changed} == {MAIN}


def test_endpoint_removed_under_load_without_failures(tmp_path: Path) -> None:
    first, second = routing.Backend(MAIN), routing.Backend(MAIN)
    both = {"m-main": [first.endpoint(), second.endpoint()], "m-canary": []}
    try:
        with routing.running_router(tmp_path, table(split(100, 0)), both) as router:
            load = Load(router.http_port)
            try:
                time.sleep(0.5)
                router.set_endpoints({"m-main": [second.endpoint()], "m-canary": []})
                router.wait_applied()
                time.sleep(0.5)
                served_before = len(first.requests)
                first.close()
                time.sleep(1.0)
            finally:
                results = load.stop()
            assert len(first.requests) == served_before  # nothing went there once removed
            assert [r for r in results if r[1] != 200] == []
            assert len(results) > 20
    finally:
        second.close()


def test_metrics_name_each_variant_and_ready(apply: RouterProcess) -> None:
    configure(apply, table(split(50, 50)))
    variants(apply, 20)
    with urllib.request.urlopen(apply.metrics_url("/ready"), timeout=5) as answer:
        assert answer.status == 200
    families = _families(apply)
    for variant in (MAIN, CANARY):
        cluster = metrics.router_cluster(variant, metrics.ROUTER_HTTP)
        ok = [
            s
            for s in families[metrics.ROUTER_REQUESTS_BY_CLASS]
            if s.labels
            == {metrics.ROUTER_CLUSTER_LABEL: cluster, metrics.ROUTER_CODE_CLASS_LABEL: "2"}
        ]
        assert ok, families[metrics.ROUTER_REQUESTS_BY_CLASS]
        assert ok[0].value > 0
        for name in (metrics.ROUTER_REQUEST_TIME_MS, metrics.ROUTER_ACTIVE_REQUESTS):
            clusters = {s.labels.get(metrics.ROUTER_CLUSTER_LABEL) for s in families[name]}
            assert cluster in clusters, name


def _families(router: RouterProcess) -> dict[str, list]:  # type: ignore[type-arg]
    with urllib.request.urlopen(router.metrics_url("/metrics"), timeout=5) as answer:
        text = answer.read().decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def _counter(router: RouterProcess, name: str, cluster: str) -> float:
    return sum(
        s.value
        for s in _families(router).get(name, [])
        if s.labels.get(metrics.ROUTER_CLUSTER_LABEL) == cluster
    )
