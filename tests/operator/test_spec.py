"""Unit tests for sluice.operator.spec: parsing, defaults and the errors the operator raises."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from sluice.operator.spec import (
    AnalysisSpec,
    BatchingSpec,
    CanarySpec,
    EnvVar,
    KeyRef,
    MirrorSpec,
    ModelSource,
    ResourcesSpec,
    RolloutSpec,
    SpecError,
    Toleration,
    TrafficSpec,
    VariantMatch,
    VariantSpec,
    parse,
    parse_model_uri,
)


def make_body(spec: dict[str, Any] | None = None, *, name: str = "resnet") -> dict[str, Any]:
    """A custom-resource body as the API server returns it, before CRD defaulting."""
    return {
        "apiVersion": "serving.sluice.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": "models", "uid": "uid-1", "generation": 3},
        "spec": {"model": {"uri": "https://models.example/resnet.onnx"}, **(spec or {})},
    }


def errors_on(body: dict[str, Any]) -> str:
    """The field of the SpecError that parsing ``body`` raises."""
    with pytest.raises(SpecError) as caught:
        parse(body)
    return caught.value.field


def test_identity_comes_from_metadata() -> None:
    isvc = parse(make_body())
    assert (isvc.name, isvc.namespace, isvc.uid, isvc.generation) == (
        "resnet",
        "models",
        "uid-1",
        3,
    )


def test_defaults_apply_when_the_crd_did_not_default() -> None:
    isvc = parse(make_body())
    assert isvc.model.name == "resnet"
    assert isvc.model.format == "onnx"
    assert isvc.runtime.engine == "sluice"
    assert isvc.runtime.image is None
    assert isvc.runtime.batching == BatchingSpec(max_batch_size=32, max_queue_delay_us=2000)
    assert isvc.runtime.args == ()
    assert isvc.runtime.env == ()
    assert isvc.resources.gpus == 0
    assert isvc.resources.gpu_type is None
    assert isvc.resources.cpu is None
    assert isvc.resources.memory is None
    assert dict(isvc.scheduling.node_selector) == {}
    assert isvc.scheduling.tolerations == ()
    assert isvc.scheduling.affinity is None
    assert isvc.replicas == 1


def test_crd_defaulted_body_parses_like_a_bare_one() -> None:
    defaulted = make_body(
        {
            "runtime": {
                "engine": "sluice",
                "batching": {"maxBatchSize": 32, "maxQueueDelayMicroseconds": 2000},
            },
            "resources": {"gpus": 0},
            "replicas": 1,
        }
    )
    defaulted["spec"]["model"]["format"] = "onnx"
    assert parse(defaulted) == parse(make_body())


def test_explicit_values_are_kept() -> None:
    isvc = parse(
        make_body(
            {
                "model": {"uri": "s3://bucket/bert.onnx", "name": "bert-base", "format": "onnx"},
                "runtime": {
                    "image": "registry.local/runtime:1",
                    "batching": {"maxBatchSize": 8, "maxQueueDelayMicroseconds": 0},
                    "args": ["--max-queue-size", "8"],
                    "env": [{"name": "AWS_REGION", "value": "eu-west-1"}, {"name": "EMPTY"}],
                },
                "resources": {"gpus": 2, "gpuType": "NVIDIA-H100-80GB-HBM3", "cpu": 4},
                "replicas": 0,
            }
        )
    )
    assert isvc.model.name == "bert-base"
    assert isvc.runtime.image == "registry.local/runtime:1"
    assert isvc.runtime.batching == BatchingSpec(max_batch_size=8, max_queue_delay_us=0)
    assert isvc.runtime.args == ("--max-queue-size", "8")
    assert isvc.runtime.env == (EnvVar("AWS_REGION", "eu-west-1"), EnvVar("EMPTY", ""))
    assert (isvc.resources.gpus, isvc.resources.gpu_type) == (2, "NVIDIA-H100-80GB-HBM3")
    assert isvc.resources.cpu == "4"
    assert isvc.replicas == 0


@pytest.mark.parametrize(
    ("uri", "kind", "path", "claim"),
    [
        ("/opt/models/resnet.onnx", "image", "/opt/models/resnet.onnx", ""),
        ("file:///opt/m", "image", "/opt/m", ""),
        ("pvc://models/resnet/model.onnx", "pvc", "resnet/model.onnx", "models"),
        ("pvc://models/resnet/", "pvc", "resnet", "models"),
        ("http://host/m.onnx", "http", "", ""),
        ("https://host/m.onnx", "http", "", ""),
        ("s3://bucket/key/m.onnx", "s3", "", ""),
    ],
)
def test_model_uri_sources(uri: str, kind: str, path: str, claim: str) -> None:
    assert parse_model_uri(uri) == ModelSource(kind, uri, path, claim)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "uri",
    [
        "pvc://models",
        "pvc://models/",
        "pvc://Models/x",
        "pvc://models/a//b",
        "pvc://models/a/../b",
        "pvc://models/./b",
        "file://relative/path",
        "s3://bucket",
        "s3://bucket/",
        "https://",
        "ftp://host/m.onnx",
        "models/resnet.onnx",
    ],
)
def test_model_uris_the_operator_cannot_fetch(uri: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_model_uri(uri)
    assert caught.value.field == "spec.model.uri"


def test_spec_error_names_field_and_message() -> None:
    error = SpecError("spec.resources.gpus", "must be at most 64")
    assert (error.field, error.message) == ("spec.resources.gpus", "must be at most 64")
    assert str(error) == "spec.resources.gpus: must be at most 64"


REF = {"name": "s3-credentials", "key": "access-key-id"}


def env_from(value_from: Any, **extra: str) -> dict[str, Any]:
    """A spec whose one env variable ``AWS_ACCESS_KEY_ID`` has ``valueFrom``."""
    variable = {"name": "AWS_ACCESS_KEY_ID", "valueFrom": value_from, **extra}
    return {"runtime": {"env": [variable]}}


def test_env_values_from_secrets_and_config_maps() -> None:
    isvc = parse(
        make_body(
            {
                "runtime": {
                    "env": [
                        {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": REF}},
                        {
                            "name": "AWS_ENDPOINT_URL",
                            "valueFrom": {
                                "configMapKeyRef": {
                                    "name": "s3.endpoints",
                                    "key": "url",
                                    "optional": True,
                                }
                            },
                        },
                        {"name": "AWS_REGION", "value": "eu-west-1"},
                    ]
                }
            }
        )
    )
    assert isvc.runtime.env == (
        EnvVar(
            "AWS_ACCESS_KEY_ID",
            value_from=KeyRef(kind="secretKeyRef", name="s3-credentials", key="access-key-id"),
        ),
        EnvVar(
            "AWS_ENDPOINT_URL",
            value_from=KeyRef(
                kind="configMapKeyRef", name="s3.endpoints", key="url", optional=True
            ),
        ),
        EnvVar("AWS_REGION", "eu-west-1"),
    )


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"resources": {"gpuType": "NVIDIA-H100-80GB-HBM3"}}, "spec.resources.gpuType"),
        ({"resources": {"gpus": 65}}, "spec.resources.gpus"),
        ({"resources": {"gpus": -1}}, "spec.resources.gpus"),
        ({"resources": {"gpus": True}}, "spec.resources.gpus"),
        ({"resources": {"gpus": "2"}}, "spec.resources.gpus"),
        ({"resources": {"cpu": "two"}}, "spec.resources.cpu"),
        ({"resources": {"memory": "-1Gi"}}, "spec.resources.memory"),
        ({"replicas": 1001}, "spec.replicas"),
        ({"runtime": {"engine": "vllm"}}, "spec.runtime.engine"),
        ({"runtime": {"batching": {"maxBatchSize": 0}}}, "spec.runtime.batching.maxBatchSize"),
        (
            {"runtime": {"batching": {"maxQueueDelayMicroseconds": 10_000_001}}},
            "spec.runtime.batching.maxQueueDelayMicroseconds",
        ),
        ({"runtime": {"env": [{"name": "SLUICE_PORT", "value": "1"}]}}, "spec.runtime.env[0].name"),
        ({"runtime": {"env": [{"name": "A"}, {"name": "A"}]}}, "spec.runtime.env[1].name"),
        ({"runtime": {"env": [{"name": "1A"}]}}, "spec.runtime.env[0].name"),
        (env_from({"secretKeyRef": REF}, value="x"), "spec.runtime.env[0].valueFrom"),
        (env_from({}), "spec.runtime.env[0].valueFrom"),
        (env_from({"secretKeyRef": REF, "configMapKeyRef": REF}), "spec.runtime.env[0].valueFrom"),
        (
            env_from({"fieldRef": {"fieldPath": "metadata.name"}}),
            "spec.runtime.env[0].valueFrom.fieldRef",
        ),
        (
            env_from({"secretKeyRef": {"key": "k"}}),
            "spec.runtime.env[0].valueFrom.secretKeyRef.name",
        ),
        (
            env_from({"secretKeyRef": {"name": "Not_A_Name", "key": "k"}}),
            "spec.runtime.env[0].valueFrom.secretKeyRef.name",
        ),
        (
            env_from({"configMapKeyRef": {"name": "c", "key": "a/b"}}),
            "spec.runtime.env[0].valueFrom.configMapKeyRef.key",
        ),
        (
            env_from({"configMapKeyRef": {"name": "c", "key": "k", "optional": "yes"}}),
            "spec.runtime.env[0].valueFrom.configMapKeyRef.optional",
        ),
        (env_from("s3-credentials"), "spec.runtime.env[0].valueFrom"),
        (
            {"runtime": {"env": [{"name": "SLUICE_PORT", "valueFrom": {"secretKeyRef": REF}}]}},
            "spec.runtime.env[0].name",
        ),
        ({"runtime": {"args": ["ok", 3]}}, "spec.runtime.args[1]"),
        (
            {"scheduling": {"tolerations": [{"operator": "Equal", "value": "x"}]}},
            "spec.scheduling.tolerations[0].operator",
        ),
        (
            {"scheduling": {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}},
            "spec.scheduling.tolerations[0].value",
        ),
        (
            {"scheduling": {"tolerations": [{"key": "k", "tolerationSeconds": 5}]}},
            "spec.scheduling.tolerations[0].tolerationSeconds",
        ),
        (
            {"scheduling": {"tolerations": [{"key": "k", "effect": "Sometimes"}]}},
            "spec.scheduling.tolerations[0].effect",
        ),
        (
            {
                "resources": {"gpus": 1, "gpuType": "NVIDIA-H100-80GB-HBM3"},
                "scheduling": {"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A100"}},
            },
            "spec.scheduling.nodeSelector",
        ),
        ({"scheduling": {"affinity": ["not", "an", "object"]}}, "spec.scheduling.affinity"),
    ],
)
def test_specs_the_operator_cannot_honour(spec: dict[str, Any], field: str) -> None:
    assert errors_on(make_body(spec)) == field


def test_sluice_engine_serves_only_onnx() -> None:
    body = make_body()
    body["spec"]["model"]["format"] = "tensorrt"
    assert errors_on(body) == "spec.model.format"
    body["spec"]["runtime"] = {"engine": "triton"}
    assert parse(body).model.format == "tensorrt"


@pytest.mark.parametrize("name", ["Bad-Name", "has.dots", "9starts-with-digit", "x" * 53])
def test_names_that_cannot_name_children(name: str) -> None:
    assert errors_on(make_body(name=name)) == "metadata.name"


def test_longest_name_is_accepted() -> None:
    assert parse(make_body(name="x" * 52)).name == "x" * 52


@pytest.mark.parametrize("model_name", ["-lead", "trail-", "a/b", "..", "x" * 64])
def test_model_names_rejected(model_name: str) -> None:
    body = make_body()
    body["spec"]["model"]["name"] = model_name
    assert errors_on(body) == "spec.model.name"


def test_missing_model_uri() -> None:
    body = make_body()
    del body["spec"]["model"]["uri"]
    assert errors_on(body) == "spec.model.uri"


def test_missing_namespace() -> None:
    body = make_body()
    del body["metadata"]["namespace"]
    assert errors_on(body) == "metadata.namespace"


def test_gpu_type_matching_node_selector_is_accepted() -> None:
    isvc = parse(
        make_body(
            {
                "resources": {"gpus": 1, "gpuType": "NVIDIA-H100-80GB-HBM3"},
                "scheduling": {"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}},
            }
        )
    )
    assert isvc.resources.gpu_type == "NVIDIA-H100-80GB-HBM3"


def test_scheduling_is_parsed_and_detached_from_the_body() -> None:
    body = make_body(
        {
            "scheduling": {
                "nodeSelector": {"pool": "inference"},
                "tolerations": [
                    {
                        "key": "dedicated",
                        "operator": "Equal",
                        "value": "ml",
                        "effect": "NoSchedule",
                    },
                    {"operator": "Exists"},
                    {"key": "spot", "effect": "NoExecute", "tolerationSeconds": 30},
                ],
                "affinity": {"nodeAffinity": {"required": {"terms": [1]}}},
                "priorityClassName": "inference-high",
            }
        }
    )
    original = copy.deepcopy(body)
    isvc = parse(body)
    body["spec"]["scheduling"]["affinity"]["nodeAffinity"]["required"]["terms"].append(2)
    assert dict(isvc.scheduling.node_selector) == {"pool": "inference"}
    assert isvc.scheduling.tolerations == (
        Toleration(key="dedicated", operator="Equal", value="ml", effect="NoSchedule"),
        Toleration(operator="Exists"),
        Toleration(key="spot", effect="NoExecute", toleration_seconds=30),
    )
    assert isvc.scheduling.affinity == original["spec"]["scheduling"]["affinity"]
    assert isvc.scheduling.priority_class_name == "inference-high"


def test_parsed_values_are_frozen() -> None:
    isvc = parse(make_body())
    with pytest.raises(AttributeError):
        isvc.replicas = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        isvc.scheduling.node_selector["x"] = "y"  # type: ignore[index]


def test_rollout_variants_and_traffic_default_to_none() -> None:
    isvc = parse(make_body())
    assert isvc.rollout == RolloutSpec()
    assert isvc.rollout.strategy == "RollingUpdate"
    assert isvc.variants == ()
    assert isvc.traffic == TrafficSpec()
    assert dict(isvc.annotations) == {}


def test_crd_defaulted_rollout_parses_like_a_bare_one() -> None:
    defaulted = make_body(
        {
            "rollout": {
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
        }
    )
    assert parse(defaulted).rollout == parse(make_body({"rollout": {"strategy": "Canary"}})).rollout
    assert parse(defaulted).rollout == RolloutSpec(strategy="Canary")


def test_canary_rollout_values_are_kept() -> None:
    rollout = {
        "strategy": "Canary",
        "canary": {
            "steps": [1, 5, 99],
            "stepSeconds": 60,
            "readyDeadlineSeconds": 120,
            "analysis": {
                "minRequests": 100,
                "maxErrorRate": 0,
                "maxP99LatencySeconds": 0.25,
                "failureLimit": 3,
                "deadlineSeconds": 60,
            },
        },
        "paused": True,
    }
    assert parse(make_body({"rollout": rollout})).rollout == RolloutSpec(
        strategy="Canary",
        canary=CanarySpec(
            steps=(1, 5, 99),
            step_seconds=60,
            ready_deadline_seconds=120,
            analysis=AnalysisSpec(
                min_requests=100,
                max_error_rate=0.0,
                max_p99_latency_seconds=0.25,
                failure_limit=3,
                deadline_seconds=60,
            ),
        ),
        paused=True,
    )


MAIN: dict[str, Any] = {
    "model": {"uri": "pvc://store/a/model.plan", "name": "bert", "format": "tensorrt"},
    "runtime": {
        "engine": "triton",
        "image": "registry.local/triton:1",
        "batching": {"maxBatchSize": 8, "maxQueueDelayMicroseconds": 100},
        "env": [{"name": "AWS_REGION", "value": "eu-west-1"}],
    },
    "resources": {"gpus": 2, "gpuType": "NVIDIA-H100-80GB-HBM3", "memory": "16Gi"},
    "scheduling": {
        "nodeSelector": {"pool": "inference"},
        "tolerations": [{"key": "dedicated", "operator": "Exists"}],
    },
    "replicas": 3,
}


def with_variants(*variants: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """A body with MAIN's model, ``variants`` and the other spec fields ``spec``."""
    return make_body({**copy.deepcopy(MAIN), "variants": list(variants), **spec})


