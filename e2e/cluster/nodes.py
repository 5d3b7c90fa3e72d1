"""Fake GPU nodes that kwok keeps alive.

A node is registered with ``nvidia.com/gpu`` in its capacity and allocatable (status set on
create is kept) and the labels NVIDIA's GPU feature discovery puts on real GPU nodes, so the
real scheduler places GPU pods on it exactly as it would on hardware. kwok manages only nodes
carrying its annotation, keeps their leases fresh and moves their pods to Running.

Pods on a fake node only pretend to run, so fake nodes carry a taint: only pods meant for
them land there, those of a namespace made for them (``fixtures.fresh_namespace`` by
default), whose pods the API server's admission gives the toleration
(PodTolerationRestriction) and a node selector of the fake nodes (PodNodeSelector), so they
never land on the real node either, where their images do not exist. Every other pod is
scheduled onto the real node, where it runs.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client

from e2e.cluster.client import Cluster
from e2e.cluster.waiting import wait_for

KWOK_ANNOTATION = "kwok.x-k8s.io/node"
FAKE_NODE_TAINT = {"key": KWOK_ANNOTATION, "value": "fake", "effect": "NoSchedule"}
# Namespace annotations of the admission plugins PodTolerationRestriction and PodNodeSelector:
# the tolerations and the node selector they add to every pod of the namespace.
DEFAULT_TOLERATIONS_ANNOTATION = "scheduler.alpha.kubernetes.io/defaultTolerations"
NODE_SELECTOR_ANNOTATION = "scheduler.alpha.kubernetes.io/node-selector"
FAKE_NODE_LABEL = ("type", "kwok")
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
DEFAULT_PRODUCTS = ("NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB")


def node_name(index: int) -> str:
    """The name of the ``index``-th fake GPU node."""
    return f"gpu-node-{index}"


def gpu_node(name: str, *, gpus: int, product: str) -> dict[str, Any]:
    """A Node object for a fake machine with ``gpus`` GPUs of type ``product``."""
    resources = {
        "cpu": "64",
        "memory": "512Gi",
        "pods": "110",
        "ephemeral-storage": "1Ti",
        GPU_RESOURCE: str(gpus),
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                FAKE_NODE_LABEL[0]: FAKE_NODE_LABEL[1],
                "nvidia.com/gpu.present": "true",
                GPU_PRODUCT_LABEL: product,
                "nvidia.com/gpu.count": str(gpus),
            },
        },
        "spec": {"taints": [FAKE_NODE_TAINT]},
        "status": {"capacity": resources, "allocatable": resources},
    }


def fake_node_namespace_annotations() -> dict[str, str]:
    """Annotations that schedule every pod of a namespace onto the fake nodes, and only there."""
    toleration = {**FAKE_NODE_TAINT, "operator": "Equal"}
    return {
        DEFAULT_TOLERATIONS_ANNOTATION: json.dumps([toleration]),
        NODE_SELECTOR_ANNOTATION: "=".join(FAKE_NODE_LABEL),
    }


def ensure(cluster: Cluster, *, count: int, gpus_per_node: int, products: tuple[str, ...]) -> None:
    """Create the fake GPU nodes that do not exist yet; products alternate across nodes."""
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        existing = {node.metadata.name for node in core.list_node().items}
        for index in range(count):
            name = node_name(index)
            if name not in existing:
                product = products[index % len(products)]
                core.create_node(gpu_node(name, gpus=gpus_per_node, product=product))


def wait_ready(cluster: Cluster, *, count: int, timeout: float) -> None:
    """Wait until the first ``count`` fake nodes report Ready."""
    wanted = {node_name(index) for index in range(count)}
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)

        def all_ready() -> bool:
            ready = {
                node.metadata.name
                for node in core.list_node().items
                if any(
                    c.type == "Ready" and c.status == "True" for c in node.status.conditions or []
                )
            }
            return wanted <= ready

        wait_for(all_ready, timeout=timeout, what=f"{count} fake nodes to be Ready")
