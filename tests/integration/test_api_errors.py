"""The API error table of docs/operator.md against the real API server: the statuses it
produces on demand (401, 403, 404, 409, 422) reach the operator's code as the table says.

429 and 5xx, which it cannot be made to answer, are proven against a loopback server in
tests/operator/test_kube.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sluice.operator.errors import PermanentError, TemporaryError
from sluice.operator.kube import Kube, resolve_config

from e2e.cluster import kubeconfig
from e2e.cluster.client import Cluster

pytestmark = pytest.mark.cluster


def connect(kubeconfig_path: Path) -> Kube:
    """The operator's client with the credentials of one kubeconfig file."""
    return Kube.connect(resolve_config(kubeconfig_path, {}, home=kubeconfig_path.parent))


@pytest.fixture
def admin(cluster: Cluster) -> Iterator[Kube]:
    """The operator's client, as cluster admin."""
    kube = connect(cluster.kubeconfig)
    yield kube
    kube.close()


def configmap(namespace: str, name: str = "settings", **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, **metadata},
        "data": {"key": "value"},
    }


def test_conflict_on_a_stale_resource_version_is_retried_after_a_second(
    admin: Kube, namespace: str
) -> None:
    created = admin.create(configmap(namespace))
    admin.replace({**created, "data": {"key": "newer"}})
    with pytest.raises(TemporaryError) as raised:
        admin.replace({**created, "data": {"key": "stale"}})  # the old resourceVersion
    assert raised.value.delay == 1.0
    assert "the object has been modified" in str(raised.value)


def test_conflict_on_create_of_an_existing_object_is_retried(admin: Kube, namespace: str) -> None:
    admin.create(configmap(namespace))
    with pytest.raises(TemporaryError) as raised:
        admin.create(configmap(namespace))
    assert raised.value.delay == 1.0
    assert "already exists" in str(raised.value)


def test_invalid_object_is_permanent(admin: Kube, namespace: str) -> None:
    with pytest.raises(PermanentError) as raised:
        admin.create(configmap(namespace, name="Not_A_DNS_Name"))
    assert raised.value.status == 422
    assert "Not_A_DNS_Name" in str(raised.value)


def test_missing_object_is_none(admin: Kube, namespace: str) -> None:
    assert admin.get("v1", "ConfigMap", namespace, "absent") is None


def test_forbidden_is_retried_slowly(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    """A ServiceAccount no RBAC rule mentions: the cluster may still grant it access."""
    path = cluster.service_account_kubeconfig(namespace, "nobody", tmp_path / "kubeconfig")
    kube = connect(path)
    try:
        with pytest.raises(TemporaryError) as raised:
            kube.list("v1", "ConfigMap", namespace)
    finally:
        kube.close()
    assert raised.value.delay == 30.0
    assert "(403)" in str(raised.value)
    assert f"system:serviceaccount:{namespace}:nobody" in str(raised.value)


def test_unauthenticated_is_retried_slowly(cluster: Cluster, tmp_path: Path) -> None:
    path = kubeconfig.write_token(
        tmp_path / "kubeconfig", cluster.server, kubeconfig.ca_data(cluster.kubeconfig), "u", "x"
    )
    kube = connect(path)
    try:
        with pytest.raises(TemporaryError) as raised:
            kube.get("v1", "ConfigMap", "default", "any")
    finally:
        kube.close()
    assert raised.value.delay == 30.0
    assert "(401)" in str(raised.value)
