"""The operator against a real cluster: children, rollout, drift, idempotence, pruning, the
writes it makes (counted by the API server itself), deletion."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from e2e.cluster.client import Cluster
from e2e.cluster.waiting import wait_for

from .conftest import (
    OPERATOR_ACCOUNT,
    OPERATOR_NAMESPACE,
    RESYNC_SECONDS,
    RUNTIME_IMAGE,
    OperatorProcess,
)
from .support import LABEL, Isvcs, isvc_body

pytestmark = pytest.mark.cluster

GPU = "nvidia.com/gpu"
_DISPATCHED = re.compile(
    r'^apiserver_flowcontrol_dispatched_requests_total\{flow_schema="([-\w]+)".*\} ([0-9.e+]+)$',
    re.MULTILINE,
)


def _ready_pods(isvcs: Isvcs, name: str) -> list[Any]:
    pods = isvcs.core.list_namespaced_pod(isvcs.namespace, label_selector=f"{LABEL}={name}")
    return [
        p
        for p in pods.items
        if p.metadata.deletion_timestamp is None
        and p.status.phase == "Running"
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]


def test_create_builds_children_and_reports_ready(isvcs: Isvcs) -> None:
    created = isvcs.create(isvc_body("mlp", gpus=1, replicas=2))
    isvcs.wait_condition("mlp", "Ready", "True", reason="Available")

    deployments, services = isvcs.children("mlp")
    assert [d.metadata.name for d in deployments] == ["mlp-predictor"]
    assert [s.metadata.name for s in services] == ["mlp"]
    for child in (*deployments, *services):
        (owner,) = child.metadata.owner_references
        assert owner.kind == "InferenceService"
        assert owner.uid == created["metadata"]["uid"]
        assert owner.controller is True

    pods = _ready_pods(isvcs, "mlp")
    assert len(pods) == 2
    for pod in pods:
        node = isvcs.core.read_node(pod.spec.node_name)
        assert int(node.status.allocatable[GPU]) >= 1
        assert pod.spec.containers[0].resources.limits[GPU] == "1"

    status = isvcs.get("mlp")["status"]
    assert status["replicas"] == 2
    assert status["readyReplicas"] == 2
    assert status["replicasSummary"] == "2/2"
    assert status["gpus"] == 2
    assert status["url"] == f"http://mlp.{isvcs.namespace}.svc.cluster.local"
    assert status["observedGeneration"] == 1
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["PodsScheduled"]["status"] == "True"
    assert conditions["SpecValid"]["status"] == "True"
    assert all(
        c["lastTransitionTime"] and c["observedGeneration"] == 1 for c in conditions.values()
    )
    # Events mark transitions only, not each child written.
    assert {e.reason for e in isvcs.events_for("mlp")} == {"Ready"}


def test_pods_run_the_operators_image_with_credentials_from_a_secret(isvcs: Isvcs) -> None:
    isvcs.core.create_namespaced_secret(
        isvcs.namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="s3-credentials"),
            string_data={"access-key-id": "AKIDEXAMPLE", "secret-access-key": "example"},
        ),
    )
    env = [
        {
            "name": "AWS_ACCESS_KEY_ID",
            "valueFrom": {"secretKeyRef": {"name": "s3-credentials", "key": "access-key-id"}},
        },
        {
            "name": "AWS_SECRET_ACCESS_KEY",
            "valueFrom": {"secretKeyRef": {"name": "s3-credentials", "key": "secret-access-key"}},
        },
        {"name": "AWS_REGION", "value": "eu-west-1"},
    ]
    isvcs.create(isvc_body("private", model={"uri": "s3://models/mlp.onnx"}, runtime={"env": env}))
    isvcs.wait_condition("private", "Ready", "True")

    (pod,) = _ready_pods(isvcs, "private")
    (fetch,) = pod.spec.init_containers
    (runtime,) = pod.spec.containers
    # Both run the image given to the operator: the spec names none.
    assert (fetch.image, runtime.image) == (RUNTIME_IMAGE, RUNTIME_IMAGE)
    for container in (fetch, runtime):
        assert isvcs.core.api_client.sanitize_for_serialization(container.env) == env


def test_too_many_gpus_is_reported_unschedulable(isvcs: Isvcs) -> None:
    isvcs.create(isvc_body("huge", gpus=16))
    cond = isvcs.wait_condition("huge", "PodsScheduled", "False", reason="Unschedulable")
    assert "16 nvidia.com/gpu" in cond["message"]
    # The scheduler's own words: no node (fake or real) has room.
    assert re.search(r"\b0/\d+ nodes can run", cond["message"]), cond["message"]
    ready = isvcs.wait_condition("huge", "Ready", "False", reason="Unschedulable")
    assert ready["message"] == cond["message"]
    wait_for(
        lambda: "Unschedulable" in {e.reason for e in isvcs.events_for("huge")},
        what="an Unschedulable event",
    )


def test_spec_change_rolls_the_deployment(isvcs: Isvcs) -> None:
    isvcs.create(isvc_body("roll", gpus=1, replicas=1))
    isvcs.wait_condition("roll", "Ready", "True")
    before = {p.metadata.name for p in _ready_pods(isvcs, "roll")}

    isvcs.patch_spec("roll", {"resources": {"gpus": 2}, "replicas": 2})
    isvcs.wait_condition("roll", "Ready", "True")
    status = isvcs.get("roll")["status"]
    assert (status["observedGeneration"], status["replicasSummary"], status["gpus"]) == (
        2,
        "2/2",
        4,
    )
    pods = _ready_pods(isvcs, "roll")
    assert len(pods) == 2
    assert all(p.spec.containers[0].resources.limits[GPU] == "2" for p in pods)
    assert not before & {p.metadata.name for p in pods}, "the old pod should have been replaced"


def test_drift_is_repaired(isvcs: Isvcs) -> None:
    isvcs.create(isvc_body("drift", gpus=1, replicas=1))
    isvcs.wait_condition("drift", "Ready", "True")
    service_uid = isvcs.core.read_namespaced_service("drift", isvcs.namespace).metadata.uid

    isvcs.core.delete_namespaced_service("drift", isvcs.namespace)
    wait_for(
        lambda: _service_uid(isvcs, "drift") not in (None, service_uid),
        what="the deleted Service to come back",
    )

    isvcs.apps.patch_namespaced_deployment_scale(
        "drift-predictor", isvcs.namespace, {"spec": {"replicas": 3}}
    )
    wait_for(
        lambda: (
            isvcs.apps.read_namespaced_deployment("drift-predictor", isvcs.namespace).spec.replicas
            == 1
        ),
        what="the hand-scaled Deployment to be restored to 1 replica",
    )
    isvcs.wait_condition("drift", "Ready", "True")


def _service_uid(isvcs: Isvcs, name: str) -> str | None:
    try:
        uid: str = isvcs.core.read_namespaced_service(name, isvcs.namespace).metadata.uid
        return uid
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise


def test_resync_with_nothing_changed_writes_nothing(isvcs: Isvcs) -> None:
    isvcs.create(isvc_body("steady", gpus=1, replicas=1))
    isvcs.wait_condition("steady", "Ready", "True")
    # Let the Deployment controller and kwok finish their own status updates.
    time.sleep(2)

    def versions() -> tuple[str, str, str, int]:
        return (
            isvcs.get("steady")["metadata"]["resourceVersion"],
            isvcs.apps.read_namespaced_deployment(
                "steady-predictor", isvcs.namespace
            ).metadata.resource_version,
            isvcs.core.read_namespaced_service("steady", isvcs.namespace).metadata.resource_version,
            len(isvcs.events_for("steady")),
        )

    before = versions()
    time.sleep(RESYNC_SECONDS * 3 + 1)  # three periodic resyncs of every InferenceService
    assert versions() == before


def test_deletion_leaves_nothing_behind(isvcs: Isvcs) -> None:
    isvcs.create(isvc_body("gone", gpus=1, replicas=1))
    isvcs.wait_condition("gone", "Ready", "True")
    assert not isvcs.get("gone")["metadata"].get("finalizers")

    isvcs.delete("gone")
    wait_for(lambda: _absent(isvcs, "gone"), what="the InferenceService to disappear", timeout=10)
    wait_for(
        lambda: (
            isvcs.children("gone") == ([], [])
            and not isvcs.core.list_namespaced_pod(
                isvcs.namespace, label_selector=f"{LABEL}=gone"
            ).items
        ),
        what="the garbage collector to remove every child",
    )


def _absent(isvcs: Isvcs, name: str) -> bool:
    try:
        isvcs.get(name)
    except client.ApiException as error:
        return bool(error.status == 404)
    return False


def test_rejected_spec_is_reported_and_others_still_reconcile(
    isvcs: Isvcs, operator: OperatorProcess
) -> None:
    # Admitted by the CRD (affinity is free-form) but rejected by Deployment validation.
    bad_affinity: dict[str, Any] = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}
        }
    }
    isvcs.create(isvc_body("bad", scheduling={"affinity": bad_affinity}))
    cond = isvcs.wait_condition("bad", "Reconciled", "False", reason="ApplyFailed")
    assert "nodeSelectorTerms" in cond["message"]
    isvcs.wait_condition("bad", "Ready", "False", reason="ApplyFailed")
    wait_for(
        lambda: "ApplyFailed" in {e.reason for e in isvcs.events_for("bad")},
        what="an ApplyFailed event",
    )

    isvcs.create(isvc_body("good", gpus=1))
    isvcs.wait_condition("good", "Ready", "True")
    assert operator.alive()
    assert operator.healthy()

    isvcs.patch_spec("bad", {"scheduling": {"affinity": None}})
    isvcs.wait_condition("bad", "Ready", "True")
    isvcs.wait_condition("bad", "Reconciled", "True", reason="Applied")


def test_children_no_longer_desired_are_deleted(isvcs: Isvcs) -> None:
    created = isvcs.create(isvc_body("prune", gpus=1))
    isvcs.wait_condition("prune", "Ready", "True")
    owner = {
        "apiVersion": created["apiVersion"],
        "kind": created["kind"],
        "name": "prune",
        "uid": created["metadata"]["uid"],
        "controller": True,
    }
    # A variant the spec no longer asks for, and a labelled Deployment someone else controls.
    isvcs.apps.create_namespaced_deployment(
        isvcs.namespace, _idle_deployment("prune-canary", "prune", owner=owner)
    )
    isvcs.apps.create_namespaced_deployment(
        isvcs.namespace, _idle_deployment("prune-foreign", "prune", owner=None)
    )
    wait_for(
        lambda: (
            [d.metadata.name for d in isvcs.children("prune")[0]]
            == ["prune-foreign", "prune-predictor"]
        ),
        what="the operator to delete prune-canary",
    )
    isvcs.wait_condition("prune", "Ready", "True")


def _idle_deployment(name: str, owner_name: str, *, owner: dict[str, Any] | None) -> Any:
    labels = {LABEL: owner_name, "app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "labels": labels,
            "ownerReferences": [owner] if owner else [],
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "idle", "image": "registry.invalid/idle"}]},
            },
        },
    }


@pytest.fixture
def write_counts(installed: Cluster, isvcs: Isvcs) -> Iterator[dict[str, str]]:
    """FlowSchemas that make the API server count the operator's writes in this test's
    namespace, by what they touch; yields the schema name for each of children and status."""
    names = {
        "children": f"sluice-test-{isvcs.namespace}-children",
        "status": f"sluice-test-{isvcs.namespace}-status",
    }
    resources = {"children": ["deployments", "services"], "status": ["inferenceservices/status"]}
    groups = {"children": ["apps", ""], "status": ["serving.sluice.dev"]}
    schemas = [
        {
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
            "kind": "FlowSchema",
            "metadata": {"name": names[part]},
            "spec": {
                "matchingPrecedence": 300,
                "priorityLevelConfiguration": {"name": "workload-low"},
                "distinguisherMethod": {"type": "ByUser"},
                "rules": [
                    {
                        "subjects": [
                            {
                                "kind": "ServiceAccount",
                                "serviceAccount": {
                                    "name": OPERATOR_ACCOUNT,
                                    "namespace": OPERATOR_NAMESPACE,
                                },
                            }
                        ],
                        "resourceRules": [
                            {
                                "verbs": ["create", "update", "patch", "delete"],
                                "apiGroups": groups[part],
                                "resources": resources[part],
                                "namespaces": [isvcs.namespace],
                            }
                        ],
                    }
                ],
            },
        }
        for part in names
    ]
    manifest = yaml.safe_dump_all(schemas)
    installed.kubectl("apply", "--server-side", "-f", "-", input=manifest)
    for name in names.values():
        installed.kubectl(
            "wait", "--for=condition=Dangling=False", "--timeout=30s", f"flowschema/{name}"
        )
    try:
        yield names
    finally:
        installed.kubectl("delete", "-f", "-", input=manifest)


def _dispatched(cluster: Cluster, schema: str) -> int:
    """Requests the API server dispatched under ``schema`` so far."""
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    return int(sum(float(v) for name, v in _DISPATCHED.findall(text) if name == schema))


def test_create_writes_each_child_once_and_resync_writes_nothing(
    isvcs: Isvcs, installed: Cluster, write_counts: dict[str, str]
) -> None:
    isvcs.create(isvc_body("counted", gpus=1, replicas=2))
    isvcs.wait_condition("counted", "Ready", "True")
    # Let the Deployment controller and kwok finish their own status updates.
    time.sleep(2)
    # One apply per child however often their status changed on the way to Ready; status
    # written as the rollout progressed, at least once.
    assert _dispatched(installed, write_counts["children"]) == 2
    status_writes = _dispatched(installed, write_counts["status"])
    assert status_writes >= 1

    time.sleep(RESYNC_SECONDS * 3 + 1)  # three periodic resyncs of every InferenceService
    assert _dispatched(installed, write_counts["children"]) == 2
    assert _dispatched(installed, write_counts["status"]) == status_writes
