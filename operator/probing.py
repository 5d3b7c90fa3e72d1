"""The liveness endpoint: one small HTTP server that answers ``GET /healthz``.

Started by ``running.py`` before leader election, so a standby replica is alive too (kopf's
own liveness endpoint only exists while kopf runs, which is only on the leader). Healthy means
the event loop answers and the election (or, without election, heartbeat) loop ticked
recently; a leader whose kopf stops ends the whole process instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web


class Health:
    """Heartbeats the running parts report, read by the HTTP handler."""

    def __init__(self, *, stale_after: float, monotonic: Callable[[], float] = time.monotonic):
        self._stale_after = stale_after
        self._monotonic = monotonic
        self._beat = monotonic()

    def beat(self) -> None:
        """The election loop is alive."""
        self._beat = self._monotonic()

    def healthy(self) -> bool:
        """Alive when the election loop ticked within ``stale_after`` seconds."""
        return self._monotonic() - self._beat < self._stale_after


async def serve(health: Health, host: str, port: int) -> web.AppRunner:
    """Start the endpoint; the caller cleans up the returned runner."""

    async def healthz(_: web.Request) -> web.Response:
        if health.healthy():
            return web.json_response({"status": "ok"})
        return web.json_response({"status": "unhealthy"}, status=500)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
