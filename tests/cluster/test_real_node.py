"""A real worker node: its pods really run, answer through a Service, get the GPUs the
device plugin advertises, and ``down`` leaves nothing behind.

Each test starts its own cluster (one kwok GPU node and one real node) in a temporary folder
with ``python -m e2e.cluster up --real-nodes 1``, the way a user does, and stops it with
``down``. A node that cannot start fails the test.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client

from e2e.cluster import binaries, nodes, packages, real_node, static_images
from e2e.cluster.client import Cluster
from e2e.cluster.processes import Registry
from e2e.cluster.waiting import wait_for
from tests.cluster import commands

pytestmark = pytest.mark.cluster

# Straight to the pod and Service addresses of this machine, whatever proxy the environment names.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# Every device, so that the pod runs only if the kubelet can allocate them all anew.
DEVICES_AFTER_RESTART = real_node.DEFAULT_GPUS


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    # A fresh machine builds the node binaries and installs packages first.
    return commands.cli(*args, timeout=1800)


@dataclass(frozen=True)
class RealCluster:
    cluster: Cluster
    core: client.CoreV1Api
    kernel_settings: dict[str, str]


@pytest.fixture
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCluster]:
    # A short folder name: containerd's socket path must fit in 107 bytes.
    workdir = tmp_path_factory.mktemp("rn")
    before = {
        name: Path("/proc/sys", name).read_text().strip() for name in real_node.KERNEL_SETTINGS
    }
    try:
        cli("up", "--workdir", str(workdir), "--gpu-nodes", "1", "--real-nodes", "1")
        cluster = Cluster.load(workdir)
        with cluster.api_client() as api:
            yield RealCluster(cluster, client.CoreV1Api(api), before)
    finally:
        cli("down", "--workdir", str(workdir))


def http_ok_pod(name: str, *, gpus: int = 0) -> dict[str, object]:
    """A pod of the static "ok" server, pinned to the real node, asking for ``gpus`` GPUs."""
    resources = {"limits": {nodes.GPU_RESOURCE: str(gpus)}} if gpus else {}
    return {
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": real_node.NODE_NAME},
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "server",
                    "image": static_images.http_ok().reference,
                    "imagePullPolicy": "Never",
                    "resources": resources,
                    "ports": [{"containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
                }
            ],
        },
    }


def run_pod(core: client.CoreV1Api, name: str, *, gpus: int = 0) -> client.V1Pod:
    core.create_namespaced_pod("default", http_ok_pod(name, gpus=gpus))

    def ready() -> client.V1Pod | None:
        pod = core.read_namespaced_pod(name, "default")
        conditions = pod.status.conditions or []
        if any(c.type == "Ready" and c.status == "True" for c in conditions):
            return pod
        return None

    pod: client.V1Pod = wait_for(ready, timeout=120, what=f"pod {name} Ready")
    return pod


def get(url: str) -> str:
    with DIRECT.open(url, timeout=5) as response:
        return str(response.read().decode())


def test_real_node_registers_ready_beside_the_kwok_node(real_cluster: RealCluster) -> None:
    node = real_cluster.core.read_node(real_node.NODE_NAME)
    assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
    assert node.status.node_info.container_runtime_version.startswith("containerd://")
    # Built from the pinned module with the version stamped, like the control plane.
    kubernetes = next(tool for tool in binaries.TOOLS if tool.folder == "kubernetes")
    assert node.status.node_info.kubelet_version == kubernetes.version
    assert packages.missing() == []
    names = {item.metadata.name for item in real_cluster.core.list_node().items}
    assert names == {real_node.NODE_NAME, "gpu-node-0"}


def test_pod_runs_and_answers_on_its_ip_and_through_a_service(
    real_cluster: RealCluster,
) -> None:
    core = real_cluster.core
    pod = run_pod(core, "http-ok")
    assert pod.spec.node_name == real_node.NODE_NAME
    assert pod.status.phase == "Running"
    assert ipaddress.ip_address(pod.status.pod_ip) in ipaddress.ip_network(real_node.POD_CIDR)
    assert get(f"http://{pod.status.pod_ip}:8080/") == "ok\n"

    core.create_namespaced_service(
        "default",
        {
            "metadata": {"name": "http-ok"},
            "spec": {"selector": {"app": "http-ok"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )
    cluster_ip = core.read_namespaced_service("http-ok", "default").spec.cluster_ip

    def answered() -> str | None:
        # kube-proxy writes the Service's rules a moment after its endpoints appear.
        try:
            return get(f"http://{cluster_ip}/")
        except OSError:
            return None

    assert wait_for(answered, timeout=60, what=f"Service http-ok at {cluster_ip}") == "ok\n"


def test_real_node_advertises_gpus_with_their_product(real_cluster: RealCluster) -> None:
    node = real_cluster.core.read_node(real_node.NODE_NAME)
    assert node.status.allocatable[nodes.GPU_RESOURCE] == str(real_node.DEFAULT_GPUS)
    assert node.status.capacity[nodes.GPU_RESOURCE] == str(real_node.DEFAULT_GPUS)
    assert node.metadata.labels[nodes.GPU_PRODUCT_LABEL] == real_node.GPU_PRODUCT


def test_gpu_pod_runs_with_the_devices_it_was_allocated(real_cluster: RealCluster) -> None:
    core = real_cluster.core
    pod = run_pod(core, "gpu-2", gpus=2)
    assert pod.spec.node_name == real_node.NODE_NAME
    # The image has no shell to print its environment; containerd holds the spec it runs.
    container_id = pod.status.container_statuses[0].container_id.removeprefix("containerd://")
    devices = visible_devices(real_cluster.cluster.workdir, container_id).split(",")
    assert len(set(devices)) == 2
    assert set(devices) <= {f"gpu-{index}" for index in range(real_node.DEFAULT_GPUS)}

    core.create_namespaced_pod("default", http_ok_pod("gpu-5", gpus=5))

    def unschedulable() -> str | None:
        conditions = core.read_namespaced_pod("gpu-5", "default").status.conditions or []
        for condition in conditions:
            if condition.type == "PodScheduled" and condition.status == "False":
                return str(condition.message)
        return None

    message = wait_for(unschedulable, timeout=60, what="pod gpu-5 to be found unschedulable")
    assert f"Insufficient {nodes.GPU_RESOURCE}" in message
    assert core.read_namespaced_pod("gpu-5", "default").status.phase == "Pending"


def test_device_plugin_registers_again_after_the_kubelet_restarts(
    real_cluster: RealCluster,
) -> None:
    """A starting kubelet empties its device-plugins folder and knows no plugin: GPU pods
    run again only once the plugin has served and registered anew."""
    registry = Registry(real_cluster.cluster.workdir)
    kubelet = next(p for p in registry.load() if p.name == "kubelet")
    command = Path(f"/proc/{kubelet.pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    before = real_node.DEVICE_PLUGIN_SOCKET.stat().st_ino
    os.kill(kubelet.pid, signal.SIGTERM)
    wait_for(lambda: not kubelet.alive(), timeout=30, what="the kubelet to exit")
    registry.start("kubelet", [part.decode() for part in command])

    def served_anew() -> bool:
        try:
            return real_node.DEVICE_PLUGIN_SOCKET.stat().st_ino != before
        except FileNotFoundError:
            return False

    wait_for(served_anew, timeout=60, what="the device plugin to serve a new socket")
    pod = run_pod(real_cluster.core, "gpu-after-restart", gpus=DEVICES_AFTER_RESTART)
    assert pod.spec.node_name == real_node.NODE_NAME


def test_up_again_changes_nothing(real_cluster: RealCluster) -> None:
    workdir = real_cluster.cluster.workdir
    started = Registry(workdir).load()
    assert {p.name for p in started} >= set(real_node.COMPONENTS)
    again = cli("up", "--workdir", str(workdir), "--gpu-nodes", "1", "--real-nodes", "1")
    assert "already running" in again.stderr
    assert Registry(workdir).load() == started


@pytest.mark.parametrize("kubelet", ["running", "dead"])
def test_down_leaves_nothing_behind(real_cluster: RealCluster, kubelet: str) -> None:
    """With the kubelet running, ``down`` has it stop the pods; with the kubelet dead, ``down``
    kills the containers through containerd. Either way nothing is left."""
    workdir = real_cluster.cluster.workdir
    run_pod(real_cluster.core, "http-ok")
    containers = container_pids(workdir)
    assert containers, "the pod's containers should be running"
    started = Registry(workdir).load()
    if kubelet == "dead":
        managed = next(p for p in started if p.name == "kubelet")
        os.kill(managed.pid, signal.SIGKILL)
        wait_for(lambda: not managed.alive(), timeout=30, what="the kubelet to exit")

    cli("down", "--workdir", str(workdir))

    assert not any(p.alive() for p in started)
    assert processes_naming(workdir) == []
    assert [pid for pid in containers if Path(f"/proc/{pid}").exists()] == []
    assert not Path(f"/sys/class/net/{real_node.BRIDGE}").exists()
    assert real_node.mounts_under(workdir) == []
    assert real_node.mounts_under(Path("/run/netns")) == []
    assert real_node.kube_chains() == []
    assert [path for path in real_node.KUBELET_FIXED_FILES if path.exists()] == []
    assert real_node.container_log_links(workdir) == []
    after = {
        name: Path("/proc/sys", name).read_text().strip() for name in real_node.KERNEL_SETTINGS
    }
    assert after == real_cluster.kernel_settings


def visible_devices(workdir: Path, container_id: str) -> str:
    """``NVIDIA_VISIBLE_DEVICES`` in the environment containerd starts the container with."""
    info = subprocess.run(
        [
            "ctr",
            f"--address={real_node.layout(workdir).containerd_socket}",
            "--namespace=k8s.io",
            "containers",
            "info",
            container_id,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    entries: list[str] = json.loads(info)["Spec"]["process"]["env"]
    environment = dict(entry.split("=", 1) for entry in entries)
    return environment["NVIDIA_VISIBLE_DEVICES"]


def container_pids(workdir: Path) -> list[int]:
    """The PIDs of the containers the node's containerd runs (pause and the server)."""
    listing = subprocess.run(
        [
            "ctr",
            f"--address={real_node.layout(workdir).containerd_socket}",
            "--namespace=k8s.io",
            "tasks",
            "list",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [int(line.split()[1]) for line in listing.splitlines()[1:] if "RUNNING" in line]


def processes_naming(workdir: Path) -> list[str]:
    """Command lines of live processes that name ``workdir`` (node daemons and shims do)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(workdir) in command:
                found.append(command)
    return found
