"""Every sample in manifests/samples/ is applied and becomes Ready under the operator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from e2e.cluster.client import Cluster

from .support import Isvcs

pytestmark = pytest.mark.cluster

SAMPLES = sorted((Path(__file__).resolve().parents[2] / "manifests/samples").glob("*.yaml"))


@pytest.fixture
def volumes(api: client.ApiClient, namespace: str) -> Iterator[list[str]]:
    """Names of PersistentVolumes made for a test, deleted afterwards (they are cluster-wide)."""
    made: list[str] = []
    yield made
    for name in made:
        client.CoreV1Api(api).delete_persistent_volume(name)


def _provide_claim(api: client.ApiClient, namespace: str, claim: str, volumes: list[str]) -> None:
    """A PersistentVolumeClaim bound to a static volume, as a user with a model store has.

    The local cluster has no storage provisioner, so the volume is made by hand and the claim
    names it; the pods never run, so the volume's path never matters.
    """
    core = client.CoreV1Api(api)
    volume = f"{namespace}-{claim}"
    core.create_persistent_volume(
        {
            "metadata": {"name": volume},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadOnlyMany"],
                "storageClassName": "",
                "hostPath": {"path": f"/srv/{volume}"},
                "claimRef": {"namespace": namespace, "name": claim},
            },
        }
    )
    volumes.append(volume)
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": claim},
            "spec": {
                "accessModes": ["ReadOnlyMany"],
                "storageClassName": "",
                "volumeName": volume,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )


@pytest.mark.skipif(not SAMPLES, reason="manifests/samples/ holds no samples yet")
@pytest.mark.parametrize("sample", SAMPLES, ids=lambda path: path.name)
def test_sample_becomes_ready(
    sample: Path,
    cluster: Cluster,
    api: client.ApiClient,
    isvcs: Isvcs,
    volumes: list[str],
) -> None:
    docs: list[dict[str, Any]] = [
        doc
        for doc in yaml.safe_load_all(sample.read_text())
        if doc and doc.get("kind") == "InferenceService"
    ]
    assert docs, f"{sample.name} holds no InferenceService"
    for doc in docs:
        uri = doc["spec"]["model"]["uri"]
        if uri.startswith("pvc://"):
            _provide_claim(api, isvcs.namespace, uri.removeprefix("pvc://").split("/")[0], volumes)
    cluster.kubectl("apply", "-n", isvcs.namespace, "-f", str(sample))
    for doc in docs:
        isvcs.wait_condition(doc["metadata"]["name"], "Ready", "True")
