"""Fixtures for the operator's integration tests.

The CRD and the operator's RBAC are installed from crds/ and manifests/operator/ exactly as a
user would install them; the operator then runs as a subprocess with a kubeconfig holding its
ServiceAccount's token, so a missing (or needlessly broad) permission shows up here.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client

from e2e.cluster.client import Cluster
from e2e.cluster.waiting import wait_for

from .support import Isvcs

ROOT = Path(__file__).resolve().parents[2]
RBAC = [ROOT / "manifests/operator/00-namespace.yaml", ROOT / "manifests/operator/10-rbac.yaml"]
CRDS = ROOT / "crds"
OPERATOR_NAMESPACE = "sluice-system"
OPERATOR_ACCOUNT = "sluice-operator"
# Short, so the idempotence test sees several resyncs; cheap with a handful of objects.
RESYNC_SECONDS = 3


@dataclass
class OperatorProcess:
    """The operator subprocess under test."""

    process: subprocess.Popen[bytes]
    log: Path
    health_url: str

    def alive(self) -> bool:
        return self.process.poll() is None

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.health_url, timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def installed(cluster: Cluster) -> Cluster:
    """The CRD and the operator's namespace, ServiceAccount and RBAC, applied as admin."""
    cluster.kubectl("apply", "--server-side", "-f", str(CRDS))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS))
    for manifest in RBAC:
        cluster.kubectl("apply", "--server-side", "-f", str(manifest))
    return cluster


@pytest.fixture(scope="session")
def operator_kubeconfig(installed: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kubeconfig authenticating as the operator's ServiceAccount, nothing more."""
    path = tmp_path_factory.mktemp("operator") / "kubeconfig"
    return installed.service_account_kubeconfig(OPERATOR_NAMESPACE, OPERATOR_ACCOUNT, path)


def start_operator(kubeconfig: Path, log: Path, *extra: str) -> OperatorProcess:
    """Start ``python -m sluice.operator`` and wait until it is healthy."""
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "sluice.operator",
        "--kubeconfig",
        str(kubeconfig),
        "--liveness-host",
        "127.0.0.1",
        "--liveness-port",
        str(port),
        "--resync-seconds",
        str(RESYNC_SECONDS),
        *extra,
    ]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT)
    handle = OperatorProcess(process, log, f"http://127.0.0.1:{port}/healthz")
    wait_for(lambda: handle.healthy() or not handle.alive(), what="operator liveness", timeout=30)
    assert handle.alive(), handle.log_text()
    return handle


def stop_operator(handle: OperatorProcess) -> int:
    """SIGTERM by PID, then SIGKILL if it does not stop in time; the exit code."""
    if handle.alive():
        os.kill(handle.process.pid, signal.SIGTERM)
        try:
            return handle.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(handle.process.pid, signal.SIGKILL)
    return handle.process.wait(timeout=10)


def leader(api: client.ApiClient) -> str | None:
    """The identity holding the operator's Lease, if any."""
    try:
        lease = client.CoordinationV1Api(api).read_namespaced_lease(
            OPERATOR_ACCOUNT, OPERATOR_NAMESPACE
        )
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise
    holder: str | None = lease.spec.holder_identity
    return holder


# Package scope: the operator watches every namespace, so it must be gone before other test
# packages write InferenceService status by hand on the same cluster.
@pytest.fixture(scope="package")
def operator(
    operator_kubeconfig: Path, api: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The operator, running as its ServiceAccount over all namespaces, and leading."""
    log = tmp_path_factory.mktemp("operator-log") / "operator.log"
    handle = start_operator(operator_kubeconfig, log, "--all-namespaces")
    try:
        wait_for(lambda: leader(api), what="the operator to take the Lease", timeout=40)
        yield handle
    finally:
        stop_operator(handle)
        sys.stderr.write(f"operator log: {log}\n")


@pytest.fixture
def isvcs(api: client.ApiClient, namespace: str, operator: OperatorProcess) -> Isvcs:
    """InferenceService access in this test's namespace, with the operator running."""
    return Isvcs(api, namespace)
