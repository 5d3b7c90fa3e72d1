"""The session cluster's real worker node: its pods really run, answer through a Service, get
the GPUs the device plugin advertises, and only pods meant for the fake nodes land there.

A node that cannot start fails the session; nothing here skips.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest
from kubernetes import client

from e2e.cluster import binaries, nodes, packages, real_node
from e2e.cluster.client import Cluster
from e2e.cluster.fixtures import fresh_namespace
from e2e.cluster.waiting import wait_for
from tests.cluster.realpods import get, http_ok_pod, run_pod, visible_devices

pytestmark = pytest.mark.cluster


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def real_namespace(api: client.ApiClient) -> Iterator[str]:
    """A namespace whose pods are not meant for the fake nodes."""
    with fresh_namespace(api, fake_nodes=False) as name:
        yield name


def test_real_node_registers_ready_beside_the_fake_nodes(
    cluster: Cluster, core: client.CoreV1Api
) -> None:
    node = core.read_node(real_node.NODE_NAME)
    assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
    assert node.status.node_info.container_runtime_version.startswith("containerd://")
    # Built from the pinned module with the version stamped, like the control plane.
    kubernetes = next(tool for tool in binaries.TOOLS if tool.folder == "kubernetes")
    assert node.status.node_info.kubelet_version == kubernetes.version
    assert packages.missing() == []
    addresses = {a.type: a.address for a in node.status.addresses}
    assert addresses["InternalIP"] == real_node.BRIDGE_ADDRESS
    assert not node.spec.taints
    fake = [item for item in core.list_node().items if item.metadata.name != real_node.NODE_NAME]
    assert fake, "the session cluster has fake GPU nodes beside the real one"
    for item in fake:
        assert [t.to_dict() for t in item.spec.taints] == [
            {**nodes.FAKE_NODE_TAINT, "time_added": None}
        ]


def test_api_server_serves_pods_through_the_kubernetes_service(
    cluster: Cluster, core: client.CoreV1Api
) -> None:
    """The ``kubernetes`` Service points at the API server on the bridge's address, the one
    pods reach; the admin's kubeconfig uses that same address."""
    assert cluster.server.startswith(f"https://{real_node.BRIDGE_ADDRESS}:")
    slices = client.DiscoveryV1Api(core.api_client).list_namespaced_endpoint_slice(
        "default", label_selector="kubernetes.io/service-name=kubernetes"
    )
    addresses = {a for s in slices.items for e in s.endpoints for a in e.addresses}
    assert addresses == {real_node.BRIDGE_ADDRESS}


def test_pod_runs_and_answers_on_its_ip_and_through_a_service(
    core: client.CoreV1Api, real_namespace: str
) -> None:
    pod = run_pod(core, "http-ok", namespace=real_namespace)
    assert pod.spec.node_name == real_node.NODE_NAME
    assert pod.status.phase == "Running"
    assert ipaddress.ip_address(pod.status.pod_ip) in ipaddress.ip_network(real_node.POD_CIDR)
    assert get(f"http://{pod.status.pod_ip}:8080/") == "ok\n"

    core.create_namespaced_service(
        real_namespace,
        {
            "metadata": {"name": "http-ok"},
            "spec": {"selector": {"app": "http-ok"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )
    cluster_ip = core.read_namespaced_service("http-ok", real_namespace).spec.cluster_ip

    def answered() -> str | None:
        # kube-proxy writes the Service's rules a moment after its endpoints appear.
        try:
            return get(f"http://{cluster_ip}/")
        except OSError:
            return None

    assert wait_for(answered, timeout=60, what=f"Service http-ok at {cluster_ip}") == "ok\n"


def test_pods_not_meant_for_the_fake_nodes_run_on_the_real_node(
    core: client.CoreV1Api, real_namespace: str, namespace: str
) -> None:
    """Unpinned pods: in an ordinary namespace they go to the real node; in a namespace made
    for the fake nodes, to a fake node."""
    for name, where in (("anywhere", real_namespace), ("fake-ok", namespace)):
        body = http_ok_pod(name)
        del body["spec"]["nodeSelector"]  # type: ignore[index]
        core.create_namespaced_pod(where, body)
    tolerations = core.read_namespaced_pod("fake-ok", namespace).spec.tolerations
    assert any(t.key == nodes.KWOK_ANNOTATION for t in tolerations)

    def scheduled(name: str, where: str) -> str | None:
        return core.read_namespaced_pod(name, where).spec.node_name

    placed = wait_for(lambda: scheduled("anywhere", real_namespace), timeout=60, what="anywhere")
    assert placed == real_node.NODE_NAME
    fake = wait_for(lambda: scheduled("fake-ok", namespace), timeout=60, what="fake-ok placed")
    assert (
        core.read_node(fake).metadata.labels[nodes.FAKE_NODE_LABEL[0]] == nodes.FAKE_NODE_LABEL[1]
    )


def test_real_node_advertises_gpus_with_their_product(core: client.CoreV1Api) -> None:
    node = core.read_node(real_node.NODE_NAME)
    assert node.status.allocatable[nodes.GPU_RESOURCE] == str(real_node.DEFAULT_GPUS)
    assert node.status.capacity[nodes.GPU_RESOURCE] == str(real_node.DEFAULT_GPUS)
    assert node.metadata.labels[nodes.GPU_PRODUCT_LABEL] == real_node.GPU_PRODUCT


def test_gpu_pod_runs_with_the_devices_it_was_allocated(
    cluster: Cluster, core: client.CoreV1Api, real_namespace: str
) -> None:
    pod = run_pod(core, "gpu-1", namespace=real_namespace, gpus=1)
    assert pod.spec.node_name == real_node.NODE_NAME
    # The image has no shell to print its environment; containerd holds the spec it runs.
    container_id = pod.status.container_statuses[0].container_id.removeprefix("containerd://")
    devices = visible_devices(cluster.workdir, container_id).split(",")
    assert len(devices) == 1
    assert set(devices) <= {f"gpu-{index}" for index in range(real_node.DEFAULT_GPUS)}

    too_many = real_node.DEFAULT_GPUS + 1
    core.create_namespaced_pod(real_namespace, http_ok_pod("too-many", gpus=too_many))

    def unschedulable() -> str | None:
        pod = core.read_namespaced_pod("too-many", real_namespace)
        for condition in pod.status.conditions or []:
            if condition.type == "PodScheduled" and condition.status == "False":
                return str(condition.message)
        return None

    message = wait_for(unschedulable, timeout=60, what="pod too-many to be found unschedulable")
    assert f"Insufficient {nodes.GPU_RESOURCE}" in message
    assert core.read_namespaced_pod("too-many", real_namespace).status.phase == "Pending"
