"""The InferenceService CRD against a real kube-apiserver: admission, defaults, status, explain."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from kubernetes import client

from e2e.cluster.client import Cluster
from e2e.cluster.waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("crd")]

GROUP, VERSION, PLURAL = "serving.sluice.dev", "v1alpha1", "inferenceservices"
MINIMAL: dict[str, Any] = {"model": {"uri": "https://models.example/resnet.onnx"}}


def manifest(spec: dict[str, Any] | None, *, name: str = "resnet") -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": {"name": name},
    }
    if spec is not None:
        body["spec"] = spec
    return body


def with_spec(**overrides: Any) -> dict[str, Any]:
    """MINIMAL with top-level spec fields replaced."""
    return {**copy.deepcopy(MINIMAL), **overrides}


def create(api: client.ApiClient, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    created: dict[str, Any] = client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body
    )
    return created


def rejection(api: client.ApiClient, namespace: str, body: dict[str, Any]) -> str:
    """The API server's message refusing ``body``; fails the test if it was accepted."""
    with pytest.raises(client.ApiException) as caught:
        create(api, namespace, body)
    assert caught.value.status == 422, caught.value.body
    message: str = json.loads(caught.value.body)["message"]
    return message


def toleration(**fields: Any) -> dict[str, Any]:
    return with_spec(scheduling={"tolerations": [fields]})


SECRET_REF = {"name": "s3-credentials", "key": "access-key-id"}


def env_from(value_from: dict[str, Any], **extra: str) -> dict[str, Any]:
    """An InferenceService whose one env variable has ``valueFrom``."""
    variable = {"name": "AWS_ACCESS_KEY_ID", "valueFrom": value_from, **extra}
    return manifest(with_spec(runtime={"env": [variable]}))


INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("no spec", manifest(None), "spec: Required value"),
    ("no model uri", manifest({"model": {"name": "x"}}), "spec.model.uri: Required value"),
    ("unknown uri scheme", manifest({"model": {"uri": "ftp://h/m.onnx"}}), "spec.model.uri"),
    ("relative path", manifest({"model": {"uri": "models/m.onnx"}}), "spec.model.uri"),
    ("pvc without path", manifest({"model": {"uri": "pvc://store"}}), "spec.model.uri"),
    ("pvc bad claim", manifest({"model": {"uri": "pvc://Store_1/m.onnx"}}), "spec.model.uri"),
    ("pvc dot-dot", manifest({"model": {"uri": "pvc://store/a/../b"}}), "spec.model.uri"),
    ("s3 without key", manifest({"model": {"uri": "s3://bucket"}}), "spec.model.uri"),
    ("http without host", manifest({"model": {"uri": "https:///m.onnx"}}), "spec.model.uri"),
    (
        "model name pattern",
        manifest({"model": {"uri": "/m.onnx", "name": "-bad"}}),
        "spec.model.name",
    ),
    (
        "model format enum",
        manifest({"model": {"uri": "/m.onnx", "format": "pytorch"}}),
        "spec.model.format",
    ),
    (
        "tensorrt on the sluice engine",
        manifest({"model": {"uri": "/m.plan", "format": "tensorrt"}}),
        "spec.model.format",
    ),
    ("engine enum", manifest(with_spec(runtime={"engine": "vllm"})), "spec.runtime.engine"),
    (
        "empty image",
        manifest(with_spec(runtime={"image": ""})),
        "spec.runtime.image",
    ),
    (
        "batch size 0",
        manifest(with_spec(runtime={"batching": {"maxBatchSize": 0}})),
        "spec.runtime.batching.maxBatchSize",
    ),
    (
        "batch size too large",
        manifest(with_spec(runtime={"batching": {"maxBatchSize": 4097}})),
        "spec.runtime.batching.maxBatchSize",
    ),
    (
        "negative queue delay",
        manifest(with_spec(runtime={"batching": {"maxQueueDelayMicroseconds": -1}})),
        "spec.runtime.batching.maxQueueDelayMicroseconds",
    ),
    (
        "reserved env name",
        manifest(with_spec(runtime={"env": [{"name": "SLUICE_PORT", "value": "1"}]})),
        "spec.runtime.env[0].name",
    ),
    (
        "duplicate env name",
        manifest(with_spec(runtime={"env": [{"name": "A"}, {"name": "A"}]})),
        "spec.runtime.env[1]",
    ),
    (
        "env name pattern",
        manifest(with_spec(runtime={"env": [{"name": "A=B"}]})),
        "spec.runtime.env[0].name",
    ),
    (
        "env value and valueFrom",
        env_from({"secretKeyRef": SECRET_REF}, value="x"),
        "spec.runtime.env[0].valueFrom",
    ),
    ("env valueFrom empty", env_from({}), "spec.runtime.env[0].valueFrom"),
    (
        "env valueFrom two sources",
        env_from({"secretKeyRef": SECRET_REF, "configMapKeyRef": SECRET_REF}),
        "spec.runtime.env[0].valueFrom",
    ),
    (
        # Not in the schema: pruned, which leaves valueFrom without a source.
        "env valueFrom fieldRef",
        env_from({"fieldRef": {"fieldPath": "metadata.name"}}),
        "spec.runtime.env[0].valueFrom",
    ),
    (
        "env secretKeyRef without key",
        env_from({"secretKeyRef": {"name": "s3-credentials"}}),
        "spec.runtime.env[0].valueFrom.secretKeyRef.key",
    ),
    (
        "env secretKeyRef bad name",
        env_from({"secretKeyRef": {"name": "S3_credentials", "key": "k"}}),
        "spec.runtime.env[0].valueFrom.secretKeyRef.name",
    ),
    (
        "env configMapKeyRef bad key",
        env_from({"configMapKeyRef": {"name": "s3", "key": "a/b"}}),
        "spec.runtime.env[0].valueFrom.configMapKeyRef.key",
    ),
    (
        "reserved env name from a Secret",
        manifest(
            with_spec(
                runtime={"env": [{"name": "SLUICE_X", "valueFrom": {"secretKeyRef": SECRET_REF}}]}
            )
        ),
        "spec.runtime.env[0].name",
    ),
    (
        "too many args",
        manifest(with_spec(runtime={"args": ["x"] * 65})),
        "spec.runtime.args",
    ),
    ("too many gpus", manifest(with_spec(resources={"gpus": 65})), "spec.resources.gpus"),
    ("negative gpus", manifest(with_spec(resources={"gpus": -1})), "spec.resources.gpus"),
    (
        "gpuType without gpus",
        manifest(with_spec(resources={"gpuType": "NVIDIA-H100-80GB-HBM3"})),
        "spec.resources.gpuType",
    ),
    ("cpu not a quantity", manifest(with_spec(resources={"cpu": "two"})), "spec.resources.cpu"),
    (
        "negative memory",
        manifest(with_spec(resources={"memory": "-1Gi"})),
        "spec.resources.memory",
    ),
    (
        "toleration operator enum",
        manifest(toleration(key="k", operator="Maybe")),
        "spec.scheduling.tolerations[0].operator",
    ),
    (
        "toleration effect enum",
        manifest(toleration(key="k", effect="Sometimes")),
        "spec.scheduling.tolerations[0].effect",
    ),
    (
        "toleration without key needs Exists",
        manifest(toleration(operator="Equal", value="v")),
        "spec.scheduling.tolerations[0].operator",
    ),
    (
        "toleration Exists with a value",
        manifest(toleration(key="k", operator="Exists", value="v")),
        "spec.scheduling.tolerations[0].value",
    ),
    (
        "tolerationSeconds without NoExecute",
        manifest(toleration(key="k", effect="NoSchedule", tolerationSeconds=5)),
        "spec.scheduling.tolerations[0].tolerationSeconds",
    ),
    (
        "gpu product set twice",
        manifest(
            with_spec(
                resources={"gpus": 1, "gpuType": "NVIDIA-H100-80GB-HBM3"},
                scheduling={"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A100"}},
            )
        ),
        "spec.scheduling.nodeSelector",
    ),
    (
        "node selector key",
        manifest(with_spec(scheduling={"nodeSelector": {"bad key": "x"}})),
        "spec.scheduling.nodeSelector",
    ),
    (
        "node selector value",
        manifest(with_spec(scheduling={"nodeSelector": {"pool": "a b"}})),
        "spec.scheduling.nodeSelector.pool",
    ),
    (
        "toleration key",
        manifest(toleration(key="bad key", operator="Exists")),
        "spec.scheduling.tolerations[0].key",
    ),
    (
        "priority class pattern",
        manifest(with_spec(scheduling={"priorityClassName": "High_Priority"})),
        "spec.scheduling.priorityClassName",
    ),
    ("too many replicas", manifest(with_spec(replicas=1001)), "spec.replicas"),
    ("negative replicas", manifest(with_spec(replicas=-1)), "spec.replicas"),
    ("name too long", manifest(MINIMAL, name="x" * 53), "metadata.name"),
    ("name with a dot", manifest(MINIMAL, name="resnet.v2"), "metadata.name"),
    ("name starting with a digit", manifest(MINIMAL, name="50-layers"), "metadata.name"),
]


