"""A real node's lifecycle: the device plugin registers again after the kubelet restarts,
``up`` twice changes nothing, and ``down`` leaves nothing behind.

Each test starts its own cluster (one fake GPU node and the real node) in a temporary folder
with ``python -m e2e.cluster up``, the way a user does, and stops it with ``down``. A machine
holds one real node, so these run apart from the session cluster: they are marked
``node_lifecycle``, which the default run leaves out and ``make test`` runs first.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client

from e2e.cluster import real_node
from e2e.cluster.client import Cluster
from e2e.cluster.processes import Registry
from e2e.cluster.waiting import wait_for
from tests.cluster import commands
from tests.cluster.realpods import container_pids, processes_naming, run_pod

pytestmark = [pytest.mark.cluster, pytest.mark.node_lifecycle]
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
        cli("up", "--workdir", str(workdir), "--gpu-nodes", "1")
        cluster = Cluster.load(workdir)
        with cluster.api_client() as api:
            yield RealCluster(cluster, client.CoreV1Api(api), before)
    finally:
        cli("down", "--workdir", str(workdir))


def test_device_plugin_registers_again_after_the_kubelet_restarts(
    real_cluster: RealCluster,
) -> None:
    """A starting kubelet empties its device-plugins folder and knows no plugin: GPU pods
    run again only once the plugin has served and registered anew."""
    registry = Registry(real_cluster.cluster.workdir)
    kubelet = next(p for p in registry.load() if p.name == "kubelet")
    command = Path(f"/proc/{kubelet.pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")

    # The plugin logs each registration; a new socket file may reuse the old one's inode.
    def registrations() -> int:
        return registry.log_tail("deviceplugin", lines=1000).count("registered ")

    before = registrations()
    os.kill(kubelet.pid, signal.SIGTERM)
    wait_for(lambda: not kubelet.alive(), timeout=30, what="the kubelet to exit")
    registry.start("kubelet", [part.decode() for part in command])
    wait_for(
        lambda: registrations() > before,
        timeout=60,
        what="the device plugin to register again",
    )
    pod = run_pod(real_cluster.core, "gpu-after-restart", gpus=DEVICES_AFTER_RESTART)
    assert pod.spec.node_name == real_node.NODE_NAME


def test_up_again_changes_nothing(real_cluster: RealCluster) -> None:
    workdir = real_cluster.cluster.workdir
    started = Registry(workdir).load()
    assert {p.name for p in started} >= set(real_node.COMPONENTS)
    again = cli("up", "--workdir", str(workdir), "--gpu-nodes", "1")
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
