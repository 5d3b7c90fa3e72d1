"""The local control plane is a real Kubernetes: CRDs, scheduling, RBAC, server-side apply."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from e2e.cluster.client import Cluster
from e2e.cluster.nodes import GPU_PRODUCT_LABEL, GPU_RESOURCE
from e2e.cluster.waiting import wait_for

pytestmark = pytest.mark.cluster

WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.sluice.dev
spec:
  group: example.sluice.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              description: What the widget should be.
              properties:
                size:
                  type: integer
                  minimum: 1
                  description: How many sprockets the widget holds.
"""


def test_nodes_offer_gpus(cluster: Cluster) -> None:
    # The fake GPU nodes (the real node's GPUs are tests/cluster/test_real_node.py's).
    nodes = json.loads(cluster.kubectl("get", "nodes", "-l", "type=kwok", "-o", "json").stdout)
    nodes = nodes["items"]
    assert len(nodes) == 3
    for node in nodes:
        assert node["status"]["allocatable"][GPU_RESOURCE] == "8"
        assert node["metadata"]["labels"][GPU_PRODUCT_LABEL].startswith("NVIDIA-")
    versions = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert versions["serverVersion"]["gitVersion"] == versions["clientVersion"]["gitVersion"]
    assert versions["serverVersion"]["gitVersion"].startswith("v1.")


def test_crd_applied_with_kubectl_is_explained(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=WIDGET_CRD)
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/widgets.example.sluice.dev", "--timeout=60s"
    )
    explained = wait_for(
        lambda: cluster.kubectl("explain", "widget.spec.size", check=False).stdout,
        what="kubectl explain to see the new CRD",
    )
    assert "How many sprockets the widget holds." in explained


def test_crd_schema_is_enforced(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=WIDGET_CRD)
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/widgets.example.sluice.dev", "--timeout=60s"
    )
    bad = "apiVersion: example.sluice.dev/v1\nkind: Widget\nmetadata: {name: w}\nspec: {size: 0}\n"
    result = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=bad, check=False)
    assert result.returncode != 0
    assert "spec.size" in result.stderr


def test_gpu_deployment_runs_on_gpu_nodes(api: client.ApiClient, namespace: str) -> None:
    labels = {"app": "gpu-worker"}
    container = {
        "name": "worker",
        "image": "example.invalid/worker:1",
        "resources": {"limits": {GPU_RESOURCE: "1"}},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "gpu-worker"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }
    client.AppsV1Api(api).create_namespaced_deployment(namespace, deployment)
    core = client.CoreV1Api(api)

    def running_pods() -> list[Any]:
        pods = core.list_namespaced_pod(namespace, label_selector="app=gpu-worker").items
        running = [pod for pod in pods if pod.status.phase == "Running"]
        return running if len(running) == 2 else []

    pods = wait_for(running_pods, what="2 GPU pods Running")
    for pod in pods:
        assert pod.spec.node_name.startswith("gpu-node-")
        node = core.read_node(pod.spec.node_name)
        assert node.status.allocatable[GPU_RESOURCE] == "8"


def test_pod_wanting_more_gpus_than_any_node_is_unschedulable(
    api: client.ApiClient, namespace: str
) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "greedy"},
        "spec": {
            "containers": [
                {
                    "name": "greedy",
                    "image": "example.invalid/greedy:1",
                    "resources": {"limits": {GPU_RESOURCE: "16"}},
                }
            ]
        },
    }
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(namespace, pod)

    def scheduled_condition() -> Any:
        status = core.read_namespaced_pod("greedy", namespace).status
        return next((c for c in status.conditions or [] if c.type == "PodScheduled"), None)

    condition = wait_for(scheduled_condition, what="the scheduler to judge the pod")
    assert condition.status == "False"
    assert condition.reason == "Unschedulable"
    assert f"Insufficient {GPU_RESOURCE}" in condition.message
    assert core.read_namespaced_pod("greedy", namespace).status.phase == "Pending"


def test_service_account_without_rbac_is_forbidden(
    cluster: Cluster, namespace: str, tmp_path: Any
) -> None:
    config = cluster.service_account_kubeconfig(namespace, "nobody", tmp_path / "kubeconfig")
    denied = cluster.kubectl("get", "pods", "-n", namespace, kubeconfig=config, check=False)
    assert denied.returncode != 0
    assert "Forbidden" in denied.stderr
    assert f"system:serviceaccount:{namespace}:nobody" in denied.stderr

    with cluster.api_client(config) as api, pytest.raises(client.ApiException) as raised:
        client.CoreV1Api(api).list_namespaced_pod(namespace)
    assert raised.value.status == 403

    cluster.kubectl(
        "create", "rolebinding", "nobody-view", "--clusterrole=view",
        f"--serviceaccount={namespace}:nobody", "-n", namespace,
    )  # fmt: skip
    allowed = wait_for(
        lambda: (
            cluster.kubectl(
                "get", "pods", "-n", namespace, kubeconfig=config, check=False
            ).returncode
            == 0
        ),
        what="the RoleBinding to take effect",
    )
    assert allowed


def test_server_side_apply_reports_field_conflicts(cluster: Cluster, namespace: str) -> None:
    def config_map(value: str) -> str:
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "shared", "namespace": namespace},
                "data": {"owner": value},
            }
        )

    apply = ("apply", "--server-side", "-f", "-")
    cluster.kubectl(*apply, "--field-manager=alice", input=config_map("alice"))
    conflict = cluster.kubectl(*apply, "--field-manager=bob", input=config_map("bob"), check=False)
    assert conflict.returncode != 0
    assert "conflict" in conflict.stderr.lower()
    assert "alice" in conflict.stderr
    assert ".data.owner" in conflict.stderr

    cluster.kubectl(*apply, "--field-manager=bob", "--force-conflicts", input=config_map("bob"))
    data = json.loads(
        cluster.kubectl("get", "configmap", "shared", "-n", namespace, "-o", "json").stdout
    )
    assert data["data"]["owner"] == "bob"
