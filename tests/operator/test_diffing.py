"""Unit tests for sluice.operator.diffing: when a child needs a server-side apply."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from sluice.contracts.labels import ANNOTATION_FINGERPRINT
from sluice.operator import builders, diffing
from sluice.operator.diffing import fingerprint, needs_apply, stamped
from sluice.operator.spec import parse


def desired_deployment() -> dict[str, Any]:
    """A predictor Deployment shaped like the builders' output."""
    labels = {"serving.sluice.dev/inferenceservice": "resnet"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "resnet-predictor", "namespace": "models", "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100"},
                    "containers": [
                        {
                            "name": "runtime",
                            "image": "ghcr.io/sluice-dev/sluice-runtime:0.1.0",
                            "env": [{"name": "LOG_LEVEL", "value": "info"}],
                            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                            "resources": {
                                "requests": {"cpu": "1000m", "memory": "1024Mi"},
                                "limits": {"cpu": "1000m", "memory": "1024Mi"},
                            },
                        }
                    ],
                    "volumes": [{"name": "models", "emptyDir": {}}],
                },
            },
        },
    }


def desired_service() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "resnet", "namespace": "models"},
        "spec": {
            "type": "ClusterIP",
            "selector": {"serving.sluice.dev/inferenceservice": "resnet"},
            "ports": [
                {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                {"name": "grpc", "port": 8081, "targetPort": "grpc", "protocol": "TCP"},
            ],
        },
    }


def defaults(obj: dict[str, Any], **values: Any) -> None:
    """What the API server's defaulting does: fill in fields that were not set."""
    for key, value in values.items():
        obj.setdefault(key, value)


def served(applied: dict[str, Any]) -> dict[str, Any]:
    """``applied`` as a GET returns it afterwards: metadata, defaults and status added."""
    obj = copy.deepcopy(applied)
    obj["metadata"].update(
        uid="0b6a3c1e-7a51-4f0e-9d4b-2d7c1f0e8a11",
        resourceVersion="48213",
        generation=1,
        creationTimestamp="2026-01-01T00:00:00Z",
        managedFields=[
            {
                "manager": "sluice-operator",
                "operation": "Apply",
                "apiVersion": obj["apiVersion"],
                "time": "2026-01-01T00:00:00Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {}},
            }
        ],
    )
    spec = obj["spec"]
    if obj["kind"] == "Deployment":
        defaults(spec, revisionHistoryLimit=10, progressDeadlineSeconds=600)
        spec["strategy"]["rollingUpdate"].setdefault("maxSurge", "25%")
        spec["template"]["metadata"]["creationTimestamp"] = None
        pod = spec["template"]["spec"]
        defaults(
            pod,
            restartPolicy="Always",
            terminationGracePeriodSeconds=30,
            dnsPolicy="ClusterFirst",
            securityContext={},
            schedulerName="default-scheduler",
        )
        for container in pod["containers"]:
            defaults(
                container,
                terminationMessagePath="/dev/termination-log",
                terminationMessagePolicy="File",
                imagePullPolicy="IfNotPresent",
            )
        obj["status"] = {
            "observedGeneration": 1,
            "replicas": spec["replicas"],
            "readyReplicas": spec["replicas"],
            "conditions": [{"type": "Available", "status": "True", "reason": "Minimum"}],
        }
    else:
        defaults(
            spec,
            clusterIP="10.96.14.7",
            clusterIPs=["10.96.14.7"],
            ipFamilies=["IPv4"],
            ipFamilyPolicy="SingleStack",
            sessionAffinity="None",
            internalTrafficPolicy="Cluster",
        )
        obj["status"] = {"loadBalancer": {}}
    return obj


# fingerprint and stamped.


def test_fingerprint_ignores_key_order() -> None:
    obj = desired_deployment()
    reordered = {key: obj[key] for key in reversed(list(obj))}
    reordered["spec"] = {key: obj["spec"][key] for key in sorted(obj["spec"], reverse=True)}
    assert list(reordered) != list(obj)
    assert fingerprint(reordered) == fingerprint(obj)
    assert fingerprint(copy.deepcopy(obj)) == fingerprint(obj)


def test_fingerprint_changes_with_any_value_and_list_order() -> None:
    obj = desired_deployment()
    scaled = desired_deployment()
    scaled["spec"]["replicas"] = 3
    ports = desired_service()
    swapped = desired_service()
    swapped["spec"]["ports"].reverse()
    assert fingerprint(scaled) != fingerprint(obj)
    assert fingerprint(swapped) != fingerprint(ports)
    assert isinstance(fingerprint(obj), str)
    assert 0 < len(fingerprint(obj)) <= 63  # fits a label value, let alone an annotation


