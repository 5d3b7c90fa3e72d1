"""The operator's RBAC grants what it uses and nothing else (its use is the other tests)."""

from __future__ import annotations

import pytest

from e2e.cluster.client import Cluster

from .conftest import OPERATOR_ACCOUNT, OPERATOR_NAMESPACE

pytestmark = pytest.mark.cluster

SUBJECT = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_ACCOUNT}"

ALLOWED = [
    ("watch", "inferenceservices.serving.sluice.dev", "-A"),
    # "RESOURCE/NAME" would name an object; the subresource takes the flag.
    ("patch", "inferenceservices.serving.sluice.dev", "--subresource=status"),
    ("create", "deployments.apps", "-n=default"),
    ("patch", "services", "-n=default"),
    ("delete", "deployments.apps", "-n=default"),
    ("delete", "services", "-n=default"),
    ("list", "pods", "-A"),
    # The rollout-action annotation, removed once acted on.
    ("patch", "inferenceservices.serving.sluice.dev", "-n=default"),
    # The router's children, and what its Role grants.
    ("create", "serviceaccounts", "-n=default"),
    ("patch", "configmaps", "-n=default"),
    ("create", "roles.rbac.authorization.k8s.io", "-n=default"),
    ("delete", "rolebindings.rbac.authorization.k8s.io", "-n=default"),
    ("watch", "endpointslices.discovery.k8s.io", "-A"),
    ("create", "events.events.k8s.io", "-n=default"),
    ("update", "leases.coordination.k8s.io/sluice-operator", f"-n={OPERATOR_NAMESPACE}"),
]
DENIED = [
    ("update", "inferenceservices.serving.sluice.dev", "-n=default"),
    ("delete", "inferenceservices.serving.sluice.dev", "-n=default"),
    ("create", "pods", "-n=default"),
    ("get", "secrets", "-n=default"),
    ("create", "endpointslices.discovery.k8s.io", "-n=default"),
    ("escalate", "roles.rbac.authorization.k8s.io", "-n=default"),
    ("bind", "clusterroles.rbac.authorization.k8s.io", ""),
    ("list", "nodes", ""),
    ("create", "events", "-n=default"),
    ("update", "leases.coordination.k8s.io/other", f"-n={OPERATOR_NAMESPACE}"),
    ("update", "leases.coordination.k8s.io/sluice-operator", "-n=default"),
]


def _can(cluster: Cluster, verb: str, resource: str, scope: str) -> str:
    args = ["auth", "can-i", verb, resource, f"--as={SUBJECT}"]
    if scope:
        args.append(scope)
    return cluster.kubectl(*args, check=False).stdout.strip()


@pytest.mark.parametrize(("verb", "resource", "scope"), ALLOWED)
def test_allowed(installed: Cluster, verb: str, resource: str, scope: str) -> None:
    assert _can(installed, verb, resource, scope) == "yes"


@pytest.mark.parametrize(("verb", "resource", "scope"), DENIED)
def test_denied(installed: Cluster, verb: str, resource: str, scope: str) -> None:
    assert _can(installed, verb, resource, scope) == "no"
