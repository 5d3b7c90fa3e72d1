"""The Helm chart: it installs the same operator as manifests/operator/, checks its values
against values.schema.json, and installs, upgrades and keeps the CRDs of crds/, on a real
cluster."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from sluice.operator.__main__ import parse_args
from sluice.operator.pods import DEFAULT_IMAGES

from e2e.cluster.client import Cluster
from e2e.cluster.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "sluice"
MANIFESTS = ROOT / "manifests" / "operator"
CRD_FILE = ROOT / "crds" / "inferenceservices.serving.sluice.dev.yaml"
CRD_NAME = "inferenceservices.serving.sluice.dev"
SAMPLE = ROOT / "manifests" / "samples" / "cpu-resnet.yaml"
# Metadata that the chart adds to the CRD of crds/ (Helm adds its own ownership annotations).
CHART_LABELS = {
    "app.kubernetes.io/instance",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/version",
    "helm.sh/chart",
}

pytestmark = pytest.mark.cluster


def render(cluster: Cluster, release: str, namespace: str, *sets: str) -> list[dict[str, Any]]:
    """The chart's objects as ``helm template`` renders them with ``--set`` values."""
    args = ["template", release, str(CHART), "-n", namespace, "--kube-version", "1.34.4"]
    for value in sets:
        args += ["--set", value]
    return [doc for doc in yaml.safe_load_all(cluster.helm(*args).stdout) if doc]


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in docs}


def operator_args(docs: list[dict[str, Any]]) -> list[str]:
    args: list[str] = by_kind(docs)["Deployment"]["spec"]["template"]["spec"]["containers"][0][
        "args"
    ]
    return args


def read_crd(cluster: Cluster) -> dict[str, Any]:
    crd: dict[str, Any] = json.loads(cluster.kubectl("get", "crd", CRD_NAME, "-o", "json").stdout)
    return crd


def test_chart_lints_strictly(cluster: Cluster) -> None:
    result = cluster.helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("replicaCount=two", "/replicaCount"),
        ("replicaCount=0", "/replicaCount"),
        ("logFormat=xml", "/logFormat"),
        ("replicas=2", "'replicas'"),
        ("images.runtime.repository=sluice-runtime:dev", "/images/runtime/repository"),
        ("crds.install=maybe", "/crds/install"),
    ],
)
def test_wrong_value_is_refused_naming_it(cluster: Cluster, value: str, named: str) -> None:
    template = cluster.helm(
        "template", "sluice", str(CHART), "--kube-version", "1.34.4", "--set", value, check=False
    )
    assert template.returncode != 0
    assert named in template.stderr
    lint = cluster.helm("lint", "--strict", str(CHART), "--set", value, check=False)
    assert lint.returncode != 0
    assert named in lint.stdout


def test_chart_renders_what_the_plain_manifests_install(cluster: Cluster) -> None:
    chart = by_kind(render(cluster, "sluice", "sluice-system"))
    plain = by_kind(
        [
            doc
            for path in sorted(MANIFESTS.glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text())
            if doc
        ]
    )
    for kind in (
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
    ):
        assert chart[kind]["metadata"]["name"] == plain[kind]["metadata"]["name"], kind
    assert chart["ClusterRole"]["rules"] == plain["ClusterRole"]["rules"]
    assert chart["Role"]["rules"] == plain["Role"]["rules"]
    assert chart["ClusterRoleBinding"]["subjects"] == plain["ClusterRoleBinding"]["subjects"]

    chart_pod = chart["Deployment"]["spec"]["template"]["spec"]
    plain_pod = plain["Deployment"]["spec"]["template"]["spec"]
    for field in (
        "serviceAccountName",
        "securityContext",
        "volumes",
        "terminationGracePeriodSeconds",
    ):
        assert chart_pod[field] == plain_pod[field], field
    chart_container, plain_container = chart_pod["containers"][0], plain_pod["containers"][0]
    for field in (
        "image",
        "args",
        "securityContext",
        "livenessProbe",
        "resources",
        "ports",
        "env",
        "volumeMounts",
    ):
        assert chart_container[field] == plain_container[field], field


def test_watch_namespaces_become_operator_flags(cluster: Cluster) -> None:
    docs = render(cluster, "team", "ml", "watchNamespaces={a,b}", "replicaCount=1")
    args = operator_args(docs)
    assert args[:2] == ["--namespace=a", "--namespace=b"]
    assert "--all-namespaces" not in args
    assert "--lease-name=team-operator" in args
    assert by_kind(docs)["Role"]["rules"][1]["resourceNames"] == ["team-operator"]