def test_a_variant_with_only_a_name_is_the_main_model() -> None:
    isvc = parse(with_variants({"name": "b"}))
    (variant,) = isvc.variants
    assert variant == VariantSpec(
        name="b",
        weight=0,
        match=(),
        model=isvc.model,
        runtime=isvc.runtime,
        resources=isvc.resources,
        scheduling=isvc.scheduling,
        replicas=1,
    )


def test_variant_overrides_replace_the_main_model_field_by_field() -> None:
    body = with_variants(
        {
            "name": "b",
            "weight": 30,
            "replicas": 2,
            "model": {"uri": "pvc://store/b/model.plan"},
            "runtime": {"batching": {"maxQueueDelayMicroseconds": 0}},
            "resources": {"gpus": 1},
            "scheduling": {"tolerations": [{"key": "spot", "operator": "Exists"}]},
        }
    )
    original = copy.deepcopy(body)
    isvc = parse(body)
    (variant,) = isvc.variants
    assert body == original
    assert (variant.weight, variant.replicas) == (30, 2)
    # Fields the variant sets are its own; the model's name and format stay the main model's.
    assert variant.model.uri == "pvc://store/b/model.plan"
    assert variant.model.source.path == "b/model.plan"
    assert (variant.model.name, variant.model.format) == ("bert", "tensorrt")
    # A key the variant sets is replaced whole: batching's other limit takes its default.
    assert variant.runtime.batching == BatchingSpec(max_batch_size=32, max_queue_delay_us=0)
    assert (variant.runtime.engine, variant.runtime.image) == ("triton", "registry.local/triton:1")
    assert variant.runtime.env == isvc.runtime.env
    assert variant.resources == ResourcesSpec(
        gpus=1, gpu_type="NVIDIA-H100-80GB-HBM3", memory="16Gi"
    )
    assert variant.scheduling.tolerations == (Toleration(key="spot", operator="Exists"),)
    assert dict(variant.scheduling.node_selector) == {"pool": "inference"}
    # The main model is untouched by its variants.
    assert isvc.runtime.batching == BatchingSpec(max_batch_size=8, max_queue_delay_us=100)
    assert isvc.resources.gpus == 2
    assert isvc.replicas == 3