def canary(**fields: Any) -> dict[str, Any]:
    """An InferenceService rolled out as a canary with ``fields`` in spec.rollout.canary."""
    return manifest(with_spec(rollout={"strategy": "Canary", "canary": fields}))


def variants(*items: dict[str, Any], name: str = "resnet", **spec: Any) -> dict[str, Any]:
    """An InferenceService with spec.variants ``items`` and other spec fields ``spec``."""
    return manifest(with_spec(variants=list(items), **spec), name=name)


def matching(*entries: dict[str, Any]) -> dict[str, Any]:
    """An InferenceService whose one variant has the match entries ``entries``."""
    return variants({"name": "b", "match": list(entries)})


def traffic(**fields: Any) -> dict[str, Any]:
    """An InferenceService with a variant b and ``fields`` in spec.traffic."""
    return variants({"name": "b", "weight": 10}, traffic=fields)


GATEWAY = {"name": "web"}

INVALID += [
    (
        "rollout strategy enum",
        manifest(with_spec(rollout={"strategy": "BlueGreen"})),
        "spec.rollout.strategy",
    ),
    ("no canary steps", canary(steps=[]), "spec.rollout.canary.steps"),
    ("too many canary steps", canary(steps=list(range(1, 12))), "spec.rollout.canary.steps"),
    ("canary step 0", canary(steps=[0, 50]), "spec.rollout.canary.steps[0]"),
    ("canary step 100", canary(steps=[50, 100]), "spec.rollout.canary.steps[1]"),
    ("canary steps decreasing", canary(steps=[50, 10]), "spec.rollout.canary.steps"),
    ("canary steps repeated", canary(steps=[10, 10, 50]), "spec.rollout.canary.steps"),
    ("canary stepSeconds 0", canary(stepSeconds=0), "spec.rollout.canary.stepSeconds"),
    (
        "canary stepSeconds above a day",
        canary(stepSeconds=86401),
        "spec.rollout.canary.stepSeconds",
    ),
    (
        "canary readyDeadlineSeconds 0",
        canary(readyDeadlineSeconds=0),
        "spec.rollout.canary.readyDeadlineSeconds",
    ),
    (
        "analysis minRequests 0",
        canary(analysis={"minRequests": 0}),
        "spec.rollout.canary.analysis.minRequests",
    ),
    (
        "analysis maxErrorRate above 1",
        canary(analysis={"maxErrorRate": 1.5}),
        "spec.rollout.canary.analysis.maxErrorRate",
    ),
    (
        "analysis maxP99LatencySeconds 0",
        canary(analysis={"maxP99LatencySeconds": 0}),
        "spec.rollout.canary.analysis.maxP99LatencySeconds",
    ),
    (
        "analysis failureLimit 0",
        canary(analysis={"failureLimit": 0}),
        "spec.rollout.canary.analysis.failureLimit",
    ),
    (
        "analysis deadline shorter than a step",
        canary(stepSeconds=120, analysis={"deadlineSeconds": 60}),
        "spec.rollout.canary.analysis.deadlineSeconds",
    ),
    (
        # The default deadline (600) is compared with the step too.
        "default analysis deadline shorter than a step",
        canary(stepSeconds=900),
        "spec.rollout.canary.analysis.deadlineSeconds",
    ),
    ("variant without a name", variants({"weight": 10}), "spec.variants[0].name"),
    ("variant name pattern", variants({"name": "B_2"}), "spec.variants[0].name"),
    ("variant name main", variants({"name": "main"}), "spec.variants[0].name"),
    ("variant name canary", variants({"name": "canary"}), "spec.variants[0].name"),
    ("variant name router", variants({"name": "router"}), "spec.variants[0].name"),
    ("variant name activator", variants({"name": "activator"}), "spec.variants[0].name"),
    ("variant name predictor", variants({"name": "predictor"}), "spec.variants[0].name"),
    ("duplicate variant names", variants({"name": "b"}, {"name": "b"}), "spec.variants[1]"),
    (
        "variant name over the name budget",
        variants({"name": "v" * 11}, name="x" * 52),
        "spec.variants[].name",
    ),
    ("too many variants", variants(*({"name": f"v{i}"} for i in range(9))), "spec.variants"),
    ("variant weight above 100", variants({"name": "b", "weight": 101}), "spec.variants[0].weight"),
    (
        "variant weights above 100",
        variants({"name": "b", "weight": 60}, {"name": "c", "weight": 50}),
        "spec.variants[].weight",
    ),
    ("variant replicas", variants({"name": "b", "replicas": -1}), "spec.variants[0].replicas"),
    (
        "variant overriding the model name",
        variants({"name": "b", "model": {"uri": "/m.onnx", "name": "other"}}),
        "spec.variants[0].model.name",
    ),
    (
        "variant model uri scheme",
        variants({"name": "b", "model": {"uri": "ftp://h/m.onnx"}}),
        "spec.variants[0].model.uri",
    ),
    (
        "variant pvc uri without path",
        variants({"name": "b", "model": {"uri": "pvc://store"}}),
        "spec.variants[0].model.uri",
    ),
    (
        "variant tensorrt on the main model's sluice engine",
        variants({"name": "b", "model": {"uri": "/m.plan", "format": "tensorrt"}}),
        "spec.variants[].model.format",
    ),
    (
        "variant sluice engine under the main model's tensorrt",
        manifest(
            {
                "model": {"uri": "/m.plan", "format": "tensorrt"},
                "runtime": {"engine": "triton"},
                "variants": [{"name": "b", "runtime": {"engine": "sluice"}}],
            }
        ),
        "spec.variants[].model.format",
    ),
    (
        "variant gpus 0 under the main model's gpuType",
        variants(
            {"name": "b", "resources": {"gpus": 0}},
            resources={"gpus": 1, "gpuType": "NVIDIA-H100-80GB-HBM3"},
        ),
        "spec.variants[].resources.gpuType",
    ),
    (
        "variant gpuType without gpus",
        variants({"name": "b", "resources": {"gpuType": "NVIDIA-H100-80GB-HBM3"}}),
        "spec.variants[].resources.gpuType",
    ),
    (
        "variant reserved env name",
        variants({"name": "b", "runtime": {"env": [{"name": "SLUICE_PORT", "value": "1"}]}}),
        "spec.variants[0].runtime.env[0].name",
    ),
    (
        "variant batch size 0",
        variants({"name": "b", "runtime": {"batching": {"maxBatchSize": 0}}}),
        "spec.variants[0].runtime.batching.maxBatchSize",
    ),
    (
        "variant toleration without key",
        variants({"name": "b", "scheduling": {"tolerations": [{"operator": "Equal"}]}}),
        "spec.variants[0].scheduling.tolerations[0].operator",
    ),
    ("match entry with neither", matching({}), "spec.variants[0].match[0]"),
    (
        "match entry with both",
        matching(
            {
                "header": {"name": "x-cohort", "value": "beta"},
                "cookie": {"name": "tier", "value": "gold"},
            }
        ),
        "spec.variants[0].match[0]",
    ),
    (
        "header match with value and regex",
        matching({"header": {"name": "x-cohort", "value": "beta", "regex": "b.*"}}),
        "spec.variants[0].match[0].header",
    ),
    (
        "header match with neither value nor regex",
        matching({"header": {"name": "x-cohort"}}),
        "spec.variants[0].match[0].header",
    ),
    (
        "header match name in upper case",
        matching({"header": {"name": "X-Cohort", "value": "beta"}}),
        "spec.variants[0].match[0].header.name",
    ),
    (
        "cookie match without value",
        matching({"cookie": {"name": "tier"}}),
        "spec.variants[0].match[0].cookie.value",
    ),
    (
        "too many match entries",
        matching(*({"cookie": {"name": "tier", "value": str(i)}} for i in range(17))),
        "spec.variants[0].match",
    ),
    ("stickyBy with neither", traffic(stickyBy={}), "spec.traffic.stickyBy"),
    (
        "stickyBy with both",
        traffic(stickyBy={"header": "x-user-id", "cookie": "session"}),
        "spec.traffic.stickyBy",
    ),
    (
        "stickyBy header in upper case",
        traffic(stickyBy={"header": "X-User"}),
        "spec.traffic.stickyBy.header",
    ),
    (
        "mirror of no variant",
        traffic(mirror={"variant": "shadow"}),
        "spec.traffic.mirror.variant",
    ),
    (
        "mirror without variants",
        manifest(with_spec(traffic={"mirror": {"variant": "b"}})),
        "spec.traffic.mirror.variant",
    ),
    (
        "mirror percent 0",
        traffic(mirror={"variant": "b", "percent": 0}),
        "spec.traffic.mirror.percent",
    ),
    (
        "mirror percent above 100",
        traffic(mirror={"variant": "b", "percent": 100.5}),
        "spec.traffic.mirror.percent",
    ),
    ("provider enum", traffic(provider="Istio"), "spec.traffic.provider"),
    ("GatewayAPI without a gateway", traffic(provider="GatewayAPI"), "spec.traffic.gateway"),
    (
        "gateway with the Router",
        traffic(provider="Router", gateway=GATEWAY),
        "spec.traffic.gateway",
    ),
    ("gateway with the default provider", traffic(gateway=GATEWAY), "spec.traffic.gateway"),
    (
        "gateway without a name",
        traffic(provider="GatewayAPI", gateway={"namespace": "infra"}),
        "spec.traffic.gateway.name",
    ),
    (
        "gateway namespace pattern",
        traffic(provider="GatewayAPI", gateway={"name": "web", "namespace": "In_fra"}),
        "spec.traffic.gateway.namespace",
    ),
    (
        "gateway sectionName pattern",
        traffic(provider="GatewayAPI", gateway={"name": "web", "sectionName": "HTTP"}),
        "spec.traffic.gateway.sectionName",
    ),
]


