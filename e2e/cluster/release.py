"""Sluice installed on the local cluster by its Helm chart, from images built on this machine.

The demo and the whole-system tests install Sluice exactly as a user does (``helm upgrade
--install`` of helm/sluice), with the flags ``images`` prints so that the operator, and every
pod it creates, uses the locally built images already in the real node's containerd.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

from e2e.cluster import images, real_node
from e2e.cluster.client import Cluster
from e2e.cluster.operator import NAMESPACE

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "sluice"
RELEASE = "sluice"
INSTALL_TIMEOUT = 300  # seconds; two operator pods start in about ten on a warm node


def image_flags(cluster: Cluster, log: Callable[[str], None] = print) -> list[str]:
    """Build the images that are missing or stale, load them into the real node's containerd,
    and return the Helm flags that point the chart at them."""
    built = images.ensure(log)
    images.load(built, str(real_node.layout(cluster.workdir).containerd_socket), log)
    return shlex.split(images.helm_flags(built))


def install(cluster: Cluster, flags: list[str], *extra: str) -> None:
    """``helm upgrade --install`` the chart and wait until its pods are Ready."""
    cluster.helm(
        "upgrade", "--install", RELEASE, str(CHART),
        "--namespace", NAMESPACE, "--create-namespace",
        *flags, *extra,
        "--wait", "--timeout", f"{INSTALL_TIMEOUT}s",
        timeout=INSTALL_TIMEOUT + 60,
    )  # fmt: skip


def uninstall(cluster: Cluster) -> None:
    """``helm uninstall`` the release, waiting until its resources are gone."""
    cluster.helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", timeout=180)
