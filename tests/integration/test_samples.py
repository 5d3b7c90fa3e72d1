"""Every sample in manifests/samples/ is applied and becomes Ready under the operator."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from e2e.cluster.client import Cluster

from .support import Isvcs

pytestmark = pytest.mark.cluster

SAMPLES = sorted((Path(__file__).resolve().parents[2] / "manifests/samples").glob("*.yaml"))


@pytest.mark.skipif(not SAMPLES, reason="manifests/samples/ holds no samples yet")
@pytest.mark.parametrize("sample", SAMPLES, ids=lambda path: path.name)
def test_sample_becomes_ready(sample: Path, cluster: Cluster, isvcs: Isvcs) -> None:
    cluster.kubectl("apply", "-n", isvcs.namespace, "-f", str(sample))
    names = [
        doc["metadata"]["name"]
        for doc in yaml.safe_load_all(sample.read_text())
        if doc and doc.get("kind") == "InferenceService"
    ]
    assert names, f"{sample.name} holds no InferenceService"
    for name in names:
        isvcs.wait_condition(name, "Ready", "True")