@pytest.mark.parametrize(
    ("body", "field"), [(body, field) for _, body, field in INVALID], ids=[i for i, _, _ in INVALID]
)
def test_invalid_specs_are_refused_naming_the_field(
    api: client.ApiClient, namespace: str, body: dict[str, Any], field: str
) -> None:
    assert field in rejection(api, namespace, copy.deepcopy(body))


def test_minimal_spec_is_defaulted(api: client.ApiClient, namespace: str) -> None:
    created = create(api, namespace, manifest(MINIMAL))
    assert created["spec"] == {
        "model": {"uri": "https://models.example/resnet.onnx", "format": "onnx"},
        "runtime": {
            "engine": "sluice",
            "batching": {"maxBatchSize": 32, "maxQueueDelayMicroseconds": 2000},
        },
        "resources": {"gpus": 0},
        "replicas": 1,
    }


def test_partial_batching_is_completed(api: client.ApiClient, namespace: str) -> None:
    created = create(api, namespace, manifest(with_spec(runtime={"batching": {"maxBatchSize": 8}})))
    assert created["spec"]["runtime"]["batching"] == {
        "maxBatchSize": 8,
        "maxQueueDelayMicroseconds": 2000,
    }


FULL: dict[str, Any] = {
    "model": {"uri": "pvc://model-store/bert/model.plan", "name": "bert.v2", "format": "tensorrt"},
    "runtime": {
        "engine": "triton",
        "image": "registry.local/tritonserver:24.08-py3",
        "batching": {"maxBatchSize": 4096, "maxQueueDelayMicroseconds": 0},
        "args": ["--log-verbose=1"],
        "env": [
            {"name": "AWS_REGION", "value": "eu-west-1"},
            {"name": "EMPTY"},
            {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": SECRET_REF}},
            {
                "name": "AWS_ENDPOINT_URL",
                "valueFrom": {
                    "configMapKeyRef": {"name": "s3.endpoints", "key": "url", "optional": True}
                },
            },
        ],
    },
    "resources": {"gpus": 8, "gpuType": "NVIDIA-H100-80GB-HBM3", "cpu": "7500m", "memory": 64},
    "scheduling": {
        "nodeSelector": {"pool": "inference", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        "tolerations": [
            {"operator": "Exists"},
            {"key": "spot", "operator": "Equal", "value": "true", "effect": "NoExecute"},
            {"key": "lease", "effect": "NoExecute", "tolerationSeconds": 300},
        ],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                    ]
                }
            }
        },
        "priorityClassName": "inference-high",
    },
    "replicas": 0,
}


