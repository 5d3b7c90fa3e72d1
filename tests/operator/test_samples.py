"""Every sample in manifests/samples/ is accepted by the API server and by the operator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from sluice.operator import builders, spec

from e2e.cluster.client import Cluster

SAMPLES = sorted((Path(__file__).resolve().parents[2] / "manifests" / "samples").glob("*.yaml"))


def test_there_are_samples() -> None:
    assert len(SAMPLES) >= 3


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.name for s in SAMPLES])
def test_sample_builds_children(sample: Path) -> None:
    body: dict[str, Any] = yaml.safe_load(sample.read_text())
    assert sample.read_text().startswith("#"), "every sample opens with a comment header"
    body["metadata"]["namespace"] = "samples"
    isvc = spec.parse(body)
    names = [child["metadata"]["name"] for child in builders.desired_children(isvc)]
    assert names == [builders.deployment_name(isvc), builders.service_name(isvc)]


@pytest.mark.cluster
@pytest.mark.usefixtures("crd")
@pytest.mark.parametrize("sample", SAMPLES, ids=[s.name for s in SAMPLES])
def test_sample_is_accepted_by_the_api_server(
    cluster: Cluster, namespace: str, sample: Path
) -> None:
    applied = cluster.kubectl("apply", "-n", namespace, "-f", str(sample))
    assert "created" in applied.stdout
    source = yaml.safe_load(sample.read_text())
    name = source["metadata"]["name"]
    got = cluster.kubectl("get", "infsvc", name, "-n", namespace, "-o", "json")
    # The operator accepts the stored, defaulted object and reads the file's intent from it.
    isvc = spec.parse(json.loads(got.stdout))
    assert isvc.model.uri == source["spec"]["model"]["uri"]


@pytest.mark.cluster
@pytest.mark.usefixtures("crd")
@pytest.mark.parametrize("sample", SAMPLES, ids=[s.name for s in SAMPLES])
def test_sample_children_are_valid_restricted_objects(
    cluster: Cluster, namespace: str, sample: Path
) -> None:
    """The API server accepts every child, and the pods meet the restricted security standard."""
    cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    cluster.kubectl("apply", "-n", namespace, "-f", str(sample))
    name = yaml.safe_load(sample.read_text())["metadata"]["name"]
    stored = cluster.kubectl("get", "infsvc", name, "-n", namespace, "-o", "json").stdout
    for child in builders.desired_children(spec.parse(json.loads(stored))):
        result = cluster.kubectl(
            "apply",
            "--server-side",
            "--field-manager=sluice-test",
            "--dry-run=server",
            "-f",
            "-",
            input=json.dumps(child),
        )
        assert "Warning" not in result.stderr, result.stderr
