"""Starting ``sluice-operator``: where its credentials come from, and every reason it cannot
start ending in one line on stderr and a non-zero exit, never a traceback.

Each case runs the real command against the real local cluster (or against nothing, for
missing credentials) and reads what a user would read.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from e2e.cluster import kubeconfig
from e2e.cluster import operator as sluice_operator
from e2e.cluster.client import Cluster
from e2e.cluster.waiting import wait_for

# The environment without anything that points at a cluster.
CLEAN_ENV = {
    key: value
    for key, value in os.environ.items()
    if key not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")
}


def fail_to_start(
    kubeconfig_path: Path | None, *args: str, env: dict[str, str] | None = None
) -> str:
    """Run ``sluice-operator``, which must exit non-zero; its one line of stderr."""
    result = subprocess.run(
        sluice_operator.command(kubeconfig_path, *args),
        env=env or CLEAN_ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sluice-operator: ")
    return lines[0]


def test_no_credentials_at_all(tmp_path: Path) -> None:
    line = fail_to_start(None, env={**CLEAN_ENV, "HOME": str(tmp_path)})
    assert "no Kubernetes credentials" in line
    assert "--kubeconfig" in line
    assert "$KUBECONFIG" in line


@pytest.mark.cluster
def test_no_api_server(installed: Cluster, tmp_path: Path) -> None:
    server = f"https://127.0.0.1:{sluice_operator.free_port()}"
    path = kubeconfig.write_token(
        tmp_path / "kubeconfig", server, kubeconfig.ca_data(installed.kubeconfig), "u", "t"
    )
    line = fail_to_start(path)
    assert f"no usable Kubernetes API server at {server}" in line
    assert "Connection refused" in line


@pytest.mark.cluster
def test_rejected_credentials(installed: Cluster, tmp_path: Path) -> None:
    path = kubeconfig.write_token(
        tmp_path / "kubeconfig",
        installed.server,
        kubeconfig.ca_data(installed.kubeconfig),
        "u",
        "not-a-token",
    )
    line = fail_to_start(path)
    assert f"no usable Kubernetes API server at {installed.server}" in line
    assert "401" in line


@pytest.mark.cluster
def test_forbidden_names_the_user_verb_and_resource(
    installed: Cluster, namespace: str, tmp_path: Path
) -> None:
    """A ServiceAccount that no RBAC rule mentions."""
    path = installed.service_account_kubeconfig(namespace, "nobody", tmp_path / "kubeconfig")
    line = fail_to_start(path, "--all-namespaces")
    assert "cannot list InferenceServices" in line
    assert f'User "system:serviceaccount:{namespace}:nobody" cannot list resource' in line
    assert '"inferenceservices"' in line


@pytest.mark.cluster
def test_lease_namespace_missing(installed: Cluster) -> None:
    line = fail_to_start(installed.kubeconfig, "--lease-namespace", "no-such-namespace")
    assert "the Lease namespace no-such-namespace does not exist" in line
    assert "--lease-namespace" in line


@pytest.mark.cluster
def test_lease_elsewhere_is_forbidden_to_the_service_account(
    operator_kubeconfig: Path, namespace: str
) -> None:
    """The operator's Role grants Leases in its own namespace only."""
    line = fail_to_start(operator_kubeconfig, "--lease-namespace", namespace)
    assert f"cannot hold the Lease {namespace}/sluice-operator" in line
    assert "forbidden" in line


@pytest.fixture
def crd_removed(installed: Cluster) -> Iterator[None]:
    """The InferenceService CRD deleted for one test, then installed again as before."""
    installed.kubectl("delete", "-f", str(sluice_operator.CRDS), "--wait=true")
    try:
        yield
    finally:
        sluice_operator.install(installed)


@pytest.mark.cluster
@pytest.mark.usefixtures("crd_removed")
def test_crd_not_installed(operator_kubeconfig: Path) -> None:
    line = fail_to_start(operator_kubeconfig, "--all-namespaces")
    assert "the InferenceService CRD (inferenceservices.serving.sluice.dev) is not installed" in (
        line
    )
    assert line.endswith("kubectl apply -f crds/")


@pytest.mark.cluster
def test_kubeconfig_variable_is_honoured(
    operator_kubeconfig: Path, api: client.ApiClient, tmp_path: Path
) -> None:
    """No --kubeconfig: the existing files of $KUBECONFIG are used, as kubectl uses them."""
    listed = f"{tmp_path / 'missing'}:{operator_kubeconfig}"
    handle = sluice_operator.start(
        None, tmp_path / "operator.log", "--all-namespaces", env={**CLEAN_ENV, "KUBECONFIG": listed}
    )
    try:
        wait_for(
            lambda: f"became leader as {sluice_operator.leader(api)}" in handle.log_text(),
            what="the operator to lead",
            timeout=40,
        )
    finally:
        assert handle.stop() == 0
    assert sluice_operator.leader(api) is None  # handed back on a clean stop