def test_images_become_operator_flags(cluster: Cluster) -> None:
    defaults = operator_args(render(cluster, "sluice", "sluice-system"))
    assert "--runtime-image=ghcr.io/sluice-dev/sluice-runtime:0.1.0" in defaults
    assert "--triton-image=nvcr.io/nvidia/tritonserver:24.08-py3" in defaults

    local = render(
        cluster,
        "sluice",
        "sluice-system",
        "image.repository=localhost/sluice-operator",
        "images.runtime.repository=localhost/sluice-runtime",
        "images.runtime.tag=dev",
        "images.triton.repository=localhost:5000/tritonserver",
        "images.triton.tag=25.01-py3",
    )
    args = operator_args(local)
    assert "--runtime-image=localhost/sluice-runtime:dev" in args
    assert "--triton-image=localhost:5000/tritonserver:25.01-py3" in args
    container = by_kind(local)["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "localhost/sluice-operator:0.1.0"


def test_operator_reads_the_chart_args_with_its_own_default_images(cluster: Cluster) -> None:
    """The chart's defaults (and so the plain manifests') are the operator's built-in ones."""
    args = parse_args(operator_args(render(cluster, "sluice", "sluice-system")))
    assert args.runtime_image == DEFAULT_IMAGES.runtime
    assert args.triton_image == DEFAULT_IMAGES.triton
    assert args.lease_name == "sluice-operator"


def test_chart_renders_the_crds_of_crds_folder_kept_on_uninstall(cluster: Cluster) -> None:
    crd = by_kind(render(cluster, "sluice", "sluice-system"))["CustomResourceDefinition"]
    assert crd["metadata"].pop("annotations") == {"helm.sh/resource-policy": "keep"}
    labels = crd["metadata"]["labels"]
    assert labels["app.kubernetes.io/instance"] == "sluice"
    crd["metadata"]["labels"] = {k: v for k, v in labels.items() if k not in CHART_LABELS}
    assert crd == yaml.safe_load(CRD_FILE.read_text())


def test_chart_renders_no_crd_when_told_not_to(cluster: Cluster) -> None:
    docs = render(cluster, "sluice", "sluice-system", "crds.install=false")
    kinds = {doc["kind"] for doc in docs}
    assert "CustomResourceDefinition" not in kinds
    assert "Deployment" in kinds


def older_chart(directory: Path) -> Path:
    """A copy of the chart whose CRD is an older one: another schema description and one
    printer column fewer."""
    chart = directory / "sluice"
    shutil.copytree(CHART, chart)
    crd_path = chart / "files" / "crds" / CRD_FILE.name
    crd = yaml.safe_load(crd_path.read_text())
    version = crd["spec"]["versions"][0]
    version["schema"]["openAPIV3Schema"]["description"] = "An older InferenceService."
    version["additionalPrinterColumns"].pop()
    crd_path.write_text(yaml.safe_dump(crd))
    return chart


def adopt_crd(cluster: Cluster, release: str, namespace: str) -> None:
    """Mark the CRD as the release's, so that Helm takes it over (docs/install.md)."""
    cluster.kubectl(
        "annotate", "--overwrite", "crd", CRD_NAME,
        f"meta.helm.sh/release-name={release}", f"meta.helm.sh/release-namespace={namespace}",
    )  # fmt: skip
    cluster.kubectl("label", "--overwrite", "crd", CRD_NAME, "app.kubernetes.io/managed-by=Helm")


def test_helm_install_upgrade_and_uninstall(
    cluster: Cluster, api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    release = namespace  # unique, so its cluster-scoped objects never collide
    name = f"{release}-operator"
    apps, rbac = client.AppsV1Api(api), client.RbacAuthorizationV1Api(api)
    source = yaml.safe_load(CRD_FILE.read_text())
    # The CRD as `kubectl apply -f crds/` leaves it, which the release adopts; installing an
    # older chart then writes its older CRD into the API server.
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    adopt_crd(cluster, release, namespace)
    cluster.helm(
        "install", release, str(older_chart(tmp_path)), "-n", namespace,
        "--set", "replicaCount=1", "--wait", "--timeout", "120s",
    )  # fmt: skip
    # helm --wait accepts replicas - maxUnavailable ready pods, which is 0 here.
    wait_for(
        lambda: apps.read_namespaced_deployment(name, namespace).status.ready_replicas == 1,
        what="the operator Deployment's pod to be ready",
    )
    assert rbac.read_cluster_role(name).rules
    installed = read_crd(cluster)
    assert installed["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert installed["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["description"] == (
        "An older InferenceService."
    )
    assert installed["spec"]["versions"] != source["spec"]["versions"]

    cluster.helm(
        "upgrade", release, str(CHART), "-n", namespace,
        "--set", "images.runtime.repository=localhost/sluice-runtime",
        "--set", "images.runtime.tag=dev", "--wait", "--timeout", "120s",
    )  # fmt: skip
    assert read_crd(cluster)["spec"]["versions"] == source["spec"]["versions"]
    deployment = apps.read_namespaced_deployment(name, namespace)
    assert deployment.spec.replicas == 2
    assert "--runtime-image=localhost/sluice-runtime:dev" in (
        deployment.spec.template.spec.containers[0].args
    )
    history = json.loads(cluster.helm("history", release, "-n", namespace, "-o", "json").stdout)
    assert [entry["status"] for entry in history] == ["superseded", "deployed"]

    cluster.kubectl("apply", "-n", namespace, "-f", str(SAMPLE))
    cluster.helm("uninstall", release, "-n", namespace, "--wait", "--timeout", "120s")
    with pytest.raises(client.ApiException) as role_gone:
        rbac.read_cluster_role(name)
    assert role_gone.value.status == 404
    with pytest.raises(client.ApiException) as deployment_gone:
        apps.read_namespaced_deployment(name, namespace)
    assert deployment_gone.value.status == 404
    # The CRD stays, and with it the InferenceServices of its users.
    assert read_crd(cluster)["spec"]["versions"] == source["spec"]["versions"]
    kept = cluster.kubectl("get", "infsvc", "-n", namespace, "-o", "name").stdout.split()
    assert kept == ["inferenceservice.serving.sluice.dev/resnet-cpu"]