def test_stamped_adds_the_fingerprint_without_touching_the_input() -> None:
    obj = desired_service()
    obj["metadata"]["annotations"] = {"team": "vision"}
    before = copy.deepcopy(obj)
    result = stamped(obj)
    assert obj == before
    assert result["metadata"]["annotations"] == {
        "team": "vision",
        ANNOTATION_FINGERPRINT: fingerprint(obj),
    }
    del result["metadata"]["annotations"][ANNOTATION_FINGERPRINT]
    assert result == before


def test_stamped_creates_the_annotations() -> None:
    obj = desired_deployment()
    result = stamped(obj)
    assert "annotations" not in obj["metadata"]
    assert result["metadata"]["annotations"] == {ANNOTATION_FINGERPRINT: fingerprint(obj)}
    assert stamped(obj) == result


# needs_apply: nothing to do.


def test_absent_child_needs_apply() -> None:
    assert needs_apply(stamped(desired_deployment()), None)


def test_served_children_need_no_apply() -> None:
    for obj in (desired_deployment(), desired_service()):
        want = stamped(obj)
        assert not needs_apply(want, served(want))


def test_the_builders_children_need_no_apply_once_served() -> None:
    isvc = parse(
        {
            "apiVersion": "serving.sluice.dev/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": "resnet", "namespace": "models", "uid": "u-1", "generation": 1},
            "spec": {"model": {"uri": "https://models.example/resnet.onnx"}, "replicas": 2},
        }
    )
    for child in builders.desired_children(isvc):
        want = stamped(child)
        assert not needs_apply(want, served(want)), child["kind"]


def test_canonical_quantities_need_no_apply() -> None:
    want = stamped(desired_deployment())
    have = served(want)
    container = have["spec"]["template"]["spec"]["containers"][0]
    container["resources"] = {
        "requests": {"cpu": "1", "memory": "1Gi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    assert not needs_apply(want, have)
    container["resources"]["limits"]["memory"] = "2Gi"
    assert needs_apply(want, have)


def test_quantities_compare_by_meaning_only_inside_resources() -> None:
    assert diffing.contains({"limits": {"nvidia.com/gpu": "1"}}, {"limits": {"nvidia.com/gpu": 1}})
    assert diffing.contains({"requests": {"cpu": "500m"}}, {"requests": {"cpu": "0.5"}})
    assert not diffing.contains({"requests": {"cpu": "1"}}, {"requests": {"cpu": "2"}})
    assert not diffing.contains({"value": "1"}, {"value": "1000m"})


def test_empty_values_the_api_server_drops_need_no_apply() -> None:
    obj = desired_deployment()
    pod = obj["spec"]["template"]["spec"]
    pod["tolerations"] = []
    pod["nodeSelector"] = {}
    container = pod["containers"][0]
    container["args"] = []
    container["env"].append({"name": "EXTRA_FLAGS", "value": ""})
    container["resources"]["requests"] = {}
    want = stamped(obj)
    have = served(want)
    pod = have["spec"]["template"]["spec"]
    del pod["tolerations"], pod["nodeSelector"]
    container = pod["containers"][0]
    del container["args"], container["resources"]["requests"], container["env"][1]["value"]
    assert not needs_apply(want, have)


# needs_apply: something to do.


def test_hand_edited_replicas_need_apply() -> None:
    want = stamped(desired_deployment())
    have = served(want)
    have["spec"]["replicas"] = 5
    assert needs_apply(want, have)


def test_a_removed_service_port_needs_apply() -> None:
    want = stamped(desired_service())
    have = served(want)
    del have["spec"]["ports"][1]
    assert needs_apply(want, have)


def test_other_hand_edits_need_apply() -> None:
    want = stamped(desired_deployment())
    edits: list[Callable[[dict[str, Any]], object]] = [
        lambda obj: obj["spec"]["template"]["spec"]["containers"][0].update(image="evil:latest"),
        lambda obj: obj["metadata"]["labels"].clear(),
        lambda obj: obj["spec"]["template"]["spec"].pop("nodeSelector"),
        lambda obj: obj["metadata"]["annotations"].pop(ANNOTATION_FINGERPRINT),
        lambda obj: obj["spec"]["template"]["spec"]["containers"].append({"name": "sidecar"}),
    ]
    for edit in edits:
        have = served(want)
        edit(have)
        assert needs_apply(want, have)


def test_a_field_no_longer_set_needs_apply() -> None:
    old = stamped(desired_deployment())
    have = served(old)
    new = desired_deployment()
    del new["spec"]["template"]["spec"]["nodeSelector"]
    want = stamped(new)
    # Every field still wanted is there; only the fingerprint tells the change apart.
    assert diffing.contains(have, new)
    assert needs_apply(want, have)
