"""The proxies' configurations for one weighted split over loopback backends (pure).

Every proxy under test gets the same split of the same backends: sluice-router a route table
and an endpoints file (its standalone mode), nginx and HAProxy a configuration file each, with
keep-alive connection pools to the backends and one worker. ``proxies`` writes them out and
starts the proxies.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sluice.contracts.routes import Backend, Route, RouteTable, to_json

from benchmarks.runtime.procs import LOOPBACK

# The route table's InferenceService, and its Services' names (NAME-VARIANT).
SERVICE_NAME = "m"
# Idle keep-alive connections nginx keeps per worker to the backends.
KEEPALIVE = 64


@dataclass(frozen=True)
class Upstream:
    """One backend of the split: its variant name, HTTP port on loopback and weight (%)."""

    variant: str
    http_port: int
    weight: int

    @property
    def service(self) -> str:
        """The Service name a route table gives this variant."""
        return f"{SERVICE_NAME}-{self.variant}"


def route_table(upstreams: Sequence[Upstream]) -> str:
    """sluice-router's route table: one route splitting every request by weight."""
    backends = tuple(Backend(u.variant, u.service, u.weight) for u in upstreams)
    return to_json(RouteTable("bench", SERVICE_NAME, (Route("default", backends),)))


def endpoints(upstreams: Sequence[Upstream]) -> str:
    """sluice-router's endpoints file: one loopback endpoint per Service (HTTP only: the gRPC
    port is the HTTP one, never used)."""
    found = {
        u.service: [{"address": LOOPBACK, "http_port": u.http_port, "grpc_port": u.http_port}]
        for u in upstreams
    }
    return json.dumps(found)


def nginx_config(port: int, upstreams: Sequence[Upstream], directory: Path) -> str:
    """nginx in the foreground with one worker, listening on ``port``, its pid and temporary
    files in ``directory``, proxying with HTTP/1.1 keep-alive to a weighted upstream."""
    servers = "\n".join(
        f"        server {LOOPBACK}:{u.http_port} weight={u.weight};" for u in upstreams
    )
    return f"""\
worker_processes 1;
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    upstream variants {{
{servers}
        keepalive {KEEPALIVE};
    }}
    server {{
        listen {LOOPBACK}:{port};
        location / {{
            proxy_pass http://variants;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def haproxy_config(port: int, upstreams: Sequence[Upstream]) -> str:
    """HAProxy with one thread, listening on ``port``, balancing by weight (round robin) with
    server connections kept alive and reused across client connections."""
    servers = "\n".join(
        f"    server {u.variant} {LOOPBACK}:{u.http_port} weight {u.weight}" for u in upstreams
    )
    return f"""\
global
    nbthread 1
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 2s
    timeout client 60s
    timeout server 60s

frontend clients
    bind {LOOPBACK}:{port}
    default_backend variants

backend variants
    balance roundrobin
{servers}
"""