def test_variant_match_entries() -> None:
    (variant,) = parse(
        with_variants(
            {
                "name": "b",
                "match": [
                    {"header": {"name": "x-cohort", "value": "beta"}},
                    {"header": {"name": "x-user-id", "regex": "^1[0-9]*$"}},
                    {"cookie": {"name": "Tier", "value": "gold"}},
                ],
            }
        )
    ).variants
    assert variant.match == (
        VariantMatch(header="x-cohort", value="beta"),
        VariantMatch(header="x-user-id", regex="^1[0-9]*$"),
        VariantMatch(cookie="Tier", value="gold"),
    )


def test_variants_keep_their_order_and_may_share_all_traffic() -> None:
    isvc = parse(with_variants({"name": "b", "weight": 60}, {"name": "c", "weight": 40}))
    assert [(v.name, v.weight) for v in isvc.variants] == [("b", 60), ("c", 40)]


def test_longest_variant_name_within_the_budget() -> None:
    (variant,) = parse(make_body({"variants": [{"name": "v" * 10}]}, name="x" * 52)).variants
    assert variant.name == "v" * 10


def test_traffic_values_are_kept() -> None:
    body = with_variants(
        {"name": "b"},
        traffic={
            "stickyBy": {"header": "x-user-id"},
            "mirror": {"variant": "b", "percent": 12.5},
            "provider": "GatewayAPI",
            "gateway": {"name": "web", "namespace": "infra", "sectionName": "http"},
        },
    )
    assert parse(body).traffic == TrafficSpec(
        sticky_header="x-user-id",
        mirror=MirrorSpec(variant="b", percent=12.5),
        provider="GatewayAPI",
        gateway_name="web",
        gateway_namespace="infra",
        gateway_section="http",
    )


