"""The file source: the state on start, after a change, and the last good state kept."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sluice.contracts.routes import MAIN, Backend, Route, RouteTable, to_json
from sluice.router.endpoints import Endpoint, Endpoints
from sluice.router.static_source import StaticSource, parse_endpoints

from e2e.cluster.waiting import wait_for

TABLE = RouteTable("ns", "m", (Route("default", (Backend(MAIN, "m-main", 100),)),))


def test_parse_endpoints() -> None:
    found = parse_endpoints('{"m-main": [{"address": "10.0.0.1", "http_port": 1, "grpc_port": 2}]}')
    assert found == {"m-main": (Endpoint("10.0.0.1", 1, 2),)}
    with pytest.raises(ValueError, match="m-main"):
        parse_endpoints('{"m-main": [{"address": "a", "http_port": 0, "grpc_port": 2}]}')
    with pytest.raises(ValueError, match="not JSON"):
        parse_endpoints("[")


def test_changes_are_reported_and_bad_files_keep_the_last_good_state(tmp_path: Path) -> None:
    routes, endpoints = tmp_path / "r.json", tmp_path / "e.json"
    routes.write_text(to_json(TABLE))
    endpoints.write_text("{}")
    seen: list[tuple[RouteTable | None, Endpoints]] = []
    stop = threading.Event()
    thread = threading.Thread(
        target=StaticSource(routes, endpoints).run,
        args=(lambda t, e: seen.append((t, e)), stop),
    )
    thread.start()
    try:
        wait_for(lambda: len(seen) == 1, timeout=5, interval=0.02, what="the first state")
        assert seen[0] == (TABLE, {})
        routes.write_text("{broken")
        endpoints.write_text('{"m-main": [{"address": "a", "http_port": 1, "grpc_port": 2}]}')
        wait_for(lambda: len(seen) == 2, timeout=5, interval=0.02, what="the new endpoints")
        assert seen[1] == (TABLE, {"m-main": (Endpoint("a", 1, 2),)})
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
