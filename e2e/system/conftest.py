"""Sluice installed on the session cluster by its Helm chart, and InferenceServices whose pods
really run on the real node, for the whole-system tests.

The operator's integration tests (tests/integration) run before these in the same session
and apply the CRD and the operator's RBAC with kubectl; Helm takes those objects over
(``--take-ownership``), as it would for a user moving from ``kubectl apply`` to the chart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kubernetes import client
from sluice.contracts import ports

from e2e import inference
from e2e.cluster import model_store, release
from e2e.cluster import operator as sluice_operator
from e2e.cluster.client import Cluster
from e2e.cluster.fixtures import fresh_namespace
from e2e.cluster.waiting import wait_for
from tests.cluster.realpods import DIRECT
from tests.integration.support import Isvcs, isvc_body

READY_TIMEOUT = 240.0  # seconds; a pod fetches its model, loads it and warms up in a few


@pytest.fixture(scope="session")
def sluice(cluster: Cluster) -> Cluster:
    """The cluster with Sluice installed by Helm from the locally built images."""
    release.install(cluster, release.image_flags(cluster, lambda message: None), "--take-ownership")
    with cluster.api_client() as api:
        leading_pod(api)
    return cluster


def operator_pods(api: client.ApiClient) -> list[str]:
    """The operator's pods that are not being deleted."""
    pods = client.CoreV1Api(api).list_namespaced_pod(
        sluice_operator.NAMESPACE, label_selector="app.kubernetes.io/name=sluice-operator"
    )
    return [p.metadata.name for p in pods.items if p.metadata.deletion_timestamp is None]


def leading_pod(api: client.ApiClient, timeout: float = 120) -> str:
    """Wait until one of the operator's current pods holds the Lease (whose identity is
    ``POD_NONCE``; a pod gone without handing it over holds it until it expires)."""

    def leader() -> str | None:
        holder = sluice_operator.leader(api)
        pod = holder.rsplit("_", 1)[0] if holder else None
        return pod if pod in operator_pods(api) else None

    return wait_for(leader, timeout=timeout, what="one of the operator's pods to lead")


@pytest.fixture
def isvcs(sluice: Cluster, api: client.ApiClient) -> Iterator[Isvcs]:
    """InferenceService verbs in a fresh namespace whose pods run on the real node."""
    with fresh_namespace(api, fake_nodes=False) as name:
        yield Isvcs(api, name)


@dataclass(frozen=True)
class Served:
    """An InferenceService that is Ready, and how to reach and check it."""

    name: str
    cluster_ip: str
    http: str
    grpc: str


def model_uri(cluster: Cluster, version: int) -> str:
    """The sample model's version ``version`` on the cluster's model server."""
    return f"{cluster.models_url}/{model_store.sample_path(version)}"


def model_file(cluster: Cluster, version: int) -> Path:
    """The same model's file on this machine."""
    return model_store.folder(cluster.workdir) / model_store.sample_path(version)


def serve(
    isvcs: Isvcs,
    name: str,
    uri: str,
    *,
    gpus: int = 0,
    replicas: int = 1,
    spec: dict[str, Any] | None = None,
) -> Served:
    """Create an InferenceService of the sample model, with ``spec`` merged into its spec,
    and wait until it is Ready."""
    body = isvc_body(name, gpus=gpus, replicas=replicas, **(spec or {}))
    body["spec"]["model"] = {"uri": uri, "name": model_store.SAMPLE}
    isvcs.create(body)
    isvcs.wait_condition(name, "Ready", "True", timeout=READY_TIMEOUT)
    ip = isvcs.core.read_namespaced_service(name, isvcs.namespace).spec.cluster_ip
    # kube-proxy writes the Service's rules within a second or so of its endpoints.
    wait_for(
        lambda: answers(f"http://{ip}:{ports.SERVICE_HTTP_PORT}{ports.READY_PATH}"),
        timeout=30,
        what=f"Service {name} to answer at {ip}",
    )
    return Served(name, ip, f"{ip}:{ports.SERVICE_HTTP_PORT}", f"{ip}:{ports.SERVICE_GRPC_PORT}")


def answers(url: str) -> bool:
    """Whether a GET of ``url`` (an address of this cluster) answers 200."""
    try:
        with DIRECT.open(url, timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def batch() -> np.ndarray:
    """The input every whole-system test sends."""
    return inference.sample_input(2, model_store.SAMPLE_SIZES[0])


def versions(cluster: Cluster) -> dict[str, np.ndarray]:
    """The answer each sample version gives to ``batch()``, by version name."""
    return {
        f"v{version}": inference.expected(model_file(cluster, version), batch())
        for version in model_store.SAMPLE_VERSIONS
    }


def classifier(cluster: Cluster) -> Callable[[np.ndarray], str]:
    """A function naming which version gave an answer ("other" when none did)."""
    known = versions(cluster)

    def classify(answer: np.ndarray) -> str:
        for name, want in known.items():
            if np.allclose(answer, want, rtol=1e-4, atol=1e-5):
                return name
        return "other"

    return classify