def test_traffic_defaults() -> None:
    body = with_variants(
        {"name": "b"},
        traffic={
            "stickyBy": {"cookie": "session"},
            "mirror": {"variant": "b"},
            "provider": "GatewayAPI",
            "gateway": {"name": "web"},
        },
    )
    assert parse(body).traffic == TrafficSpec(
        sticky_cookie="session",
        mirror=MirrorSpec(variant="b", percent=100.0),
        provider="GatewayAPI",
        gateway_name="web",
        gateway_namespace="models",
        gateway_section=None,
    )


def test_annotations_are_read_only() -> None:
    body = make_body()
    body["metadata"]["annotations"] = {"serving.sluice.dev/rollout-action": "promote", "x": ""}
    isvc = parse(body)
    body["metadata"]["annotations"]["x"] = "changed"
    assert dict(isvc.annotations) == {"serving.sluice.dev/rollout-action": "promote", "x": ""}
    with pytest.raises(TypeError):
        isvc.annotations["y"] = "z"  # type: ignore[index]


def canary(**fields: Any) -> dict[str, Any]:
    return {"rollout": {"strategy": "Canary", "canary": fields}}


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"rollout": "Canary"}, "spec.rollout"),
        ({"rollout": {"strategy": "BlueGreen"}}, "spec.rollout.strategy"),
        ({"rollout": {"paused": "yes"}}, "spec.rollout.paused"),
        ({"rollout": {"canary": []}}, "spec.rollout.canary"),
        (canary(steps=[]), "spec.rollout.canary.steps"),
        (canary(steps=None), "spec.rollout.canary.steps"),
        (canary(steps=50), "spec.rollout.canary.steps"),
        (canary(steps=list(range(1, 12))), "spec.rollout.canary.steps"),
        (canary(steps=[0, 50]), "spec.rollout.canary.steps[0]"),
        (canary(steps=[50, 100]), "spec.rollout.canary.steps[1]"),
        (canary(steps=[50, 10]), "spec.rollout.canary.steps[1]"),
        (canary(steps=[10, 10]), "spec.rollout.canary.steps[1]"),
        (canary(steps=["10"]), "spec.rollout.canary.steps[0]"),
        (canary(stepSeconds=0), "spec.rollout.canary.stepSeconds"),
        (canary(stepSeconds=86_401), "spec.rollout.canary.stepSeconds"),
        (canary(readyDeadlineSeconds=0), "spec.rollout.canary.readyDeadlineSeconds"),
        (canary(analysis=[]), "spec.rollout.canary.analysis"),
        (canary(analysis={"minRequests": 0}), "spec.rollout.canary.analysis.minRequests"),
        (canary(analysis={"maxErrorRate": 1.5}), "spec.rollout.canary.analysis.maxErrorRate"),
        (canary(analysis={"maxErrorRate": -0.1}), "spec.rollout.canary.analysis.maxErrorRate"),
        (canary(analysis={"maxErrorRate": "1%"}), "spec.rollout.canary.analysis.maxErrorRate"),
        (canary(analysis={"maxErrorRate": True}), "spec.rollout.canary.analysis.maxErrorRate"),
        (
            canary(analysis={"maxErrorRate": float("nan")}),
            "spec.rollout.canary.analysis.maxErrorRate",
        ),
        (
            canary(analysis={"maxP99LatencySeconds": 0}),
            "spec.rollout.canary.analysis.maxP99LatencySeconds",
        ),
        (
            canary(analysis={"maxP99LatencySeconds": 3601}),
            "spec.rollout.canary.analysis.maxP99LatencySeconds",
        ),
        (canary(analysis={"failureLimit": 0}), "spec.rollout.canary.analysis.failureLimit"),
        (canary(analysis={"deadlineSeconds": 0}), "spec.rollout.canary.analysis.deadlineSeconds"),
        (
            canary(stepSeconds=120, analysis={"deadlineSeconds": 60}),
            "spec.rollout.canary.analysis.deadlineSeconds",
        ),
        # The default deadline (600 s) is compared with the step too.
        (canary(stepSeconds=900), "spec.rollout.canary.analysis.deadlineSeconds"),
    ],
)
def test_rollouts_the_operator_cannot_honour(spec: dict[str, Any], field: str) -> None:
    assert errors_on(make_body(spec)) == field


