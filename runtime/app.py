"""Assembly and lifecycle: ``create_app`` builds the data plane and both servers from Settings.

``RuntimeApp.start`` listens first (so liveness answers while models load), then loads and
warms up the models and turns ready. ``RuntimeApp.drain`` is the SIGTERM path: readiness
turns false at once, every request is answered until none has been in flight for a settle
time, then the listeners close and the servers go away.
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
        been queued or running for a short settle time (bounded by the request timeout):
        clients keep reaching this pod until the endpoint change has propagated, and a
        request racing with the shutdown is served rather than cut off.
        """
        self.dataplane.start_draining()
        grace = self.settings.request_timeout_s
        deadline = asyncio.get_running_loop().time() + grace
        await self.dataplane.wait_idle(grace)
        self.http.stop_accepting()
        grpc_stopped = None
        if self._grpc is not None:
            remaining = max(0.0, deadline - asyncio.get_running_loop().time())
            grpc_stopped = asyncio.ensure_future(self._grpc.stop(remaining))
        await self.dataplane.wait_idle(grace)
        await self.http.close()
        if grpc_stopped is not None:
            await grpc_stopped
        await self.dataplane.close()


def create_app(settings: Settings) -> RuntimeApp:
    """Build (not start) a runtime server from settings."""
    return RuntimeApp(settings)
