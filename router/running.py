"""The router's life: configuration follows the source, Envoy serves it, SIGTERM drains it.

``sluice.router.__main__`` calls ``run`` with a ``Source`` and frozen settings. The source
runs on its own thread; each state it reports becomes Envoy's files (``files``). Envoy starts
once the first route table is written, and from then on the router lives as long as Envoy:
Envoy exiting, or the source failing, ends the router with an error; SIGTERM or SIGINT drains
Envoy and ends it cleanly.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Final

from sluice.contracts.routes import RouteTable
from sluice.router import envoy_config
from sluice.router.endpoints import Endpoints
from sluice.router.envoy_config import Listening
from sluice.router.envoy_process import EnvoyError, EnvoyProcess, EnvoySettings
from sluice.router.files import ConfigFiles
from sluice.router.source import Source

log = logging.getLogger("sluice.router")

_WATCH_SECONDS: Final = 0.1


@dataclass(frozen=True)
class RouterSettings:
    """Everything the router needs, from the command line."""

    config_dir: Path
    listening: Listening
    envoy: Path
    envoy_concurrency: int | None = None
    envoy_log_level: str = "info"
    drain_seconds: float = 10.0


class ControlPlane:
    """Turns each state a source reports into Envoy's files, in a safe order."""

    def __init__(self, files: ConfigFiles, envoy: EnvoyProcess) -> None:
        self.files = files
        self.envoy = envoy
        self.configured = threading.Event()  # set once a route table is in the files
        self._lock = threading.Lock()

    def on_change(self, table: RouteTable | None, endpoints: Endpoints) -> None:
        """Write the configuration for ``table``; with no table, keep what Envoy has."""
        if table is None:
            if self.configured.is_set():
                log.warning("the route table is gone; keeping the last one")
            else:
                log.info("no route table yet; Envoy starts with the first one")
            return
        with self._lock:
            resources = envoy_config.resources(table, endpoints, self.files.directory)
            written = self.files.apply(resources, self.envoy.clusters_ready)
        if written:
            log.info("configuration updated: %s", ", ".join(written))
        self.configured.set()


def run(source: Source, settings: RouterSettings) -> int:
    """Run the router until a signal (then drain: exit 0) or a failure (exit 1)."""
    files = ConfigFiles(settings.config_dir)
    bootstrap = files.write_bootstrap(envoy_config.bootstrap(settings.listening, files.directory))
    envoy = EnvoyProcess(
        EnvoySettings(
            binary=settings.envoy,
            bootstrap=bootstrap,
            admin_port=settings.listening.admin_port,
            concurrency=settings.envoy_concurrency,
            log_level=settings.envoy_log_level,
            drain_seconds=settings.drain_seconds,
        )
    )
    control = ControlPlane(files, envoy)
    stop = threading.Event()
    signalled = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        signalled.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    failure: list[BaseException] = []  # what ended the source thread, if it failed

    def run_source() -> None:
        try:
            source.run(control.on_change, stop)
        except BaseException as exc:  # the main thread reports it and exits
            failure.append(exc)
        finally:
            stop.set()

    thread = threading.Thread(target=run_source, name="source", daemon=True)
    thread.start()
    try:
        return _supervise(control, envoy, stop, signalled, failure)
    finally:
        stop.set()
        thread.join(_WATCH_SECONDS * 20)


def _supervise(
    control: ControlPlane,
    envoy: EnvoyProcess,
    stop: threading.Event,
    signalled: threading.Event,
    failure: list[BaseException],
) -> int:
    """Start Envoy once configured, then watch it, the source and the signals."""
    while not signalled.wait(_WATCH_SECONDS):
        if stop.is_set():
            envoy.stop()
            reason = failure[0] if failure else "stopped"
            log.error("route source failed: %s", reason, exc_info=failure[0] if failure else None)
            return 1
        if not envoy.started and control.configured.is_set():
            try:
                envoy.start()
            except EnvoyError as exc:
                log.error("%s", exc)
                return 1
        code = envoy.exit_code()
        if code is not None:
            log.error("Envoy exited with status %d", code)
            return 1
    log.info("signalled: draining")
    code = envoy.drain_and_stop()
    log.info("Envoy stopped with status %d", code)
    return 0