@pytest.mark.parametrize(
    ("variants", "field"),
    [
        ({"name": "b"}, "spec.variants"),
        ([{"name": f"v{i}"} for i in range(9)], "spec.variants"),
        (["b"], "spec.variants[0]"),
        ([{"weight": 10}], "spec.variants[0].name"),
        ([{"name": "B_2"}], "spec.variants[0].name"),
        ([{"name": "2b"}], "spec.variants[0].name"),
        ([{"name": "b" * 64}], "spec.variants[0].name"),
        ([{"name": "main"}], "spec.variants[0].name"),
        ([{"name": "canary"}], "spec.variants[0].name"),
        ([{"name": "router"}], "spec.variants[0].name"),
        ([{"name": "activator"}], "spec.variants[0].name"),
        ([{"name": "predictor"}], "spec.variants[0].name"),
        ([{"name": "b"}, {"name": "b"}], "spec.variants[1].name"),
        ([{"name": "b", "weight": 101}], "spec.variants[0].weight"),
        ([{"name": "b", "weight": -1}], "spec.variants[0].weight"),
        ([{"name": "b", "weight": 60}, {"name": "c", "weight": 50}], "spec.variants"),
        ([{"name": "b", "replicas": -1}], "spec.variants[0].replicas"),
        ([{"name": "b", "model": {"name": "other"}}], "spec.variants[0].model.name"),
        ([{"name": "b", "model": {"uri": "ftp://h/m"}}], "spec.variants[0].model.uri"),
        ([{"name": "b", "model": {"format": "pytorch"}}], "spec.variants[0].model.format"),
        ([{"name": "b", "model": "/m.onnx"}], "spec.variants[0].model"),
        ([{"name": "b", "runtime": {"engine": "sluice"}}], "spec.variants[0].model.format"),
        ([{"name": "b", "resources": {"gpus": 0}}], "spec.variants[0].resources.gpuType"),
        (
            [{"name": "b", "scheduling": {"nodeSelector": {"nvidia.com/gpu.product": "A100"}}}],
            "spec.variants[0].scheduling.nodeSelector",
        ),
        (
            [{"name": "b", "runtime": {"env": [{"name": "SLUICE_PORT"}]}}],
            "spec.variants[0].runtime.env[0].name",
        ),
        (
            [{"name": "b", "runtime": {"batching": {"maxBatchSize": 0}}}],
            "spec.variants[0].runtime.batching.maxBatchSize",
        ),
        (
            [{"name": "b", "scheduling": {"tolerations": [{"operator": "Equal"}]}}],
            "spec.variants[0].scheduling.tolerations[0].operator",
        ),
    ],
)
def test_variants_the_operator_cannot_honour(variants: Any, field: str) -> None:
    body = make_body({**copy.deepcopy(MAIN), "variants": variants})
    assert errors_on(body) == field


