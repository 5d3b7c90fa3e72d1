"""Pods of the static "ok" server on the real node, and what containerd knows of them, for the
real node's tests."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

from kubernetes import client

from e2e.cluster import nodes, real_node, static_images
from e2e.cluster.waiting import wait_for

# Straight to the pod and Service addresses of this machine, whatever proxy the environment names.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


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


def run_pod(
    core: client.CoreV1Api, name: str, *, namespace: str = "default", gpus: int = 0
) -> client.V1Pod:
    """Create an "ok" server pod and wait until it is Ready."""
    core.create_namespaced_pod(namespace, http_ok_pod(name, gpus=gpus))

    def ready() -> client.V1Pod | None:
        pod = core.read_namespaced_pod(name, namespace)
        conditions = pod.status.conditions or []
        if any(c.type == "Ready" and c.status == "True" for c in conditions):
            return pod
        return None

    pod: client.V1Pod = wait_for(ready, timeout=120, what=f"pod {namespace}/{name} Ready")
    return pod


def get(url: str) -> str:
    """The body of a GET straight to ``url`` (a pod or Service address of this cluster)."""
    with DIRECT.open(url, timeout=5) as response:
        return str(response.read().decode())


def _ctr(workdir: Path, *args: str) -> str:
    return subprocess.run(
        [
            "ctr",
            f"--address={real_node.layout(workdir).containerd_socket}",
            "--namespace=k8s.io",
            *args,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def visible_devices(workdir: Path, container_id: str) -> str:
    """``NVIDIA_VISIBLE_DEVICES`` in the environment containerd starts the container with."""
    info = _ctr(workdir, "containers", "info", container_id)
    entries: list[str] = json.loads(info)["Spec"]["process"]["env"]
    environment = dict(entry.split("=", 1) for entry in entries)
    return environment["NVIDIA_VISIBLE_DEVICES"]


def container_pids(workdir: Path) -> list[int]:
    """The PIDs of the containers the node's containerd runs (pause and the server)."""
    listing = _ctr(workdir, "tasks", "list")
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
