"""The router's Kubernetes source (``sluice.router.kube_source``) and its list+watch loop
(``sluice.router.listwatch``), over a fake of the API's list and watch.

The fake keeps objects with resourceVersions, answers lists and watches by label selector,
and can expire versions (410 Gone) and fail calls, so the tests see what the router would
report: slices merged per Service, unready endpoints left out, bad tables logged and skipped,
relists after expiry, retries after errors. ``tests/router/test_kube_api.py`` covers the
adapter to the real client.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytest
from sluice.contracts import ports, routes
from sluice.router.endpoints import Endpoint, Endpoints
from sluice.router.kube_source import (
    SERVICE_NAME_LABEL,
    RouteWatch,
    TableReader,
    ready_endpoints,
    service_selector,
)
from sluice.router.listwatch import ApiError, Backoff, Event, ExpiredError, Listing

from e2e.cluster.waiting import wait_for

CONFIGMAP = "iris-router"
# Each watch of the fake ends after this long with nothing to send, as the API's do.
WATCH_SECONDS = 5.0
FAST = Backoff(initial=0.01, maximum=0.05)


# A fake of the API's list and watch, for one kind of object in one namespace


class FakeKind:
    """Objects of one kind, each change numbered with a resourceVersion, listed and watched
    by label selector; ``expire`` forgets the history and ends every open watch."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._objects: dict[str, dict[str, Any]] = {}
        self._history: list[tuple[int, Event]] = []
        self._version = 0
        self._oldest = 0  # watches from an older version are refused: 410 Gone
        self._epoch = 0  # ends the watches opened before it changed
        self.listed: list[str] = []  # the selector of every list that answered
        self.failures: list[Exception] = []  # raised by the next lists, first first

    def put(self, item: Mapping[str, Any]) -> None:
        with self._changed:
            self._version += 1
            name = item["metadata"]["name"]
            kind = "MODIFIED" if name in self._objects else "ADDED"
            stored = {
                **item,
                "metadata": {**item["metadata"], "resourceVersion": str(self._version)},
            }
            self._objects[name] = stored
            self._history.append((self._version, Event(kind, stored)))
            self._changed.notify_all()

    def delete(self, name: str) -> None:
        with self._changed:
            self._version += 1
            gone = self._objects.pop(name)
            stored = {
                **gone,
                "metadata": {**gone["metadata"], "resourceVersion": str(self._version)},
            }
            self._history.append((self._version, Event("DELETED", stored)))
            self._changed.notify_all()

    def expire(self, *missed: Mapping[str, Any]) -> None:
        """Make the ``missed`` changes where no open watch sees them, and refuse watches from
        any version before them, as when a watch is down while the API compacts its history."""
        with self._changed:
            for item in missed:
                self.put(item)
            self._oldest = self._version
            self._history.clear()
            self._epoch += 1
            self._changed.notify_all()

    def list(self, label_selector: str) -> Listing:
        with self._changed:
            if self.failures:
                raise self.failures.pop(0)
            self.listed.append(label_selector)
            items = [item for item in self._objects.values() if _selects(label_selector, item)]
            return Listing(tuple(items), str(self._version))

    def watch(self, label_selector: str, resource_version: str) -> FakeStream:
        return FakeStream(self, label_selector, int(resource_version))

    def events(
        self, selector: str, after: int, epoch: int, closed: threading.Event
    ) -> Iterator[Event]:
        """The events after version ``after`` as they come, until closed or ended."""
        with self._changed:
            if after < self._oldest:
                raise ExpiredError(f"too old resource version: {after}")
        while True:
            with self._changed:

                def woken(after: int = after) -> bool:
                    return closed.is_set() or epoch != self._epoch or self._version > after

                arrived = self._changed.wait_for(woken, timeout=WATCH_SECONDS)
                if not arrived or closed.is_set() or epoch != self._epoch:
                    return
                new = [event for version, event in self._history if version > after]
                after = self._version
            yield from (event for event in new if _selects(selector, event.object))


class FakeStream:
    def __init__(self, kind: FakeKind, selector: str, after: int) -> None:
        self._kind = kind
        self._selector = selector
        self._after = after
        self._epoch = kind._epoch
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[Event]:
        return self._kind.events(self._selector, self._after, self._epoch, self._closed)

    def close(self) -> None:
        self._closed.set()
        with self._kind._changed:
            self._kind._changed.notify_all()