def test_full_spec_is_stored_unchanged(api: client.ApiClient, namespace: str) -> None:
    created = create(api, namespace, manifest(FULL, name="x" * 52))
    assert created["spec"] == FULL


# Every rollout, variant and traffic field set, so no default is added.
TRAFFIC_FULL: dict[str, Any] = {
    "model": {"uri": "https://models.example/resnet.onnx", "name": "resnet", "format": "onnx"},
    "runtime": {
        "engine": "sluice",
        "batching": {"maxBatchSize": 32, "maxQueueDelayMicroseconds": 2000},
    },
    "resources": {"gpus": 1, "gpuType": "NVIDIA-H100-80GB-HBM3"},
    "replicas": 2,
    "rollout": {
        "strategy": "Canary",
        "canary": {
            "steps": [1, 5, 25, 50, 99],
            "stepSeconds": 60,
            "readyDeadlineSeconds": 900,
            "analysis": {
                "minRequests": 100,
                "maxErrorRate": 0.05,
                "maxP99LatencySeconds": 0.25,
                "failureLimit": 3,
                "deadlineSeconds": 60,
            },
        },
        "paused": True,
    },
    "variants": [
        {
            "name": "b",
            "weight": 30,
            "replicas": 0,
            "model": {"uri": "/opt/models/b.plan", "format": "tensorrt"},
            "runtime": {
                "engine": "triton",
                "image": "registry.local/tritonserver:24.08-py3",
                "batching": {"maxBatchSize": 8},
                "args": ["--log-verbose=1"],
                "env": [{"name": "AWS_REGION", "value": "eu-west-1"}],
            },
            "resources": {"gpus": 2, "cpu": "4", "memory": "16Gi"},
            "scheduling": {
                "nodeSelector": {"pool": "ab"},
                "tolerations": [{"key": "spot", "operator": "Exists"}],
                "priorityClassName": "inference-low",
            },
            "match": [
                {"header": {"name": "x-cohort", "value": "beta"}},
                {"header": {"name": "x-user-id", "regex": "^1[0-9]*$"}},
                {"cookie": {"name": "tier", "value": "gold"}},
            ],
        },
        {"name": "shadow", "weight": 70, "replicas": 1},
    ],
    "traffic": {
        "stickyBy": {"cookie": "session"},
        "mirror": {"variant": "shadow", "percent": 12.5},
        "provider": "GatewayAPI",
        "gateway": {"name": "web", "namespace": "infra", "sectionName": "http"},
    },
}


