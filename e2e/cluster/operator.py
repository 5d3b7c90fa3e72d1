"""The operator on a local cluster, installed and run the way its users run it.

The CRD and the operator's RBAC come from crds/ and manifests/operator/; the operator runs as
the real ``sluice-operator`` command with a kubeconfig holding its ServiceAccount's token, so
a missing (or needlessly broad) permission shows up at once. Used by the integration tests
(tests/integration), the demo (``e2e/demo.py``) and the operator benchmark
(``benchmarks/operator/runner.py``), so that all three start, wait for and stop it alike.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client

from e2e.cluster.client import Cluster
from e2e.cluster.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
RBAC = (ROOT / "manifests/operator/00-namespace.yaml", ROOT / "manifests/operator/10-rbac.yaml")
NAMESPACE = "sluice-system"
ACCOUNT = "sluice-operator"
LEASE = "sluice-operator"
# The console script beside this interpreter, run by the interpreter itself: the process's
# executable is then this Python, which is what a PID registry checks before signalling it.
SCRIPT = Path(sys.executable).with_name("sluice-operator")


def install(cluster: Cluster) -> None:
    """Apply the CRD and the operator's namespace, ServiceAccount and RBAC, as admin."""
    cluster.kubectl("apply", "--server-side", "-f", str(CRDS))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS))
    for manifest in RBAC:
        cluster.kubectl("apply", "--server-side", "-f", str(manifest))


def kubeconfig(cluster: Cluster, path: Path) -> Path:
    """Write a kubeconfig authenticating as the operator's ServiceAccount, nothing more."""
    return cluster.service_account_kubeconfig(NAMESPACE, ACCOUNT, path)


def command(kubeconfig_path: Path | None, *args: str) -> list[str]:
    """The ``sluice-operator`` command line, with ``--kubeconfig`` when one is given."""
    flags = ["--kubeconfig", str(kubeconfig_path)] if kubeconfig_path is not None else []
    return [sys.executable, str(SCRIPT), *flags, *args]


@dataclass
class OperatorProcess:
    """One running ``sluice-operator``: its process, log file and liveness address."""

    process: subprocess.Popen[bytes]
    log: Path
    health_url: str

    def alive(self) -> bool:
        """True until the process exits."""
        return self.process.poll() is None

    def healthy(self) -> bool:
        """True while ``/healthz`` answers 200."""
        try:
            with urllib.request.urlopen(self.health_url, timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def log_text(self) -> str:
        """Everything the operator wrote to stdout and stderr so far."""
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM by PID, SIGKILL if it has not stopped after ``timeout``; the exit code."""
        if self.alive():
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
        return self.process.wait(timeout=10)

    def kill(self) -> int:
        """SIGKILL by PID, as a crash would end it: no clean hand-over of the Lease."""
        if self.alive():
            os.kill(self.process.pid, signal.SIGKILL)
        return self.process.wait(timeout=10)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(
    kubeconfig_path: Path | None,
    log: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 30,
) -> OperatorProcess:
    """Start ``sluice-operator`` with ``args`` and liveness on a free loopback port, and wait
    until ``/healthz`` answers (a standby is healthy too). Raises if it exits first."""
    port = free_port()
    argv = command(
        kubeconfig_path, "--liveness-host", "127.0.0.1", "--liveness-port", str(port), *args
    )
    with log.open("wb") as sink:
        process = subprocess.Popen(
            argv, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT, env=env, stdin=subprocess.DEVNULL
        )
    handle = OperatorProcess(process, log, f"http://127.0.0.1:{port}/healthz")
    wait_for(
        lambda: handle.healthy() or not handle.alive(), what="operator liveness", timeout=timeout
    )
    if not handle.alive():
        raise RuntimeError(
            f"sluice-operator exited with {process.returncode}:\n{handle.log_text()[-4000:]}"
        )
    return handle


def leader(api: client.ApiClient, namespace: str = NAMESPACE, name: str = LEASE) -> str | None:
    """The identity holding the Lease, if any."""
    try:
        lease = client.CoordinationV1Api(api).read_namespaced_lease(name, namespace)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise
    holder: str | None = lease.spec.holder_identity
    return holder


def wait_leading(
    api: client.ApiClient, *, namespace: str = NAMESPACE, name: str = LEASE, timeout: float = 60
) -> str:
    """Wait until some operator holds the Lease; its identity."""
    return wait_for(
        lambda: leader(api, namespace, name),
        what=f"a holder of Lease {namespace}/{name}",
        timeout=timeout,
    )