def test_variant_format_follows_its_own_engine() -> None:
    body = make_body({"variants": [{"name": "b", "model": {"format": "tensorrt"}}]})
    assert errors_on(body) == "spec.variants[0].model.format"
    body["spec"]["variants"][0]["runtime"] = {"engine": "triton"}
    assert parse(body).variants[0].model.format == "tensorrt"


def test_variant_name_over_the_budget() -> None:
    body = make_body({"variants": [{"name": "v" * 11}]}, name="x" * 52)
    with pytest.raises(SpecError) as caught:
        parse(body)
    assert caught.value.field == "spec.variants[0].name"
    assert f"{'x' * 52}-{'v' * 11}" in caught.value.message


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ("x-cohort", "spec.variants[0].match[0]"),
        ({}, "spec.variants[0].match[0]"),
        (
            {"header": {"name": "x", "value": "1"}, "cookie": {"name": "y", "value": "2"}},
            "spec.variants[0].match[0]",
        ),
        ({"header": {"name": "x-cohort"}}, "spec.variants[0].match[0].header"),
        (
            {"header": {"name": "x-cohort", "value": "beta", "regex": "b.*"}},
            "spec.variants[0].match[0].header",
        ),
        ({"header": {"value": "beta"}}, "spec.variants[0].match[0].header.name"),
        (
            {"header": {"name": "X-Cohort", "value": "beta"}},
            "spec.variants[0].match[0].header.name",
        ),
        ({"header": {"name": "x-cohort", "value": ""}}, "spec.variants[0].match[0].header.value"),
        ({"header": {"name": "x-cohort", "regex": "("}}, "spec.variants[0].match[0].header.regex"),
        ({"cookie": {"name": "tier"}}, "spec.variants[0].match[0].cookie.value"),
        ({"cookie": {"name": "a b", "value": "gold"}}, "spec.variants[0].match[0].cookie.name"),
    ],
)
def test_match_entries_the_operator_cannot_honour(entry: Any, field: str) -> None:
    assert errors_on(make_body({"variants": [{"name": "b", "match": [entry]}]})) == field


