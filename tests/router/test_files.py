"""Envoy's files: written atomically, only when changed, in an order that keeps routes valid."""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path

from sluice.contracts.routes import CANARY, MAIN, Backend, Route, RouteTable
from sluice.router import envoy_config
from sluice.router.files import ConfigFiles


def table(*backends: Backend) -> RouteTable:
    return RouteTable("ns", "m", (Route("default", backends),))


def apply(files: ConfigFiles, routes: RouteTable, events: list[str] | None = None) -> list[str]:
    def ready(names: Collection[str]) -> None:
        if events is not None:
            events.append(f"ready {sorted(names)}")

    return files.apply(envoy_config.resources(routes, {}, files.directory), ready)


def test_a_weight_change_rewrites_only_the_routes(tmp_path: Path) -> None:
    files = ConfigFiles(tmp_path)
    first = apply(files, table(Backend(MAIN, "m-main", 100), Backend(CANARY, "m-canary", 0)))
    assert set(first) == {
        "eds_main_http.json", "eds_main_grpc.json", "eds_canary_http.json",
        "eds_canary_grpc.json", "cds.json", "rds_http.json", "rds_grpc.json",
    }  # fmt: skip
    again = apply(files, table(Backend(MAIN, "m-main", 100), Backend(CANARY, "m-canary", 0)))
    assert again == []
    moved = apply(files, table(Backend(MAIN, "m-main", 50), Backend(CANARY, "m-canary", 50)))
    assert moved == ["rds_http.json", "rds_grpc.json"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_new_clusters_exist_before_routes_name_them_and_old_ones_go_after(tmp_path: Path) -> None:
    files = ConfigFiles(tmp_path)
    apply(files, table(Backend(MAIN, "m-main", 100)))
    events: list[str] = []
    written = apply(files, table(Backend(CANARY, "m-canary", 100)), events)
    assert events == ["ready ['canary_grpc', 'canary_http']"]
    # The clusters first grow to old and new, then the routes move, then the old go.
    assert written == [
        "eds_canary_http.json", "eds_canary_grpc.json", "cds.json",
        "rds_http.json", "rds_grpc.json", "cds.json",
    ]  # fmt: skip
    clusters = json.loads((tmp_path / "cds.json").read_text())["resources"]
    assert [c["name"] for c in clusters] == ["canary_grpc", "canary_http"]
    assert sorted(p.name for p in tmp_path.glob("eds_*")) == [
        "eds_canary_grpc.json", "eds_canary_http.json",
    ]  # fmt: skip
