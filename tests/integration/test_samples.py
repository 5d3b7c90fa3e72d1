"""Every sample in manifests/samples/ is applied and becomes Ready under the operator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from e2e.cluster import storage
from e2e.cluster.client import Cluster

from .support import Isvcs

pytestmark = pytest.mark.cluster

SAMPLES = sorted((Path(__file__).resolve().parents[2] / "manifests/samples").glob("*.yaml"))
assert SAMPLES, "manifests/samples/ holds the samples every release is tested with"


@pytest.fixture
def volumes(api: client.ApiClient) -> Iterator[list[str]]:
    """Names of PersistentVolumes made for a test, deleted afterwards (they are cluster-wide)."""
    made: list[str] = []
    yield made
    for name in made:
        client.CoreV1Api(api).delete_persistent_volume(name)


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
            claim = uri.removeprefix("pvc://").split("/")[0]
            volumes.append(storage.provide_claim(api, isvcs.namespace, claim))
    cluster.kubectl("apply", "-n", isvcs.namespace, "-f", str(sample))
    for doc in docs:
        isvcs.wait_condition(doc["metadata"]["name"], "Ready", "True")