def test_traffic_spec_is_stored_unchanged(api: client.ApiClient, namespace: str) -> None:
    created = create(api, namespace, manifest(TRAFFIC_FULL))
    assert created["spec"] == TRAFFIC_FULL


def test_canary_rollout_is_defaulted(api: client.ApiClient, namespace: str) -> None:
    created = create(api, namespace, manifest(with_spec(rollout={"strategy": "Canary"})))
    assert created["spec"]["rollout"] == {
        "strategy": "Canary",
        "canary": {
            "steps": [10, 50],
            "stepSeconds": 30,
            "readyDeadlineSeconds": 600,
            "analysis": {
                "minRequests": 20,
                "maxErrorRate": 0.01,
                "failureLimit": 1,
                "deadlineSeconds": 600,
            },
        },
        "paused": False,
    }


def test_variant_overrides_get_no_defaults(api: client.ApiClient, namespace: str) -> None:
    """A default inside an override would replace the main model's value: none is added."""
    variant = {
        "name": "b",
        "model": {"uri": "/opt/models/b.onnx"},
        "runtime": {"image": "registry.local/runtime:2", "batching": {}},
        "resources": {},
        "scheduling": {"nodeSelector": {"pool": "ab"}},
    }
    created = create(api, namespace, variants(variant))
    assert created["spec"]["variants"] == [{**variant, "weight": 0, "replicas": 1}]


