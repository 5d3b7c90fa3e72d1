"""Assembly and lifecycle: ``create_app`` builds the data plane and both servers from Settings.

``RuntimeApp.start`` listens first (so liveness answers while models load), then loads and
warms up the models and turns ready. ``RuntimeApp.drain`` is the SIGTERM path: readiness
turns false at once, new requests are still taken until none has been in flight for a settle
time (or an accept window has passed), then the listeners close, gRPC clients are sent away
with GOAWAY, and every accepted request is answered before the servers go away.
"""

from __future__ import annotations

import asyncio

import grpc
from prometheus_client import CollectorRegistry
from sluice.runtime.batching import BatchPolicy
from sluice.runtime.dataplane import DataPlane
from sluice.runtime.grpc_service import create_grpc_server
from sluice.runtime.metrics import RuntimeMetrics
from sluice.runtime.rest import HttpServer, RestApi
from sluice.runtime.settings import Settings

# The longest the servers keep taking new requests after SIGTERM, while traffic still comes:
# long enough for an endpoint change to reach the proxies of a cluster that does not pause
# before SIGTERM (Sluice's pods pause in preStop first).
ACCEPT_AFTER_SIGTERM_S = 5.0


class RuntimeApp:
    """A data plane with its HTTP and gRPC servers; start and drain inside one event loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = RuntimeMetrics(CollectorRegistry(auto_describe=True))
        self.dataplane = DataPlane(
            settings.models,
            policy=BatchPolicy(
                max_batch_size=settings.max_batch_size,
                max_queue_delay_s=settings.max_queue_delay_us / 1e6,
                max_queue_size=settings.max_queue_size,
                request_timeout_s=settings.request_timeout_s,
            ),
            providers=settings.providers,
            metrics=self.metrics,
        )
        self.http = HttpServer(
            RestApi(self.dataplane, self.metrics, settings.max_body_bytes),
            access_log=settings.access_log,
        )
        self.http_port = 0
        self.grpc_port = 0
        self._grpc: grpc.aio.Server | None = None

    async def start(self) -> None:
        """Listen on both ports, then load and warm up the models."""
        settings = self.settings
        self.http_port = await self.http.start(settings.host, settings.http_port)
        self._grpc = create_grpc_server(
            self.dataplane, settings.max_body_bytes, access_log=settings.access_log
        )
        host = f"[{settings.host}]" if ":" in settings.host else settings.host  # IPv6
        self.grpc_port = self._grpc.add_insecure_port(f"{host}:{settings.grpc_port}")
        if self.grpc_port == 0:
            raise OSError(f"cannot listen for gRPC on {settings.host}:{settings.grpc_port}")
        await self._grpc.start()
        try:
            await self.dataplane.load()
        except BaseException:
            await self.drain()
            raise

    async def drain(self) -> None:
        """Stop taking work, answer everything accepted, then stop both servers.

        Readiness turns false at once, but both listeners stay open until no request has
        been queued or running for a short settle time, for at most ``ACCEPT_AFTER_SIGTERM_S``:
        clients keep reaching this pod until the endpoint change has propagated, and a
        request racing with the shutdown is served rather than cut off. Then the HTTP
        listener closes (kept connections are closed after their answer) and the gRPC server
        sends GOAWAY, so clients that keep a connection open, and would never let it go idle,
        move to another replica; what was accepted is answered within the request timeout.
        """
        self.dataplane.start_draining()
        grace = self.settings.request_timeout_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        await self.dataplane.wait_idle(min(grace, ACCEPT_AFTER_SIGTERM_S))
        self.http.stop_accepting()
        grpc_stopped = None
        if self._grpc is not None:
            remaining = max(0.0, deadline - loop.time())
            grpc_stopped = asyncio.ensure_future(self._grpc.stop(remaining))
        await self.dataplane.wait_idle(max(0.0, deadline - loop.time()))
        await self.http.close()
        if grpc_stopped is not None:
            await grpc_stopped
        await self.dataplane.close()


def create_app(settings: Settings) -> RuntimeApp:
    """Build (not start) a runtime server from settings."""
    return RuntimeApp(settings)