def _selects(selector: str, item: Mapping[str, Any]) -> bool:
    """The two selectors the source uses: "" (all), and ``key in (a,b)``."""
    if not selector:
        return True
    found = re.fullmatch(r"(\S+) in \(([^)]*)\)", selector)
    assert found, f"unexpected selector {selector!r}"
    labels = item["metadata"].get("labels") or {}
    return labels.get(found[1]) in found[2].split(",")


# Objects


def table(*services: str) -> routes.RouteTable:
    """A table sending everything to the first Service, naming the others at weight 0."""
    backends = tuple(
        routes.Backend(f"v{i}", service, 100 if i == 0 else 0) for i, service in enumerate(services)
    )
    return routes.RouteTable("ns", "iris", (routes.Route("default", backends),))


def config_map(text: routes.RouteTable | str | None) -> dict[str, Any]:
    data = (
        {}
        if text is None
        else {routes.CONFIGMAP_KEY: text if isinstance(text, str) else routes.to_json(text)}
    )
    return {"metadata": {"name": CONFIGMAP}, "data": data}


def endpoint_slice(
    name: str,
    service: str,
    endpoints: list[dict[str, Any]],
    *,
    named: Mapping[str, int] | None = None,
    address_type: str = "IPv4",
) -> dict[str, Any]:
    named = {ports.HTTP: 8080, ports.GRPC: 8081} if named is None else named
    return {
        "metadata": {"name": name, "labels": {SERVICE_NAME_LABEL: service}},
        "addressType": address_type,
        "endpoints": endpoints,
        "ports": [
            {"name": port, "port": number, "protocol": "TCP"} for port, number in named.items()
        ],
    }


def ready(address: str, condition: bool | None = True) -> dict[str, Any]:
    return {"addresses": [address], "conditions": {"ready": condition}}


def at(*addresses: str) -> tuple[Endpoint, ...]:
    return tuple(Endpoint(address, 8080, 8081) for address in addresses)


# The selector and the endpoints, pure


def test_the_selector_names_each_service_of_the_table_once() -> None:
    shared = routes.RouteTable(
        "ns",
        "iris",
        (
            routes.Route(
                "default",
                (routes.Backend("main", "iris-b", 90), routes.Backend("canary", "iris-a", 10)),
                mirror=routes.Mirror("shadow", "iris-b", 5),
            ),
        ),
    )
    assert service_selector(shared) == f"{SERVICE_NAME_LABEL} in (iris-a,iris-b)"
    assert service_selector(None) is None


def test_endpoints_merge_slices_and_keep_only_ready_ones() -> None:
    slices = [
        endpoint_slice("a-1", "iris-a", [ready("10.0.0.2"), ready("10.0.0.9", False)]),
        # Missing conditions, or a missing ready, count as ready, as Kubernetes reads them.
        endpoint_slice("a-2", "iris-a", [{"addresses": ["10.0.0.1"]}, ready("10.0.0.3", None)]),
        endpoint_slice("b-1", "iris-b", [ready("10.0.1.1")]),
        endpoint_slice("other", "not-in-table", [ready("10.0.2.1")]),
    ]
    assert ready_endpoints(["iris-a", "iris-b", "iris-c"], slices) == {
        "iris-a": at("10.0.0.1", "10.0.0.2", "10.0.0.3"),
        "iris-b": at("10.0.1.1"),
        "iris-c": (),
    }


def test_endpoints_take_the_named_ports_and_skip_slices_without_them() -> None:
    slices = [
        endpoint_slice(
            "a-1",
            "iris-a",
            [ready("10.0.0.1")],
            named={"metrics": 9090, ports.GRPC: 9001, ports.HTTP: 9000},
        ),
        endpoint_slice("a-2", "iris-a", [ready("10.0.0.2")], named={ports.HTTP: 8080}),
        endpoint_slice("a-3", "iris-a", [ready("iris.example")], address_type="FQDN"),
    ]
    assert ready_endpoints(["iris-a"], slices) == {"iris-a": (Endpoint("10.0.0.1", 9000, 9001),)}


