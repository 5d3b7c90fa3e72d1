"""Unit tests for sluice.operator.spec: parsing, defaults and the errors the operator raises."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from sluice.operator.spec import (
    BatchingSpec,
    EnvVar,
    KeyRef,
    ModelSource,
    SpecError,
    Toleration,
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
