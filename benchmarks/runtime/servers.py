"""The servers under test: how to start each one on loopback and when it is ready."""

from __future__ import annotations

import shutil
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.runtime.ort import SPIN_ENV
from benchmarks.runtime.procs import LOOPBACK, Managed, free_port, start, stop, wait_ready


@dataclass
class ServerOptions:
    """Settings shared by every server in one run."""

    max_batch_size: int = 32
    max_queue_delay_us: int = 2000
    providers: str = ""
    sluice_bin: str = ""
    sluice_args: list[str] = field(default_factory=list)
    anchor_spinning: bool = False
    ready_timeout_s: float = 180.0


@dataclass
class Running:
    """A started server: its process and loopback addresses."""

    name: str
    proc: Managed
    http_port: int
    grpc_port: int

    @property
    def http_url(self) -> str:
        """host:port of its HTTP endpoint."""
        return f"{LOOPBACK}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        """host:port of its gRPC endpoint."""
        return f"{LOOPBACK}:{self.grpc_port}"

    def stop(self) -> None:
        """Stop it by PID."""
        stop(self.proc)


def find_sluice_bin(explicit: str = "") -> str:
    """The ``sluice-runtime`` executable: explicit, next to this interpreter, or on PATH."""
    if explicit:
        return explicit
    beside = Path(sys.executable).with_name("sluice-runtime")
    if beside.exists():
        return str(beside)
    return shutil.which("sluice-runtime") or "sluice-runtime"


def _sluice_argv(model: str, path: Path, http: int, grpc: int, opts: ServerOptions) -> list[str]:
    argv = [
        find_sluice_bin(opts.sluice_bin), "serve",
        "--model", f"{model}={path}",
        "--host", LOOPBACK,
        "--http-port", str(http),
        "--grpc-port", str(grpc),
        "--max-batch-size", str(opts.max_batch_size),
        "--max-queue-delay-us", str(opts.max_queue_delay_us),
    ]  # fmt: skip
    if opts.providers:
        argv += ["--providers", *opts.providers.split(",")]
    return argv + list(opts.sluice_args)


def _pytriton_argv(model: str, path: Path, http: int, grpc: int, opts: ServerOptions) -> list[str]:
    return [
        sys.executable, "-m", "benchmarks.runtime.serve_pytriton",
        "--model", f"{model}={path}",
        "--http-port", str(http),
        "--grpc-port", str(grpc),
        "--metrics-port", str(free_port()),
        "--max-batch-size", str(opts.max_batch_size),
        "--max-queue-delay-us", str(opts.max_queue_delay_us),
        "--providers", opts.providers,
    ]  # fmt: skip


def _kserve_argv(model: str, path: Path, http: int, grpc: int, opts: ServerOptions) -> list[str]:
    return [
        sys.executable, "-m", "benchmarks.runtime.serve_kserve",
        "--model", f"{model}={path}",
        "--http-port", str(http),
        "--grpc-port", str(grpc),
        "--providers", opts.providers,
    ]  # fmt: skip


def _pytriton_env() -> dict[str, str]:
    """Make Triton's Python-backend stub load this interpreter's own libpython."""
    import os

    libdir = sysconfig.get_config_var("LIBDIR") or ""
    current = os.environ.get("LD_LIBRARY_PATH", "")
    return {"LD_LIBRARY_PATH": ":".join(p for p in (libdir, current) if p)}


ArgvBuilder = Callable[[str, Path, int, int, ServerOptions], list[str]]
_ARGV: dict[str, ArgvBuilder] = {
    "sluice": _sluice_argv,
    "pytriton": _pytriton_argv,
    "kserve": _kserve_argv,
}


def start_server(
    server: str, model: str, path: Path, opts: ServerOptions, log_dir: Path
) -> Running:
    """Start ``server`` serving ``model`` from ``path`` and wait until the model is ready."""
    http, grpc = free_port(), free_port()
    while grpc == http:
        grpc = free_port()
    argv = _ARGV[server](model, path, http, grpc, opts)
    env = _pytriton_env() if server == "pytriton" else {}
    env[SPIN_ENV] = "1" if opts.anchor_spinning else "0"
    proc = start(server, argv, log_dir / f"{server}-{model}.log", env)
    base = f"http://{LOOPBACK}:{http}"
    try:
        wait_ready(
            proc,
            [f"{base}/v2/health/ready", f"{base}/v2/models/{model}/ready"],
            opts.ready_timeout_s,
        )
    except BaseException:
        stop(proc)
        raise
    return Running(server, proc, http, grpc)
