"""The Helm chart installs the same operator as manifests/operator/, on a real cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from e2e.cluster.client import Cluster
from e2e.cluster.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "sluice"
MANIFESTS = ROOT / "manifests" / "operator"

pytestmark = pytest.mark.cluster


def render(cluster: Cluster, release: str, namespace: str, *sets: str) -> list[dict[str, Any]]:
    args = ["template", release, str(CHART), "-n", namespace, "--kube-version", "1.34.4"]
    for value in sets:
        args += ["--set", value]
    return [doc for doc in yaml.safe_load_all(cluster.helm(*args).stdout) if doc]


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in docs}


def test_chart_lints(cluster: Cluster) -> None:
    result = cluster.helm("lint", str(CHART))
    assert "0 chart(s) failed" in result.stdout


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
        "securityContext",
        "livenessProbe",
        "resources",
        "ports",
        "env",
        "volumeMounts",
    ):
        assert chart_container[field] == plain_container[field], field
    # The chart names the Lease after the release; for the release "sluice" that is the default.
    assert set(chart_container["args"]) - set(plain_container["args"]) == {
        "--lease-name=sluice-operator"
    }


def test_watch_namespaces_become_operator_flags(cluster: Cluster) -> None:
    docs = by_kind(render(cluster, "team", "ml", "watchNamespaces={a,b}", "replicaCount=1"))
    args = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["--namespace=a", "--namespace=b"]
    assert "--all-namespaces" not in args
    assert "--lease-name=team-operator" in args
    assert docs["Role"]["rules"][1]["resourceNames"] == ["team-operator"]


def test_helm_install_and_uninstall(
    cluster: Cluster, api: client.ApiClient, namespace: str
) -> None:
    release = namespace  # unique, so its cluster-scoped objects never collide
    cluster.helm(
        "install", release, str(CHART), "-n", namespace,
        "--set", "replicaCount=1", "--wait", "--timeout", "120s",
    )  # fmt: skip
    name = f"{release}-operator"
    # helm --wait accepts replicas - maxUnavailable ready pods, which is 0 here.
    wait_for(
        lambda: (
            client.AppsV1Api(api).read_namespaced_deployment(name, namespace).status.ready_replicas
            == 1
        ),
        what="the operator Deployment's pod to be ready",
    )
    crd = json.loads(
        cluster.kubectl("get", "crd", "inferenceservices.serving.sluice.dev", "-o", "json").stdout
    )
    assert crd["spec"]["names"]["shortNames"] == ["infsvc"]
    rbac = client.RbacAuthorizationV1Api(api)
    assert rbac.read_cluster_role(name).rules

    cluster.helm("uninstall", release, "-n", namespace, "--wait", "--timeout", "120s")
    with pytest.raises(client.ApiException) as gone:
        rbac.read_cluster_role(name)
    assert gone.value.status == 404
