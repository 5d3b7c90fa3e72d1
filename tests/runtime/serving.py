"""Run runtime servers for tests: in-process on a shared event-loop thread, or as a subprocess.

All servers listen on 127.0.0.1 with ports the kernel picks (in-process) or free ports found
just before start (subprocess); every helper stops what it started, within bounded time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import tritonclient.http as httpclient
from sluice.runtime.app import RuntimeApp, create_app
from sluice.runtime.settings import Settings

from e2e.cluster.waiting import wait_for

T = TypeVar("T")


class LoopThread:
    """One asyncio event loop on a daemon thread; coroutines are submitted from tests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run ``coro`` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        """Stop the loop and join its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@contextlib.contextmanager
def running_app(loop: LoopThread, settings: Settings) -> Iterator[RuntimeApp]:
    """Start an app on ``loop``; drain and stop it on exit."""

    async def start() -> RuntimeApp:
        app = create_app(settings)
        await app.start()
        return app

    app = loop.run(start())
    try:
        yield app
    finally:
        loop.run(app.drain())


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """``sluice-runtime serve`` as a subprocess on free loopback ports."""

    def __init__(
        self, *models: str, extra: tuple[str, ...] = (), env: dict[str, str] | None = None
    ):
        self.http_port = free_port()
        self.grpc_port = free_port()
        command = [
            sys.executable, "-m", "sluice.runtime", "serve",
            "--host", "127.0.0.1",
            "--http-port", str(self.http_port),
            "--grpc-port", str(self.grpc_port),
            *[arg for model in models for arg in ("--model", model)],
            *extra,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.http_url = f"127.0.0.1:{self.http_port}"
        self.grpc_url = f"127.0.0.1:{self.grpc_port}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Poll readiness until true; fail with the server's output if it exits or times out."""
        client = httpclient.InferenceServerClient(self.http_url)

        def ready_or_exited() -> bool:
            if self.process.poll() is not None:
                return True
            with contextlib.suppress(Exception):
                return bool(client.is_server_ready())
            return False

        try:
            wait_for(ready_or_exited, timeout=timeout, interval=0.1, what="the server to be ready")
        finally:
            client.close()
        if self.process.poll() is not None:
            raise AssertionError(f"server exited early:\n{self.output()}")

    def terminate(self) -> None:
        """Send SIGTERM (the graceful path)."""
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 60.0) -> int:
        """Wait for exit and return the exit code."""
        return self.process.wait(timeout)

    def output(self) -> str:
        """Everything the server printed (after it exited)."""
        assert self.process.stdout is not None
        if self.process.poll() is None:
            return "(still running)"
        return self.process.stdout.read()

    def stop(self) -> None:
        """Stop the server if still running: SIGTERM, then SIGKILL after a bound."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def model_arg(name: str, path: Path) -> str:
    """``NAME=PATH`` for --model."""
    return f"{name}={path}"
