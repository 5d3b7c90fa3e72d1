"""The processes under test: two sluice-runtime backends and the proxies in front of them.

``runner`` starts two ``sluice-runtime serve`` backends ("main" and "b"), then each proxy on
free loopback ports, pinned to one CPU with ``taskset``, doing the same weighted split over
the two backends (``configs``). A ``Target`` is what wrk sends requests to: a backend
directly, or a proxy with the process groups whose CPU time it spends. Every process is
stopped by its PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from sluice.router.envoy_process import find_envoy

from benchmarks.router import configs
from benchmarks.router.configs import Upstream
from benchmarks.runtime.cpu import group_cpu_seconds
from benchmarks.runtime.procs import LOOPBACK, Managed, free_port, start, stop, wait_ready
from benchmarks.runtime.servers import Running, ServerOptions, start_server

# Binaries the benchmark runs, by the Debian package that carries each.
DEBIAN_PACKAGES = {"wrk": "wrk", "nginx": "nginx-light", "haproxy": "haproxy"}
PROXIES = ("sluice-router", "nginx", "haproxy")
READY_TIMEOUT_S = 60.0


@dataclass
class Target:
    """Where wrk sends requests: ``port`` on loopback. ``procs`` are the proxy's processes
    (none for a direct call) and ``cpu_groups`` the process groups whose CPU it spends."""

    name: str
    port: int
    procs: list[Managed] = field(default_factory=list)
    cpu_groups: tuple[int, ...] = ()

    @property
    def address(self) -> str:
        """host:port of its HTTP endpoint."""
        return f"{LOOPBACK}:{self.port}"

    def cpu_seconds(self) -> float | None:
        """User + system CPU seconds of the proxy's processes so far; None for a direct call."""
        if not self.cpu_groups:
            return None
        found = [group_cpu_seconds(pgid) for pgid in self.cpu_groups]
        return sum(s for s in found if s is not None)

    def alive(self) -> bool:
        """True while every process of the proxy runs."""
        return all(proc.alive() for proc in self.procs)

    def stop(self) -> None:
        """Stop its processes by PID, and any group left behind (Envoy leads its own)."""
        for proc in self.procs:
            stop(proc, grace_s=5.0)
        for pgid in self.cpu_groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)


def start_backends(model: str, path: Path, log_dir: Path) -> list[tuple[Upstream, Running]]:
    """Start "main" and "b" (90 % and 10 % of the split), batching off so that a request's
    latency is its own; stop both if either fails."""
    options = ServerOptions(max_batch_size=1)
    started: list[tuple[Upstream, Running]] = []
    try:
        for variant, weight in (("main", 90), ("b", 10)):
            running = start_server("sluice", model, path, options, log_dir / variant)
            started.append((Upstream(variant, running.http_port, weight), running))
    except BaseException:
        for _, running in started:
            running.stop()
        raise
    return started


def start_proxy(name: str, upstreams: list[Upstream], cpu: int | None, workdir: Path) -> Target:
    """Start proxy ``name`` (one of ``PROXIES``) pinned to ``cpu`` (None: not pinned) and wait
    until a health request through it answers."""
    directory = workdir / name
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    if name == "sluice-router":
        argv = _sluice_router_argv(port, upstreams, directory)
    elif name == "nginx":
        config = directory / "nginx.conf"
        config.write_text(configs.nginx_config(port, upstreams, directory))
        argv = ["nginx", "-p", str(directory), "-c", str(config), "-e", str(directory / "err.log")]
    elif name == "haproxy":
        config = directory / "haproxy.cfg"
        config.write_text(configs.haproxy_config(port, upstreams))
        argv = ["haproxy", "-db", "-f", str(config)]
    else:
        raise ValueError(f"unknown proxy {name!r}: choose from {', '.join(PROXIES)}")
    proc = start(name, [*pin, *argv], workdir / "logs" / f"{name}.log")
    try:
        wait_ready(proc, [f"http://{LOOPBACK}:{port}/v2/health/ready"], READY_TIMEOUT_S)
    except BaseException:
        stop(proc, grace_s=5.0)
        raise
    # sluice-router's Envoy leads its own process group; nginx's worker shares the master's.
    groups = (proc.pid, *_children(proc.pid)) if name == "sluice-router" else (proc.pid,)
    return Target(name, port, [proc], groups)


def routes_file(workdir: Path) -> Path:
    """sluice-router's route table file under ``workdir`` (rewritten to change the split)."""
    return workdir / "sluice-router" / "routes.json"


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename, as a ConfigMap volume update does."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _sluice_router_argv(port: int, upstreams: list[Upstream], directory: Path) -> list[str]:
    write_atomically(routes_file(directory.parent), configs.route_table(upstreams))
    endpoints = directory / "endpoints.json"
    endpoints.write_text(configs.endpoints(upstreams))
    beside = Path(sys.executable).with_name("sluice-router")
    return [
        str(beside) if beside.exists() else "sluice-router",
        "--routes-file", str(routes_file(directory.parent)),
        "--endpoints-file", str(endpoints),
        "--config-dir", str(directory / "config"),
        "--address", LOOPBACK,
        "--http-port", str(port),
        "--grpc-port", str(free_port()),
        "--metrics-port", str(free_port()),
        "--admin-port", str(free_port()),
        "--concurrency", "1",
        "--drain-seconds", "1",
        "--log-level", "warning",
    ]  # fmt: skip


def _children(pid: int) -> list[int]:
    """The PIDs of ``pid``'s live child processes."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            # Fields after the parenthesised command: state ppid ...
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def proxy_versions() -> str:
    """The versions of Envoy, nginx and HAProxy, in one line."""
    found = []
    for argv in (
        [str(find_envoy(None)), "--version"],
        ["nginx", "-v"],
        ["haproxy", "-v"],
    ):
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            found.append(f"{argv[0]}: {exc}")
            continue
        lines = (done.stdout + done.stderr).strip().splitlines()
        name = Path(argv[0]).name
        found.append(lines[0].replace(argv[0], name).strip() if lines else f"{name}: ?")
    return "; ".join(found)