def test_match_entries_are_bounded() -> None:
    entries = [{"cookie": {"name": "tier", "value": str(i)}} for i in range(17)]
    assert errors_on(make_body({"variants": [{"name": "b", "match": entries}]})) == (
        "spec.variants[0].match"
    )


@pytest.mark.parametrize(
    ("traffic", "field"),
    [
        ("Router", "spec.traffic"),
        ({"stickyBy": {}}, "spec.traffic.stickyBy"),
        ({"stickyBy": {"header": "x-user", "cookie": "s"}}, "spec.traffic.stickyBy"),
        ({"stickyBy": {"header": "X-User"}}, "spec.traffic.stickyBy.header"),
        ({"stickyBy": {"header": "x" * 257}}, "spec.traffic.stickyBy.header"),
        ({"stickyBy": {"cookie": "a;b"}}, "spec.traffic.stickyBy.cookie"),
        ({"mirror": {"variant": "shadow"}}, "spec.traffic.mirror.variant"),
        ({"mirror": {"percent": 50}}, "spec.traffic.mirror.variant"),
        ({"mirror": {"variant": "b", "percent": 0}}, "spec.traffic.mirror.percent"),
        ({"mirror": {"variant": "b", "percent": 100.5}}, "spec.traffic.mirror.percent"),
        ({"mirror": {"variant": "b", "percent": "50"}}, "spec.traffic.mirror.percent"),
        ({"provider": "Istio"}, "spec.traffic.provider"),
        ({"provider": "GatewayAPI"}, "spec.traffic.gateway"),
        ({"provider": "Router", "gateway": {"name": "web"}}, "spec.traffic.gateway"),
        ({"gateway": {"name": "web"}}, "spec.traffic.gateway"),
        ({"provider": "GatewayAPI", "gateway": "web"}, "spec.traffic.gateway"),
        (
            {"provider": "GatewayAPI", "gateway": {"namespace": "infra"}},
            "spec.traffic.gateway.name",
        ),
        ({"provider": "GatewayAPI", "gateway": {"name": "Web"}}, "spec.traffic.gateway.name"),
        (
            {"provider": "GatewayAPI", "gateway": {"name": "web", "namespace": "in.fra"}},
            "spec.traffic.gateway.namespace",
        ),
        (
            {"provider": "GatewayAPI", "gateway": {"name": "web", "sectionName": "HTTP"}},
            "spec.traffic.gateway.sectionName",
        ),
    ],
)
def test_traffic_the_operator_cannot_honour(traffic: Any, field: str) -> None:
    assert errors_on(make_body({"variants": [{"name": "b"}], "traffic": traffic})) == field


def test_mirror_needs_variants() -> None:
    body = make_body({"traffic": {"mirror": {"variant": "b"}}})
    assert errors_on(body) == "spec.traffic.mirror.variant"


@pytest.mark.parametrize(
    ("annotations", "field"),
    [(["a"], "metadata.annotations"), ({"a": 1}, "metadata.annotations.a")],
)
def test_annotations_must_be_strings(annotations: Any, field: str) -> None:
    body = make_body()
    body["metadata"]["annotations"] = annotations
    assert errors_on(body) == field
