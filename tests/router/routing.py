"""Run the router and plain HTTP backends on loopback for the router tests.

``RouterProcess`` is ``sluice-router`` in standalone mode (a subprocess, real Envoy) on free
ports, driven through its routes and endpoints files; ``Backend`` is a small threaded HTTP
server that answers with its own name and records what it received. Every helper stops what
it started, by PID, within bounded time.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sluice.contracts.routes import VARIANT_HEADER, RouteTable, to_json
from sluice.router import envoy_config
from sluice.router.endpoints import Endpoint, Endpoints

from e2e.cluster.waiting import wait_for
from tests.runtime.serving import free_port


class Backend:
    """An HTTP server on 127.0.0.1 answering every request with 200 and body ``name``, after
    ``delay`` seconds; ``requests`` holds the paths of the requests it received."""

    def __init__(self, name: str, delay: float = 0.0) -> None:
        self.name = name
        self.delay = delay
        self.requests: list[str] = []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                backend.requests.append(self.path)
                time.sleep(backend.delay)
                body = backend.name.encode()
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(ConnectionError):  # a mirror's copy is dropped early
                    self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def endpoint(self) -> Endpoint:
        """This server as an endpoint (HTTP only: the gRPC port is a placeholder)."""
        return Endpoint("127.0.0.1", self.port, self.port)

    def close(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


class RouterProcess:
    """``sluice-router --routes-file --endpoints-file`` on free loopback ports."""

    def __init__(
        self,
        workdir: Path,
        table: RouteTable,
        endpoints: Mapping[str, list[Endpoint]],
        *,
        drain_seconds: float = 1.0,
    ) -> None:
        self.workdir = workdir
        self.table = table
        self.endpoints: Endpoints = {}
        self.routes_file = workdir / "routes.json"
        self.endpoints_file = workdir / "endpoints.json"
        self.config_dir = workdir / "config"
        self.http_port, self.grpc_port = free_port(), free_port()
        self.metrics_port, self.admin_port = free_port(), free_port()
        self.set_routes(table)
        self.set_endpoints(endpoints)
        self.log = (workdir / "router.log").open("w")
        command = [
            sys.executable, "-m", "sluice.router",
            "--routes-file", str(self.routes_file),
            "--endpoints-file", str(self.endpoints_file),
            "--config-dir", str(self.config_dir),
            "--address", "127.0.0.1",
            "--http-port", str(self.http_port),
            "--grpc-port", str(self.grpc_port),
            "--metrics-port", str(self.metrics_port),
            "--admin-port", str(self.admin_port),
            "--drain-seconds", str(drain_seconds),
            "--log-level", "warning",
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)

    def set_routes(self, table: RouteTable) -> None:
        """Replace the routes file (atomically, as a ConfigMap volume does)."""
        self.table = table
        _replace(self.routes_file, to_json(table))

    def set_endpoints(self, endpoints: Mapping[str, list[Endpoint]]) -> None:
        """Replace the endpoints file."""
        self.endpoints = {name: tuple(found) for name, found in endpoints.items()}
        plain = {name: [vars(e) for e in found] for name, found in endpoints.items()}
        _replace(self.endpoints_file, json.dumps(plain))

    def url(self, path: str = "/") -> str:
        """The URL of ``path`` on the HTTP listener."""
        return f"http://127.0.0.1:{self.http_port}{path}"

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait until /ready on the metrics port answers 200."""

        def ready() -> bool:
            assert self.process.poll() is None, self.output()
            try:
                with urllib.request.urlopen(self.metrics_url("/ready"), timeout=1) as answer:
                    return bool(answer.status == 200)
            except OSError:
                return False

        wait_for(ready, timeout=timeout, interval=0.05, what="the router to be ready")

    def wait_applied(self, timeout: float = 10.0) -> None:
        """Wait until Envoy runs the configuration of the current table and endpoints: route
        and cluster files carry a digest of their resources as their version, which Envoy's
        config dump shows; endpoints are compared by their ports."""
        resources = envoy_config.resources(self.table, self.endpoints, self.config_dir)
        versions = [
            *(
                envoy_config.discovery_response([r])["version_info"]
                for r in resources.routes.values()
            ),
            envoy_config.discovery_response([c for _, c in sorted(resources.clusters.items())])[
                "version_info"
            ],
        ]
        ports = {name: _ports(a) for name, a in resources.assignments.items()}

        def applied() -> bool:
            url = f"http://127.0.0.1:{self.admin_port}/config_dump?include_eds"
            with urllib.request.urlopen(url, timeout=2) as answer:
                text = answer.read().decode()
            dump = json.loads(text)["configs"]
            found = {
                e["endpoint_config"]["cluster_name"]: _ports(e["endpoint_config"])
                for config in dump
                for e in config.get("dynamic_endpoint_configs", [])
            }
            return all(v in text for v in versions) and all(
                found.get(name) == wanted for name, wanted in ports.items()
            )

        wait_for(applied, timeout=timeout, interval=0.05, what="Envoy to apply the files")

    def metrics_url(self, path: str) -> str:
        """The URL of ``path`` on the metrics listener."""
        return f"http://127.0.0.1:{self.metrics_port}{path}"

    def output(self) -> str:
        """What the router and Envoy logged so far."""
        self.log.flush()
        return (self.workdir / "router.log").read_text()

    def stop(self) -> int:
        """SIGTERM (drain), then SIGKILL after a bound; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()
        return self.process.returncode


@contextlib.contextmanager
def running_router(
    workdir: Path, table: RouteTable, endpoints: Mapping[str, list[Endpoint]], **kwargs: float
) -> Iterator[RouterProcess]:
    """A ready router, stopped on exit."""
    router = RouterProcess(workdir, table, endpoints, **kwargs)
    try:
        router.wait_ready()
        router.wait_applied()
        yield router
    finally:
        router.stop()


def get(
    port: int, path: str = "/", headers: Mapping[str, str] | None = None
) -> tuple[int, str, str]:
    """GET ``path`` on 127.0.0.1:``port``: status, variant header and body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=dict(headers or {}))
        answer = connection.getresponse()
        return answer.status, answer.getheader(VARIANT_HEADER, ""), answer.read().decode()
    finally:
        connection.close()


def series(text: str, name: str, label: str) -> dict[str, float]:
    """The values of metric ``name`` in Prometheus ``text``, by the value of ``label``. Read
    from the lines as exposed: Envoy's counters lack ``_total``, and prometheus_client's
    parser would report them under names with it added."""
    pattern = re.compile(rf"^{re.escape(name)}\{{(.*)\}} (\S+)$")
    found = {}
    for line in text.splitlines():
        match = pattern.match(line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
            if label in labels:
                found[labels[label]] = float(match.group(2))
    return found


def _ports(assignment: Mapping[str, Any]) -> list[int]:
    return sorted(
        e["endpoint"]["address"]["socket_address"]["port_value"]
        for group in assignment.get("endpoints", [])
        for e in group.get("lb_endpoints", [])
    )


def _replace(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    temporary.replace(path)