def test_traffic_is_defaulted(api: client.ApiClient, namespace: str) -> None:
    created = create(api, namespace, traffic(mirror={"variant": "b"}))
    assert created["spec"]["traffic"] == {
        "mirror": {"variant": "b", "percent": 100},
        "provider": "Router",
    }


def test_longest_variant_name_within_the_budget_is_accepted(
    api: client.ApiClient, namespace: str
) -> None:
    """NAME-<variant> may have 63 characters: a 52-character name leaves 10 for the variant."""
    created = create(api, namespace, variants({"name": "v" * 10}, name="x" * 52))
    assert created["spec"]["variants"][0]["name"] == "v" * 10


@pytest.mark.parametrize(
    "uri",
    [
        "file:///opt/models/resnet.onnx",
        "/opt/models/resnet.onnx",
        "pvc://model-store/resnet/",
        "http://models.local:8080/resnet.onnx",
        "s3://bucket/path/to/resnet.onnx",
    ],
)
def test_every_uri_scheme_is_accepted(api: client.ApiClient, namespace: str, uri: str) -> None:
    assert create(api, namespace, manifest({"model": {"uri": uri}}))["spec"]["model"]["uri"] == uri


def test_status_subresource_and_printer_columns(
    cluster: Cluster, api: client.ApiClient, namespace: str
) -> None:
    objects = client.CustomObjectsApi(api)
    create(api, namespace, manifest(with_spec(resources={"gpus": 2}, replicas=3)))
    status = {
        "observedGeneration": 1,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Available",
                "message": "3 of 3 replicas ready",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": 1,
            }
        ],
        "url": f"http://resnet.{namespace}.svc.cluster.local",
        "replicas": 3,
        "readyReplicas": 3,
        "replicasSummary": "3/3",
        "gpus": 6,
        "provider": "CUDAExecutionProvider",
        "rollout": {
            "phase": "Progressing",
            "step": 0,
            "canaryWeight": 10,
            "stableRevision": "5d8f9c",
            "canaryRevision": "7a1b2e",
            "stepStartTime": "2026-01-01T00:00:00Z",
            "failures": 0,
            "message": "step 1 of 2: 10% to the canary",
            "lastAction": "promote",
            "analysis": {
                "requests": 12,
                "errorRate": 0.0,
                "p99LatencySeconds": 0.12,
                "verdict": "Waiting",
                "time": "2026-01-01T00:00:30Z",
            },
        },
    }
    objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "resnet", {"status": status}
    )
    stored = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "resnet")
    assert stored["status"] == status
    assert stored["metadata"]["generation"] == 1

    table = cluster.kubectl("get", "infsvc", "-n", namespace).stdout.splitlines()
    assert table[0].split() == [
        "NAME", "READY", "URL", "REPLICAS", "GPUS", "PROVIDER", "CANARY", "AGE",
    ]  # fmt: skip
    assert table[1].split()[:7] == [
        "resnet", "True", status["url"], "3/3", "6", "CUDAExecutionProvider", "10",
    ]  # fmt: skip
    wide = cluster.kubectl("get", "sluice", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert wide[0].split()[:8] == [
        "NAME", "READY", "URL", "REPLICAS", "GPUS", "PROVIDER", "ENGINE", "MODEL",
    ]  # fmt: skip


def test_status_is_not_writable_through_the_main_resource(
    api: client.ApiClient, namespace: str
) -> None:
    body = manifest(MINIMAL)
    body["status"] = {"url": "http://elsewhere"}
    assert "status" not in create(api, namespace, body)


EXPLAINED = {
    "spec.model.uri": "Where the model comes from",
    "spec.model.name": "The name the model is served under",
    "spec.model.format": "The model's file format",
    "spec.runtime.engine": "The model server",
    "spec.runtime.batching.maxBatchSize": "The largest batch the server forms",
    "spec.runtime.env.name": "The variable's name",
    "spec.runtime.env.valueFrom": "Where the value comes from instead of value",
    "spec.runtime.env.valueFrom.secretKeyRef.key": "The key whose value the variable takes",
    "spec.resources.gpus": "NVIDIA GPUs per replica",
    "spec.resources.gpuType": "The GPU product to run on",
    "spec.resources.memory": "Memory per replica",
    "spec.scheduling.tolerations.tolerationSeconds": "With effect NoExecute",
    "spec.scheduling.affinity": "Pod affinity, anti-affinity and node affinity",
    "spec.replicas": "The number of runtime pods",
    "status.replicasSummary": "readyReplicas/replicas",
    "spec.rollout.strategy": "RollingUpdate replaces the pods in place",
    "spec.rollout.canary.steps": "The percent of the main model's traffic the canary takes",
    "spec.rollout.canary.analysis": "How a step is judged on the canary's own requests",
    "spec.rollout.canary.analysis.deadlineSeconds": "How long after it began a step may wait",
    "spec.rollout.paused": "holds a canary rollout at its current step",
    "spec.variants": "Long-lived A/B variants served beside the main model",
    "spec.variants.name": "which must be at most 63 characters",
    "spec.variants.match.header.regex": "A regular expression (RE2 syntax)",
    "spec.variants.model.name": "Not allowed",
    "spec.variants.runtime.env": "Environment variables for the runtime",
    "spec.variants.scheduling.tolerations": "Taints the pods tolerate",
    "spec.traffic.stickyBy": "Keeps a client on one variant",
    "spec.traffic.mirror.percent": "The percent of the main model's requests copied",
    "spec.traffic.gateway.namespace": "The Gateway's namespace",
    "status.rollout.canaryWeight": "The percent of the main model's traffic the canary takes now",
    "status.rollout.analysis.verdict": "Passed, Failed, or Waiting",
}


def test_kubectl_explain_documents_the_fields(cluster: Cluster) -> None:
    def published() -> bool:
        result = cluster.kubectl("explain", "inferenceservice.spec.resources.gpus", check=False)
        return result.returncode == 0

    # The OpenAPI document is published shortly after the CRD is established.
    wait_for(published, what="kubectl explain to know the InferenceService", interval=1)
    for path, description in EXPLAINED.items():
        output = " ".join(cluster.kubectl("explain", f"inferenceservice.{path}").stdout.split())
        assert description in output, (path, output)
    explained = cluster.kubectl("explain", "infsvc").stdout
    assert "InferenceService serves one machine-learning model" in " ".join(explained.split())


def test_misspelt_fields_are_refused_by_kubectl(cluster: Cluster, namespace: str) -> None:
    body = manifest(with_spec(resourses={"gpus": 1}))
    result = cluster.kubectl(
        "create", "-n", namespace, "-f", "-", input=json.dumps(body), check=False
    )
    assert result.returncode != 0
    assert 'unknown field "spec.resourses"' in result.stderr


def test_env_from_pod_fields_is_refused_by_kubectl(cluster: Cluster, namespace: str) -> None:
    """fieldRef is not part of ``valueFrom``: kubectl's strict validation names it."""
    body = env_from({"fieldRef": {"fieldPath": "metadata.name"}})
    result = cluster.kubectl(
        "create", "-n", namespace, "-f", "-", input=json.dumps(body), check=False
    )
    assert result.returncode != 0
    assert 'unknown field "spec.runtime.env[0].valueFrom.fieldRef"' in result.stderr


def test_published_openapi_describes_every_field(cluster: Cluster) -> None:
    """What ``kubectl explain`` reads: the OpenAPI v3 document the API server publishes."""
    published = json.loads(
        cluster.kubectl("get", "--raw", f"/openapi/v3/apis/{GROUP}/{VERSION}").stdout
    )
    root = published["components"]["schemas"][f"dev.sluice.serving.{VERSION}.InferenceService"]
    undocumented: list[str] = []

    def visit(node: dict[str, Any], path: str) -> None:
        if not node.get("description"):
            undocumented.append(path)
        for name, child in node.get("properties", {}).items():
            if f"{path}.{name}" != ".metadata":  # ObjectMeta is described by Kubernetes
                visit(child, f"{path}.{name}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                visit(node[key], f"{path}[{key}]")

    visit(root, "")
    assert undocumented == []
