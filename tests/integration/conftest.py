"""Fixtures for the operator's integration tests.

The CRD and the operator's RBAC are installed from crds/ and manifests/operator/ exactly as a
user would install them; the operator then runs as the ``sluice-operator`` command with a
kubeconfig holding its ServiceAccount's token (``e2e.cluster.operator``), so a missing (or
needlessly broad) permission shows up here.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from e2e.cluster import operator as sluice_operator
from e2e.cluster.client import Cluster
from e2e.cluster.operator import OperatorProcess

from .support import Isvcs

OPERATOR_NAMESPACE = sluice_operator.NAMESPACE
OPERATOR_ACCOUNT = sluice_operator.ACCOUNT
# Short, so the idempotence test sees several resyncs; cheap with a handful of objects.
RESYNC_SECONDS = 3
# The image the operator is told to use, as the Helm chart tells it: not the published one, so
# the tests see that the flag, not the built-in default, reaches the pods.
RUNTIME_IMAGE = "localhost/sluice-runtime:under-test"

__all__ = [
    "OPERATOR_ACCOUNT",
    "OPERATOR_NAMESPACE",
    "RESYNC_SECONDS",
    "RUNTIME_IMAGE",
    "OperatorProcess",
]


@pytest.fixture(scope="session")
def installed(cluster: Cluster) -> Cluster:
    """The CRD and the operator's namespace, ServiceAccount and RBAC, applied as admin."""
    sluice_operator.install(cluster)
    return cluster


@pytest.fixture(scope="session")
def operator_kubeconfig(installed: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kubeconfig authenticating as the operator's ServiceAccount, nothing more."""
    return sluice_operator.kubeconfig(installed, tmp_path_factory.mktemp("operator") / "kubeconfig")


def start_operator(kubeconfig: Path, log: Path, *extra: str) -> OperatorProcess:
    """The operator as the tests run it: resyncing every ``RESYNC_SECONDS``, healthy."""
    return sluice_operator.start(kubeconfig, log, "--resync-seconds", str(RESYNC_SECONDS), *extra)


# Module scope: the operator watches every namespace, so it must be gone before tests that
# run operators of their own (one namespace, shortened Leases, failing starts) or write
# InferenceService status by hand on the same cluster.
@pytest.fixture(scope="module")
def operator(
    operator_kubeconfig: Path, api: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The operator, running as its ServiceAccount over all namespaces with ``RUNTIME_IMAGE``,
    and leading."""
    log = tmp_path_factory.mktemp("operator-log") / "operator.log"
    handle = start_operator(
        operator_kubeconfig, log, "--all-namespaces", "--runtime-image", RUNTIME_IMAGE
    )
    try:
        sluice_operator.wait_leading(api, timeout=40)
        yield handle
    finally:
        handle.stop()
        sys.stderr.write(f"operator log: {log}\n")


@pytest.fixture
def isvcs(api: client.ApiClient, namespace: str, operator: OperatorProcess) -> Isvcs:
    """InferenceService access in this test's namespace, with the operator running."""
    return Isvcs(api, namespace)
