"""Every sample in manifests/samples/ is accepted by the API server, and so are the children
the operator builds from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from sluice.operator import builders, spec

from e2e.cluster.client import Cluster

SAMPLES = sorted((Path(__file__).resolve().parents[2] / "manifests" / "samples").glob("*.yaml"))


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
