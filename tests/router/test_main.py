"""The ``sluice-router`` command: flag and file errors, a bad table at run time, the drain on
SIGTERM, and Envoy's exit ending the router."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sluice.contracts.routes import MAIN, Backend, Route, RouteTable, to_json

from e2e.cluster.waiting import wait_for
from tests.router import routing
from tests.router.routing import get

TABLE = RouteTable("default", "m", (Route("default", (Backend(MAIN, "m-main", 100),)),))


def run_router(*args: str) -> subprocess.CompletedProcess[str]:
    """``sluice-router ARGS`` to completion, bounded."""
    return subprocess.run(
        [sys.executable, "-m", "sluice.router", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={k: v for k, v in os.environ.items() if k != "POD_NAMESPACE"},
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((), "give either --routes-configmap or --routes-file"),
        (("--routes-file", "r.json"), "needs both --routes-file and --endpoints-file"),
        (("--routes-configmap", "m-router"), "needs --namespace or $POD_NAMESPACE"),
        (("--routes-file", "missing.json", "--endpoints-file", "e.json"), "missing.json"),
        (("--http-port", "0"), "is not a port"),
        (("--concurrency", "0"), "is not a thread count"),
    ],
)
def test_bad_flags_are_one_line_and_status_2(args: tuple[str, ...], says: str) -> None:
    done = run_router(*args)
    assert done.returncode == 2
    assert says in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_invalid_table_at_start_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text('{"namespace": "n", "name": "m", "routes": []}')
    (tmp_path / "e.json").write_text("{}")
    done = run_router(
        "--routes-file", str(tmp_path / "r.json"), "--endpoints-file", str(tmp_path / "e.json")
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "sluice-router: route table: table: m: the last route must match every request"
    ]


def test_missing_envoy_binary_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text(to_json(TABLE))
    (tmp_path / "e.json").write_text("{}")
    done = run_router(
        "--routes-file", str(tmp_path / "r.json"), "--endpoints-file", str(tmp_path / "e.json"),
        "--envoy", str(tmp_path / "no-envoy"),
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"sluice-router: no Envoy binary at {tmp_path}/no-envoy"
    ]


def test_sigterm_lets_a_slow_request_finish(tmp_path: Path) -> None:
    slow = routing.Backend(MAIN, delay=1.0)
    try:
        router = routing.RouterProcess(
            tmp_path, TABLE, {"m-main": [slow.endpoint()]}, drain_seconds=2.0
        )
        try:
            router.wait_ready()
            router.wait_applied()
            answers: list[tuple[int, str, str]] = []
            client = threading.Thread(target=lambda: answers.append(get(router.http_port)))
            client.start()
            wait_for(lambda: slow.requests, timeout=5, interval=0.02, what="the request")
            router.process.send_signal(signal.SIGTERM)
            client.join(10)
            assert answers == [(200, MAIN, MAIN)]
            assert router.process.wait(10) == 0
        finally:
            router.stop()
    finally:
        slow.close()


def test_bad_table_at_run_time_keeps_the_last_good_one(tmp_path: Path) -> None:
    backend = routing.Backend(MAIN)
    try:
        with routing.running_router(tmp_path, TABLE, {"m-main": [backend.endpoint()]}) as router:
            router.routes_file.write_text('{"namespace": "n"}')
            wait_for(
                lambda: "keeping the last good route table" in router.output(),
                timeout=5,
                interval=0.05,
                what="the router to report the bad table",
            )
            assert get(router.http_port) == (200, MAIN, MAIN)
    finally:
        backend.close()


def test_envoy_exiting_ends_the_router_with_an_error(tmp_path: Path) -> None:
    with routing.running_router(tmp_path, TABLE, {"m-main": []}) as router:
        envoy = subprocess.run(
            ["pgrep", "-P", str(router.process.pid)], capture_output=True, text=True, check=True
        )
        os.kill(int(envoy.stdout.split()[0]), signal.SIGKILL)
        assert router.process.wait(10) == 1
        time.sleep(0.1)
        assert "Envoy exited with status -9" in router.output()
