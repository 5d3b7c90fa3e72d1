"""Every sample in manifests/samples/, and the example of docs/api.md, is accepted by the API
server, and so are the children the operator builds from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from sluice.operator import builders, spec

from e2e.cluster.client import Cluster

REPO = Path(__file__).resolve().parents[2]
SAMPLES = sorted((REPO / "manifests" / "samples").glob("*.yaml"))
CREDENTIALS_SECTION = "#### Credentials from Secrets"


def documented_credentials_example() -> str:
    """The first YAML block under docs/api.md's "Credentials from Secrets": a Secret and an
    InferenceService reading it."""
    section = (REPO / "docs" / "api.md").read_text().split(CREDENTIALS_SECTION, 1)[1]
    return section.split("```yaml\n", 1)[1].split("```", 1)[0]


def dry_run_apply(cluster: Cluster, obj: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply ``obj`` as a dry run; the object as the API server would store it.
    Fails on any warning, such as a pod security violation."""
    result = cluster.kubectl(
        "apply", "--server-side", "--field-manager=sluice-test", "--dry-run=server",
        "-o", "json", "-f", "-", input=json.dumps(obj),
    )  # fmt: skip
    assert "Warning" not in result.stderr, result.stderr
    stored: dict[str, Any] = json.loads(result.stdout)
    return stored


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
        dry_run_apply(cluster, child)


@pytest.mark.cluster
@pytest.mark.usefixtures("crd")
def test_documented_credentials_example_renders_valid_pods(
    cluster: Cluster, namespace: str
) -> None:
    """The Secret-backed env of docs/api.md is accepted, and the Deployment the operator builds
    from it, which names the Secret in both containers, passes the restricted standard."""
    cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    example = documented_credentials_example()
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=example)
    (name,) = [d["metadata"]["name"] for d in yaml.safe_load_all(example) if d["kind"] != "Secret"]
    stored = cluster.kubectl("get", "infsvc", name, "-n", namespace, "-o", "json").stdout
    (deployment,) = [
        c
        for c in builders.desired_children(spec.parse(json.loads(stored)))
        if c["kind"] == "Deployment"
    ]
    pod = dry_run_apply(cluster, deployment)["spec"]["template"]["spec"]
    for container in (*pod["initContainers"], *pod["containers"]):
        refs = {
            e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e
        }
        assert refs == {
            "AWS_ACCESS_KEY_ID": {"name": "s3-credentials", "key": "access-key-id"},
            "AWS_SECRET_ACCESS_KEY": {"name": "s3-credentials", "key": "secret-access-key"},
        }
