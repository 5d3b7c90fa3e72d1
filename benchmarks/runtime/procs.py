"""Start, wait for and stop the server processes the runner owns, always by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from e2e.cluster.waiting import wait_for

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """Return a TCP port on the loopback address that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@dataclass
class Managed:
    """A process started by the runner, with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        """The process id (also its process group id: it leads a new session)."""
        return self.popen.pid

    def alive(self) -> bool:
        """True while the process has not exited."""
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the process log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def start(name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> Managed:
    """Start ``argv`` in a new session, stdout and stderr to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    return Managed(name, popen, log_path)


def stop(proc: Managed, grace_s: float = 15.0) -> None:
    """Stop ``proc``: SIGINT, then SIGTERM, then SIGKILL to the group it leads (by its PID)."""
    for sig, wait_s in ((signal.SIGINT, grace_s * 0.6), (signal.SIGTERM, grace_s * 0.4)):
        if not proc.alive():
            break
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=wait_s)
    # Children it started (tritonserver, worker processes) share its process group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.popen.wait(timeout=5)


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    """True when GET ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_ready(proc: Managed, urls: list[str], timeout_s: float) -> None:
    """Wait until every URL answers 200; raise with the log tail if it exits or times out."""
    try:
        wait_for(
            lambda: not proc.alive() or all(http_ok(url) for url in urls),
            timeout=timeout_s,
            interval=0.25,
            what=f"{proc.name} to answer {' '.join(urls)}",
        )
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}\n{proc.log_tail()}") from None
    if not proc.alive():
        raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.log_tail()}")