def test_a_bad_table_is_logged_once_and_the_last_good_one_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reader = TableReader("ns/iris-router")
    good = table("iris-a")

    def version(item: dict[str, Any], number: int) -> dict[str, Any]:
        return {**item, "metadata": {**item["metadata"], "resourceVersion": str(number)}}

    assert reader.read(None) is None
    assert reader.read(version(config_map(good), 1)) == good
    with caplog.at_level(logging.ERROR, logger="sluice.router.kube_source"):
        assert reader.read(version(config_map('{"routes": []}'), 2)) == good
        assert reader.read(version(config_map('{"routes": []}'), 2)) == good
        assert reader.read(version(config_map(None), 3)) == good
    assert [record.getMessage() for record in caplog.records] == [
        "ns/iris-router: bad route table at resourceVersion 2, keeping the last good one: "
        "route table: table: a route table needs a namespace and a name",
        f"ns/iris-router: bad route table at resourceVersion 3, keeping the last good one: "
        f"no {routes.CONFIGMAP_KEY} key",
    ]
    assert reader.read(None) == good, "a deleted ConfigMap keeps the last table too"


def test_backoff_doubles_up_to_its_bound() -> None:
    backoff = Backoff(initial=0.5, maximum=4.0)
    assert [backoff.delay(n) for n in (1, 2, 3, 4, 5, 1000)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


# The source, running over the fake


class Recorder:
    """The states ``on_change`` was called with."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[tuple[routes.RouteTable | None, Endpoints]] = []

    def __call__(self, table: routes.RouteTable | None, endpoints: Endpoints) -> None:
        with self._lock:
            self._calls.append((table, dict(endpoints)))

    @property
    def calls(self) -> list[tuple[routes.RouteTable | None, Endpoints]]:
        with self._lock:
            return list(self._calls)

    def wait(self, table: routes.RouteTable | None, endpoints: Endpoints) -> None:
        """Until the last call reports this state."""
        wait_for(
            lambda: self.calls[-1:] == [(table, endpoints)],
            timeout=10,
            interval=0.01,
            what=f"the state {table}, {endpoints}",
        )


class Api:
    """The two kinds the source reads."""

    def __init__(self) -> None:
        self.config_maps = FakeKind()
        self.slices = FakeKind()


@contextmanager
def running(api: Api, backoff: Backoff = FAST) -> Iterator[Recorder]:
    """The source running on a thread over ``api``; stopped, and proven stopped, after."""
    recorder = Recorder()
    stop = threading.Event()
    source = RouteWatch(api.config_maps, api.slices, name="ns/iris-router", backoff=backoff)
    thread = threading.Thread(target=source.run, args=(recorder, stop))
    thread.start()
    try:
        yield recorder
    finally:
        stop.set()
        thread.join(5)
        assert not thread.is_alive(), "run did not return after stop"


def test_reports_the_table_with_the_endpoints_of_its_services() -> None:
    api = Api()
    api.config_maps.put(config_map(table("iris-a", "iris-b")))
    api.slices.put(endpoint_slice("a-1", "iris-a", [ready("10.0.0.1")]))
    api.slices.put(endpoint_slice("a-2", "iris-a", [ready("10.0.0.2")]))
    api.slices.put(endpoint_slice("b-1", "iris-b", [ready("10.0.1.1", False)]))
    api.slices.put(endpoint_slice("c-1", "iris-c", [ready("10.0.2.1")]))
    with running(api) as recorder:
        recorder.wait(
            table("iris-a", "iris-b"), {"iris-a": at("10.0.0.1", "10.0.0.2"), "iris-b": ()}
        )
        assert len(recorder.calls) == 1, "nothing before both lists, and each state once"
        assert api.slices.listed == [f"{SERVICE_NAME_LABEL} in (iris-a,iris-b)"]

        api.slices.put(endpoint_slice("b-1", "iris-b", [ready("10.0.1.1")]))
        recorder.wait(
            table("iris-a", "iris-b"),
            {"iris-a": at("10.0.0.1", "10.0.0.2"), "iris-b": at("10.0.1.1")},
        )
        api.slices.delete("a-2")
        recorder.wait(
            table("iris-a", "iris-b"), {"iris-a": at("10.0.0.1"), "iris-b": at("10.0.1.1")}
        )


def test_a_new_table_selects_the_slices_of_its_services() -> None:
    api = Api()
    api.config_maps.put(config_map(table("iris-a")))
    api.slices.put(endpoint_slice("a-1", "iris-a", [ready("10.0.0.1")]))
    api.slices.put(endpoint_slice("c-1", "iris-c", [ready("10.0.2.1")]))
    with running(api) as recorder:
        recorder.wait(table("iris-a"), {"iris-a": at("10.0.0.1")})
        api.config_maps.put(config_map(table("iris-c", "iris-a")))
        recorder.wait(
            table("iris-c", "iris-a"), {"iris-c": at("10.0.2.1"), "iris-a": at("10.0.0.1")}
        )
        # Never the new table without its Services' endpoints.
        assert [endpoints for _, endpoints in recorder.calls] == [
            {"iris-a": at("10.0.0.1")},
            {"iris-c": at("10.0.2.1"), "iris-a": at("10.0.0.1")},
        ]
        assert api.slices.listed[-1] == f"{SERVICE_NAME_LABEL} in (iris-a,iris-c)"


def test_a_bad_table_keeps_the_last_good_one_until_a_good_one_comes() -> None:
    api = Api()
    api.config_maps.put(config_map(table("iris-a")))
    with running(api) as recorder:
        recorder.wait(table("iris-a"), {"iris-a": ()})
        api.config_maps.put(config_map("{not json"))
        api.config_maps.put(config_map(table("iris-b")))
        recorder.wait(table("iris-b"), {"iris-b": ()})
        assert [t for t, _ in recorder.calls] == [table("iris-a"), table("iris-b")]


def test_no_config_map_means_no_table_until_one_is_written() -> None:
    api = Api()
    api.slices.put(endpoint_slice("a-1", "iris-a", [ready("10.0.0.1")]))
    with running(api) as recorder:
        recorder.wait(None, {})
        assert api.slices.listed == [], "no table, no slices wanted"
        api.config_maps.put(config_map(table("iris-a")))
        recorder.wait(table("iris-a"), {"iris-a": at("10.0.0.1")})


def test_an_expired_watch_lists_again() -> None:
    api = Api()
    api.config_maps.put(config_map(table("iris-a")))
    api.slices.put(endpoint_slice("a-1", "iris-a", [ready("10.0.0.1")]))
    with running(api) as recorder:
        recorder.wait(table("iris-a"), {"iris-a": at("10.0.0.1")})
        api.slices.expire(endpoint_slice("a-2", "iris-a", [ready("10.0.0.2")]))
        recorder.wait(table("iris-a"), {"iris-a": at("10.0.0.1", "10.0.0.2")})
        assert len(api.slices.listed) == 2, "only a new list sees the missed change"


def test_api_errors_are_retried_and_nothing_half_listed_is_reported() -> None:
    api = Api()
    api.config_maps.put(config_map(table("iris-a")))
    api.slices.put(endpoint_slice("a-1", "iris-a", [ready("10.0.0.1")]))
    api.config_maps.failures = [ApiError("list: HTTP 403 Forbidden")]
    api.slices.failures = [
        ApiError("list: HTTP 500"),
        ExpiredError("list: Gone"),
        ApiError("list: ConnectionRefused"),
    ]
    with running(api) as recorder:
        recorder.wait(table("iris-a"), {"iris-a": at("10.0.0.1")})
        assert recorder.calls == [(table("iris-a"), {"iris-a": at("10.0.0.1")})]
        assert api.slices.failures == []


def test_stop_ends_a_wait_after_an_error() -> None:
    api = Api()
    api.config_maps.failures = [ApiError("list: HTTP 503")]
    with running(api, Backoff(initial=60, maximum=60)):
        wait_for(lambda: not api.config_maps.failures, timeout=10, interval=0.01, what="a list")


def test_a_bug_in_a_reflector_is_raised_by_run() -> None:
    api = Api()
    api.config_maps.failures = [RuntimeError("a bug")]
    source = RouteWatch(api.config_maps, api.slices, name="ns/iris-router", backoff=FAST)
    stop = threading.Event()
    # Should run not raise, it returns when stopped, and the test fails.
    timer = threading.Timer(10, stop.set)
    timer.start()
    try:
        with pytest.raises(RuntimeError, match="a bug"):
            source.run(Recorder(), stop)
    finally:
        timer.cancel()
