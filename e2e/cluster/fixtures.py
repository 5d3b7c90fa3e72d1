"""pytest fixtures: a session cluster, an admin API client, and a namespace per test.

The cluster starts once per test session in a temporary folder and is stopped at the end.
Set ``SLUICE_CLUSTER_WORKDIR`` to reuse a cluster started with ``python -m e2e.cluster up``
(it is left running), which makes a tight edit-and-test loop.

Every test that uses the cluster, directly or through another fixture, is marked ``cluster``
when collected, so ``pytest -m 'not cluster'`` (``make unit``) never starts one, whether or
not the test's author wrote the marker.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from e2e.cluster import control_plane, nodes
from e2e.cluster.client import Cluster


# First, so that the marks are there when ``-m`` deselects.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``cluster`` every test whose fixtures include the cluster."""
    for item in items:
        if "cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A running local control plane with the real node and 3 fake GPU nodes of 8 GPUs each."""
    reuse = os.environ.get("SLUICE_CLUSTER_WORKDIR")
    # A short folder name: containerd's socket path must fit in 107 bytes.
    workdir = Path(reuse) if reuse else tmp_path_factory.mktemp("c")
    handle = control_plane.up(workdir, real_nodes=1, log=lambda message: None)
    try:
        yield handle
    finally:
        if not reuse:
            control_plane.down(workdir)


@pytest.fixture(scope="session")
def api(cluster: Cluster) -> Iterator[client.ApiClient]:
    """A Kubernetes API client authenticated as cluster admin."""
    with cluster.api_client() as api_client:
        yield api_client


@contextlib.contextmanager
def fresh_namespace(api: client.ApiClient, *, fake_nodes: bool = True) -> Iterator[str]:
    """A new namespace with a random name, deleted on leaving. Its pods go to the fake GPU
    nodes (where they only pretend to run) unless ``fake_nodes`` is false: then they go to
    the real node and really run."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(api)
    metadata: dict[str, object] = {"name": name, "labels": {"sluice.dev/test": "true"}}
    if fake_nodes:
        metadata["annotations"] = nodes.fake_node_namespace_annotations()
    core.create_namespace({"metadata": metadata})
    try:
        yield name
    finally:
        core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture
def namespace(api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards."""
    with fresh_namespace(api) as name:
        yield name
