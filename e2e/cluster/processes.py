"""Start, record and stop the control plane's processes.

Every process ``up`` starts is recorded with its PID and the binary it runs in
``WORKDIR/pids.json``; ``down`` stops exactly those, and only while the PID still runs that
binary, so a recycled PID never gets a signal meant for a component that already exited.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from e2e.cluster.waiting import wait_for


@dataclass(frozen=True)
class Managed:
    """One started component: its name, PID and the binary it runs."""

    name: str
    pid: int
    binary: str

    def alive(self) -> bool:
        """True while the PID runs our binary (a zombie or a recycled PID does not)."""
        try:
            # /proc/PID/exe is set atomically at exec and unreadable for a zombie, unlike
            # /proc/PID/cmdline, which reads empty for a moment while a process starts.
            return os.readlink(f"/proc/{self.pid}/exe") == os.path.realpath(self.binary)
        except OSError:
            return False


class Registry:
    """The PID file of one cluster work folder."""

    def __init__(self, workdir: Path) -> None:
        self.path = workdir / "pids.json"
        self.logs = workdir / "logs"

    def load(self) -> list[Managed]:
        """The recorded processes, in start order."""
        if not self.path.exists():
            return []
        return [Managed(**entry) for entry in json.loads(self.path.read_text())]

    def start(self, name: str, command: list[str]) -> Managed:
        """Start ``command`` detached from this process, logging to ``logs/NAME.log``."""
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives `python -m e2e.cluster up`
            )
        managed = Managed(name=name, pid=process.pid, binary=command[0])
        entries = [entry for entry in self.load() if entry.name != name]
        self._save([*entries, managed])
        return managed

    def stop(self, name: str, timeout: float = 20.0) -> None:
        """Stop the recorded process ``name``, if any, and forget it."""
        entries = self.load()
        for managed in entries:
            if managed.name == name:
                _stop(managed, timeout)
        self._save([entry for entry in entries if entry.name != name])

    def stop_all(self, timeout: float = 20.0) -> None:
        """Stop every recorded process, newest first, then forget them."""
        for managed in reversed(self.load()):
            _stop(managed, timeout)
        self.path.unlink(missing_ok=True)

    def log_tail(self, name: str, lines: int = 30) -> str:
        """The end of a component's log, for error messages."""
        path = self.logs / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _save(self, entries: list[Managed]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps([entry.__dict__ for entry in entries], indent=2))
        tmp.replace(self.path)


def _stop(managed: Managed, timeout: float) -> None:
    if not managed.alive():
        _reap(managed.pid)
        return
    os.kill(managed.pid, signal.SIGTERM)

    def gone() -> bool:
        _reap(managed.pid)
        return not managed.alive()

    try:
        wait_for(gone, timeout=timeout, interval=0.1, what=f"{managed.name} to stop")
    except TimeoutError:
        os.kill(managed.pid, signal.SIGKILL)
        _reap(managed.pid)


def _reap(pid: int) -> None:
    """Collect the exit status when the process is our own child (tests start them so)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
