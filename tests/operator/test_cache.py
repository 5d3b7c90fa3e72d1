"""Unit tests for sluice.operator.cache: what is kept, what counts as a change, the owner
index, and that an older version never replaces a newer one."""

from __future__ import annotations

from typing import Any

from sluice.operator.cache import Cache

LABEL = "serving.sluice.dev/inferenceservice"


def deployment(
    name: str, version: str, *, owner: str | None = "mlp", **spec: Any
) -> dict[str, Any]:
    labels = {LABEL: owner} if owner else {}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": "models",
            "resourceVersion": version,
            "labels": labels,
            "managedFields": [{"manager": "sluice-operator", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"replicas": 1, **spec},
    }


def test_objects_are_kept_without_managed_fields() -> None:
    cache = Cache(LABEL)
    assert cache.put(deployment("mlp-predictor", "5"))
    held = cache.get("apps/v1", "Deployment", "models", "mlp-predictor")
    assert held is not None
    assert "managedFields" not in held["metadata"]
    assert held["spec"] == {"replicas": 1}
    assert cache.get("apps/v1", "Deployment", "models", "other") is None
    assert cache.get("v1", "Service", "models", "mlp-predictor") is None


def test_an_older_version_never_replaces_a_newer_one() -> None:
    cache = Cache(LABEL)
    cache.put(deployment("mlp-predictor", "9", replicas=3))  # a write's response
    assert not cache.put(deployment("mlp-predictor", "8", replicas=2))  # a late watch event
    held = cache.get("apps/v1", "Deployment", "models", "mlp-predictor")
    assert held is not None
    assert held["spec"]["replicas"] == 3


def test_only_a_change_beyond_the_resource_version_counts() -> None:
    cache = Cache(LABEL)
    assert cache.put(deployment("mlp-predictor", "5"))
    assert not cache.put(deployment("mlp-predictor", "5"))
    assert not cache.put(deployment("mlp-predictor", "6"))
    assert cache.put(deployment("mlp-predictor", "7", replicas=2))


def test_owned_follows_the_owner_label() -> None:
    cache = Cache(LABEL)
    cache.put(deployment("b", "1"))
    cache.put(deployment("a", "2"))
    cache.put(deployment("c", "3", owner="other"))
    cache.put(deployment("d", "4", owner=None))
    assert [
        d["metadata"]["name"] for d in cache.owned("apps/v1", "Deployment", "models", "mlp")
    ] == [
        "a",
        "b",
    ]
    cache.put(deployment("b", "5", owner="other"))  # relabelled
    cache.remove("apps/v1", "Deployment", "models", "a")
    assert cache.owned("apps/v1", "Deployment", "models", "mlp") == []
    owned = cache.owned("apps/v1", "Deployment", "models", "other")
    assert [d["metadata"]["name"] for d in owned] == ["b", "c"]
    assert cache.owned("apps/v1", "Deployment", "elsewhere", "other") == []
    assert sorted(cache.keys("apps/v1", "Deployment")) == [
        ("models", "b"),
        ("models", "c"),
        ("models", "d"),
    ]


def test_pods_keep_only_what_reconcile_reads() -> None:
    cache = Cache(LABEL)
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "p",
            "namespace": "models",
            "uid": "u-1",
            "resourceVersion": "1",
            "labels": {},
            "annotations": {"a": "b"},
        },
        "spec": {
            "nodeName": "gpu-0",
            "containers": [
                {"name": "runtime", "image": "x", "resources": {"limits": {"nvidia.com/gpu": "1"}}}
            ],
        },
        "status": {
            "phase": "Running",
            "podIP": "10.0.0.7",
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "ContainersReady", "status": "False"},
                {"type": "Ready", "status": "False", "lastTransitionTime": "2026-01-01T00:00:00Z"},
            ],
            "containerStatuses": [{"name": "runtime", "restartCount": 0}],
        },
    }
    assert cache.put(pod)
    held = cache.get("v1", "Pod", "models", "p")
    assert held is not None
    assert held["metadata"] == {
        "name": "p",
        "namespace": "models",
        "uid": "u-1",
        "resourceVersion": "1",
        "labels": {},
    }
    assert held["spec"] == {
        "nodeName": "gpu-0",
        "containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}}],
    }
    assert held["status"] == {
        "phase": "Running",
        "podIP": "10.0.0.7",
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "False"},
        ],
    }
    # A restart count is not kept, so it wakes nobody; readiness is, so a Ready pod is asked
    # for its execution provider.
    pod["metadata"]["resourceVersion"] = "2"
    pod["status"]["containerStatuses"][0]["restartCount"] = 1
    assert not cache.put(pod)
    pod["metadata"]["resourceVersion"] = "3"
    pod["status"]["conditions"][2]["status"] = "True"
    assert cache.put(pod)
