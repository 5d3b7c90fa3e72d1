"""Unit tests for sluice.operator.builders and sluice.operator.pods: the desired children."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from google.protobuf import text_format
from sluice.contracts import flags
from sluice.operator import builders, pods, triton
from sluice.operator.spec import AutoscalingSpec, InferenceService, parse
from tritonclient.grpc import model_config_pb2


def make_isvc(spec: dict[str, Any] | None = None, *, engine: str | None = None) -> InferenceService:
    """An InferenceService ``resnet`` in namespace ``models`` with ``spec`` merged in."""
    full: dict[str, Any] = {"model": {"uri": "https://models.example/resnet.onnx"}, **(spec or {})}
    if engine is not None:
        full.setdefault("runtime", {})["engine"] = engine
    return parse(
        {
            "apiVersion": "serving.sluice.dev/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": "resnet", "namespace": "models", "uid": "uid-1", "generation": 1},
            "spec": full,
        }
    )


def deployment(isvc: InferenceService) -> dict[str, Any]:
    (found,) = [c for c in builders.desired_children(isvc) if c["kind"] == "Deployment"]
    return found


def service(isvc: InferenceService) -> dict[str, Any]:
    (found,) = [c for c in builders.desired_children(isvc) if c["kind"] == "Service"]
    return found


def pod(isvc: InferenceService) -> dict[str, Any]:
    spec: dict[str, Any] = deployment(isvc)["spec"]["template"]["spec"]
    return spec


def runtime_container(isvc: InferenceService) -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod(isvc)["containers"]
    (container,) = containers
    assert container["name"] == "runtime"
    return container


def init_containers(isvc: InferenceService) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = pod(isvc).get("initContainers", [])
    return found


def mounts(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mountPath"]: m for m in container["volumeMounts"]}


def volumes(isvc: InferenceService) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in pod(isvc)["volumes"]}


# Identity: names, labels, owner references.


def test_children_are_the_predictor_deployment_and_the_service() -> None:
    children = builders.desired_children(make_isvc())
    assert [(c["apiVersion"], c["kind"], c["metadata"]["name"]) for c in children] == [
        ("apps/v1", "Deployment", "resnet-predictor"),
        ("v1", "Service", "resnet"),
    ]


def test_children_are_plain_json() -> None:
    isvc = make_isvc(
        {
            "scheduling": {
                "nodeSelector": {"pool": "a"},
                "affinity": {"podAntiAffinity": {"preferred": [{"weight": 1}]}},
            }
        }
    )
    children = builders.desired_children(isvc)
    assert json.loads(json.dumps(children)) == children


def test_every_child_is_labelled_and_owned() -> None:
    for child in builders.desired_children(make_isvc()):
        metadata = child["metadata"]
        assert metadata["namespace"] == "models"
        assert metadata["labels"]["serving.sluice.dev/inferenceservice"] == "resnet"
        assert metadata["labels"]["app.kubernetes.io/name"] == "resnet"
        assert metadata["labels"]["app.kubernetes.io/managed-by"] == "sluice"
        assert metadata["ownerReferences"] == [
            {
                "apiVersion": "serving.sluice.dev/v1alpha1",
                "kind": "InferenceService",
                "name": "resnet",
                "uid": "uid-1",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]


def test_helpers() -> None:
    isvc = make_isvc({"resources": {"gpus": 2}, "replicas": 3})
    assert builders.deployment_name(isvc) == "resnet-predictor"
    assert builders.deployment_name(isvc, "canary") == "resnet-canary"
    assert builders.service_name(isvc) == "resnet"
    assert builders.service_url(isvc) == "http://resnet.models.svc.cluster.local"
    assert builders.total_gpus(isvc, {"predictor": 3}) == 6
    assert builders.total_gpus(isvc, {"predictor": 3, "canary": 1}) == 8
    assert builders.total_gpus(make_isvc(), {"predictor": 3}) == 0
    assert builders.child_labels(isvc) == {
        "serving.sluice.dev/inferenceservice": "resnet",
        "app.kubernetes.io/name": "resnet",
        "app.kubernetes.io/managed-by": "sluice",
    }
    assert builders.selector_labels(isvc) == {
        "serving.sluice.dev/inferenceservice": "resnet",
        "serving.sluice.dev/component": "predictor",
    }


def test_selectors_match_the_pods() -> None:
    isvc = make_isvc()
    spec = deployment(isvc)["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"] == builders.selector_labels(isvc)
    assert service(isvc)["spec"]["selector"] == builders.selector_labels(isvc)
    assert builders.selector_labels(isvc).items() <= pod_labels.items()
    assert builders.child_labels(isvc).items() <= pod_labels.items()


# The Deployment.


def test_rollout_strategy_and_replicas() -> None:
    spec = deployment(make_isvc({"replicas": 4}))["spec"]
    assert spec["replicas"] == 4
    startup = runtime_container(make_isvc())["startupProbe"]
    # A slow model load is not a stuck rollout.
    assert spec["progressDeadlineSeconds"] > startup["periodSeconds"] * startup["failureThreshold"]
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }


def test_a_deleted_pod_serves_until_proxies_drop_it_then_drains() -> None:
    """The kubelet's SIGTERM comes only after the preStop pause, and the grace period covers
    the pause plus the runtime's drain (bounded by its request timeout)."""
    pod = deployment(make_isvc())["spec"]["template"]["spec"]
    pause = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pause == pods.DEREGISTER_SECONDS > 0
    assert pod["terminationGracePeriodSeconds"] > pause + flags.REQUEST_TIMEOUT_S.default


def test_sluice_runtime_command() -> None:
    isvc = make_isvc(
        {
            "runtime": {
                "batching": {"maxBatchSize": 16, "maxQueueDelayMicroseconds": 500},
                "args": ["--max-queue-size", "8"],
            }
        }
    )
    container = runtime_container(isvc)
    assert container["image"] == "ghcr.io/sluice-dev/sluice-runtime:0.1.0"
    assert container["command"] == [
        "sluice-runtime",
        "serve",
        "--model",
        "resnet=/models/resnet",
        "--http-port",
        "8080",
        "--grpc-port",
        "8081",
        "--max-batch-size",
        "16",
        "--max-queue-delay-us",
        "500",
        "--max-queue-size",
        "8",
    ]
    assert container["ports"] == [
        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
        {"name": "grpc", "containerPort": 8081, "protocol": "TCP"},
    ]


def test_model_name_is_served_name() -> None:
    isvc = make_isvc({"model": {"uri": "https://h/m.onnx", "name": "bert"}})
    assert "bert=/models/bert" in runtime_container(isvc)["command"]


def test_runtime_image_override() -> None:
    isvc = make_isvc({"runtime": {"image": "registry.local/runtime:dev"}})
    assert runtime_container(isvc)["image"] == "registry.local/runtime:dev"
    assert init_containers(isvc)[0]["image"] == "registry.local/runtime:dev"


def test_env_reaches_runtime_and_fetch_containers() -> None:
    isvc = make_isvc({"runtime": {"env": [{"name": "AWS_REGION", "value": "eu-west-1"}]}})
    expected = [{"name": "AWS_REGION", "value": "eu-west-1"}]
    assert runtime_container(isvc)["env"] == expected
    assert init_containers(isvc)[0]["env"] == expected


SECRET_REF = {"name": "s3-credentials", "key": "access-key-id"}


def test_env_from_secrets_and_config_maps_reaches_runtime_and_fetch_containers() -> None:
    isvc = make_isvc(
        {
            "model": {"uri": "s3://models/resnet.onnx"},
            "runtime": {
                "env": [
                    {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": SECRET_REF}},
                    {
                        "name": "AWS_SESSION_TOKEN",
                        "valueFrom": {
                            "secretKeyRef": {"name": "s3-session", "key": "t", "optional": True}
                        },
                    },
                    {
                        "name": "AWS_ENDPOINT_URL",
                        "valueFrom": {
                            "configMapKeyRef": {"name": "s3", "key": "url", "optional": False}
                        },
                    },
                    {"name": "AWS_REGION", "value": "eu-west-1"},
                ]
            },
        }
    )
    expected = [
        {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": SECRET_REF}},
        {
            "name": "AWS_SESSION_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "s3-session", "key": "t", "optional": True}},
        },
        {
            "name": "AWS_ENDPOINT_URL",
            "valueFrom": {"configMapKeyRef": {"name": "s3", "key": "url"}},
        },
        {"name": "AWS_REGION", "value": "eu-west-1"},
    ]
    (fetch,) = init_containers(isvc)
    assert fetch["name"] == "fetch-model"
    assert fetch["env"] == expected
    assert runtime_container(isvc)["env"] == expected


def test_triton_config_step_gets_no_env() -> None:
    """It only writes config.pbtxt: credentials stay with the steps that use them."""
    env = [{"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": SECRET_REF}}]
    isvc = make_isvc(
        {"model": {"uri": "s3://models/resnet.onnx"}, "runtime": {"env": env}}, engine="triton"
    )
    fetch, config = init_containers(isvc)
    assert fetch["env"] == env
    assert "env" not in config
    assert runtime_container(isvc)["env"] == env


LOCAL = pods.Images(runtime="registry.local/sluice-runtime:dev", triton="registry.local/triton:dev")


def local_pod(isvc: InferenceService) -> dict[str, Any]:
    (found,) = [c for c in builders.desired_children(isvc, LOCAL) if c["kind"] == "Deployment"]
    spec: dict[str, Any] = found["spec"]["template"]["spec"]
    return spec


def images_of(spec: dict[str, Any]) -> dict[str, str]:
    """Each container's image by container name, init containers included."""
    return {c["name"]: c["image"] for c in [*spec.get("initContainers", []), *spec["containers"]]}


def test_the_operators_images_are_used_where_the_spec_names_none() -> None:
    assert images_of(local_pod(make_isvc())) == {
        "fetch-model": LOCAL.runtime,
        "runtime": LOCAL.runtime,
    }
    assert images_of(local_pod(make_isvc(engine="triton"))) == {
        "fetch-model": LOCAL.runtime,
        "triton-config": LOCAL.triton,
        "runtime": LOCAL.triton,
    }


def test_the_specs_image_wins_over_the_operators() -> None:
    own = "registry.example/team/runtime:7"
    assert images_of(local_pod(make_isvc({"runtime": {"image": own}}))) == {
        "fetch-model": own,
        "runtime": own,
    }
    # Triton's image cannot fetch: the download step keeps the operator's runtime image.
    assert images_of(local_pod(make_isvc({"runtime": {"image": own}}, engine="triton"))) == {
        "fetch-model": LOCAL.runtime,
        "triton-config": own,
        "runtime": own,
    }


def test_fetch_container_gets_cpu_and_memory_but_no_gpu() -> None:
    isvc = make_isvc({"resources": {"gpus": 1, "cpu": "2", "memory": "4Gi"}})
    amounts = {"cpu": "2", "memory": "4Gi"}
    assert init_containers(isvc)[0]["resources"] == {"requests": amounts, "limits": amounts}
    assert init_containers(make_isvc())[0]["resources"] == {}
    assert "env" not in runtime_container(make_isvc())


def test_gpus_become_limits_requests_and_a_toleration() -> None:
    isvc = make_isvc({"resources": {"gpus": 2, "cpu": "4", "memory": "16Gi"}})
    expected = {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "2"}
    assert runtime_container(isvc)["resources"] == {"requests": expected, "limits": expected}
    assert pod(isvc)["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]


def test_cpu_only_pods_ask_for_no_gpu() -> None:
    isvc = make_isvc({"resources": {"cpu": 1, "memory": "2Gi"}})
    container = runtime_container(isvc)
    assert container["resources"] == {
        "requests": {"cpu": "1", "memory": "2Gi"},
        "limits": {"cpu": "1", "memory": "2Gi"},
    }
    assert "tolerations" not in pod(isvc)
    assert "nodeSelector" not in pod(isvc)
    assert runtime_container(make_isvc())["resources"] == {}


def test_gpu_type_becomes_a_node_selector_merged_with_the_user_one() -> None:
    isvc = make_isvc(
        {
            "resources": {"gpus": 1, "gpuType": "NVIDIA-H100-80GB-HBM3"},
            "scheduling": {"nodeSelector": {"pool": "inference"}},
        }
    )
    assert pod(isvc)["nodeSelector"] == {
        "pool": "inference",
        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
    }


def test_user_tolerations_follow_the_gpu_one_without_duplicates() -> None:
    isvc = make_isvc(
        {
            "resources": {"gpus": 1},
            "scheduling": {
                "tolerations": [
                    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                    {"key": "spot", "operator": "Exists", "effect": "NoExecute"},
                    {"key": "lease", "effect": "NoExecute", "tolerationSeconds": 60},
                ]
            },
        }
    )
    assert pod(isvc)["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "spot", "operator": "Exists", "effect": "NoExecute"},
        {"key": "lease", "effect": "NoExecute", "tolerationSeconds": 60},
    ]


def test_affinity_and_priority_class_pass_through() -> None:
    affinity = {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"app": "x"}},
                    },
                }
            ]
        }
    }
    isvc = make_isvc({"scheduling": {"affinity": affinity, "priorityClassName": "high"}})
    assert pod(isvc)["affinity"] == affinity
    assert pod(isvc)["priorityClassName"] == "high"
    assert "affinity" not in pod(make_isvc())
    assert "priorityClassName" not in pod(make_isvc())


def test_restricted_security_context() -> None:
    isvc = make_isvc()
    assert pod(isvc)["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod(isvc)["automountServiceAccountToken"] is False
    for container in [runtime_container(isvc), *init_containers(isvc)]:
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
        }
        assert mounts(container)["/tmp"]["name"] == "tmp"
    assert volumes(isvc)["tmp"] == {"name": "tmp", "emptyDir": {}}


def test_probes() -> None:
    container = runtime_container(make_isvc())
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    startup = container["startupProbe"]
    assert startup["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    # A large model may take many minutes to load onto a GPU before liveness checks begin.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600


def test_pod_annotations() -> None:
    annotations = deployment(make_isvc())["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8080"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert annotations["serving.sluice.dev/spec-hash"] == builders.spec_hash(make_isvc())
    assert annotations["kubectl.kubernetes.io/default-container"] == "runtime"


# How the model reaches the runtime.


@pytest.mark.parametrize("uri", ["https://models.example/resnet.onnx", "s3://bucket/resnet.onnx"])
def test_remote_models_are_fetched_into_an_empty_dir(uri: str) -> None:
    isvc = make_isvc({"model": {"uri": uri}})
    (fetch,) = init_containers(isvc)
    assert fetch["name"] == "fetch-model"
    assert fetch["image"] == runtime_container(isvc)["image"]
    assert fetch["command"] == ["sluice-runtime", "fetch", uri, "/models/resnet/model.onnx"]
    assert mounts(fetch)["/models"] == {"name": "models", "mountPath": "/models"}
    assert mounts(runtime_container(isvc))["/models"] == {
        "name": "models",
        "mountPath": "/models",
        "readOnly": True,
    }
    assert volumes(isvc)["models"] == {"name": "models", "emptyDir": {}}


def test_pvc_models_are_mounted_read_only_without_a_fetch() -> None:
    isvc = make_isvc({"model": {"uri": "pvc://model-store/resnet/v2/model.onnx"}})
    assert init_containers(isvc) == []
    assert mounts(runtime_container(isvc))["/models/resnet"] == {
        "name": "model-source",
        "mountPath": "/models/resnet",
        "subPath": "resnet/v2/model.onnx",
        "readOnly": True,
    }
    assert volumes(isvc)["model-source"] == {
        "name": "model-source",
        "persistentVolumeClaim": {"claimName": "model-store", "readOnly": True},
    }
    assert "models" not in volumes(isvc)
    assert "resnet=/models/resnet" in runtime_container(isvc)["command"]


@pytest.mark.parametrize("uri", ["/opt/models/resnet.onnx", "file:///opt/models/resnet.onnx"])
def test_image_paths_are_served_in_place(uri: str) -> None:
    isvc = make_isvc({"model": {"uri": uri}})
    assert init_containers(isvc) == []
    assert set(volumes(isvc)) == {"tmp"}
    assert "resnet=/opt/models/resnet.onnx" in runtime_container(isvc)["command"]
    assert all(v.get("hostPath") is None for v in volumes(isvc).values())


# Triton.


def test_triton_runs_tritonserver_on_the_same_ports() -> None:
    isvc = make_isvc({"runtime": {"engine": "triton", "args": ["--log-verbose=1"]}})
    container = runtime_container(isvc)
    assert container["image"] == "nvcr.io/nvidia/tritonserver:24.08-py3"
    assert container["command"] == [
        "tritonserver",
        "--model-repository=/models",
        "--http-port=8080",
        "--grpc-port=8081",
        "--metrics-port=8002",
        "--log-verbose=1",
    ]
    assert [p["name"] for p in container["ports"]] == ["http", "grpc", "metrics"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    annotations = deployment(isvc)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "8002"


def test_triton_repository_is_laid_out_by_init_containers() -> None:
    isvc = make_isvc(
        {
            "model": {"uri": "s3://bucket/bert.plan", "name": "bert", "format": "tensorrt"},
            "runtime": {
                "engine": "triton",
                "batching": {"maxBatchSize": 64, "maxQueueDelayMicroseconds": 100},
                "env": [{"name": "AWS_REGION", "value": "eu-west-1"}],
            },
        }
    )
    fetch, config = init_containers(isvc)
    assert fetch["image"] == "ghcr.io/sluice-dev/sluice-runtime:0.1.0"
    assert fetch["command"] == [
        "sluice-runtime",
        "fetch",
        "s3://bucket/bert.plan",
        "/models/bert/1/model.plan",
    ]
    assert fetch["env"] == [{"name": "AWS_REGION", "value": "eu-west-1"}]
    assert config["name"] == "triton-config"
    assert config["image"] == "nvcr.io/nvidia/tritonserver:24.08-py3"
    assert config["command"] == [
        "sh",
        "-c",
        'printf "%s" "$1" > "$2"',
        "write-config",
        triton.model_config(isvc),
        "/models/bert/config.pbtxt",
    ]
    assert mounts(config)["/models"] == {"name": "models", "mountPath": "/models"}
    assert config["securityContext"]["readOnlyRootFilesystem"] is True


def test_triton_model_config() -> None:
    isvc = make_isvc(
        {"runtime": {"batching": {"maxBatchSize": 8, "maxQueueDelayMicroseconds": 250}}},
        engine="triton",
    )
    assert triton.model_config(isvc) == (
        'name: "resnet"\n'
        'platform: "onnxruntime_onnx"\n'
        "max_batch_size: 8\n"
        "dynamic_batching {\n"
        "  max_queue_delay_microseconds: 250\n"
        "}\n"
    )


@pytest.mark.parametrize(
    ("model_format", "platform"), [("onnx", "onnxruntime_onnx"), ("tensorrt", "tensorrt_plan")]
)
def test_triton_model_config_parses_as_triton_config(model_format: str, platform: str) -> None:
    isvc = make_isvc(
        {
            "model": {"uri": "https://h/m", "name": "bert.v2", "format": model_format},
            "runtime": {"batching": {"maxBatchSize": 4096, "maxQueueDelayMicroseconds": 0}},
        },
        engine="triton",
    )
    config = text_format.Parse(triton.model_config(isvc), model_config_pb2.ModelConfig())
    assert (config.name, config.platform, config.max_batch_size) == ("bert.v2", platform, 4096)
    assert config.HasField("dynamic_batching")
    assert config.dynamic_batching.max_queue_delay_microseconds == 0


def test_triton_pvc_models_are_copied_into_the_repository() -> None:
    isvc = make_isvc({"model": {"uri": "pvc://store/resnet.onnx"}}, engine="triton")
    fetch, _ = init_containers(isvc)
    assert fetch["command"][2:] == [
        "file:///mnt/model-source/resnet.onnx",
        "/models/resnet/1/model.onnx",
    ]
    assert mounts(fetch)["/mnt/model-source"] == {
        "name": "model-source",
        "mountPath": "/mnt/model-source",
        "readOnly": True,
    }
    assert "/mnt/model-source" not in mounts(runtime_container(isvc))
    assert "/models" in mounts(runtime_container(isvc))


def test_triton_image_repository_is_used_in_place() -> None:
    isvc = make_isvc({"model": {"uri": "/opt/repository"}}, engine="triton")
    assert init_containers(isvc) == []
    assert "--model-repository=/opt/repository" in runtime_container(isvc)["command"]


# The Service.


def test_service_ports() -> None:
    spec = service(make_isvc())["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["ports"] == [
        {
            "name": "http",
            "port": 80,
            "targetPort": "http",
            "protocol": "TCP",
            "appProtocol": "http",
        },
        {
            "name": "grpc",
            "port": 8081,
            "targetPort": "grpc",
            "protocol": "TCP",
            "appProtocol": "kubernetes.io/h2c",
        },
    ]


# The spec hash.


def test_spec_hash_is_stable_for_an_equal_spec() -> None:
    bare = make_isvc()
    defaulted = make_isvc(
        {
            "model": {"uri": "https://models.example/resnet.onnx", "format": "onnx"},
            "runtime": {
                "engine": "sluice",
                "batching": {"maxBatchSize": 32, "maxQueueDelayMicroseconds": 2000},
            },
            "resources": {"gpus": 0},
        }
    )
    assert builders.spec_hash(bare) == builders.spec_hash(defaulted)
    assert len(builders.spec_hash(bare)) == 16


def test_scaling_does_not_change_the_pod_template() -> None:
    one, five = make_isvc({"replicas": 1}), make_isvc({"replicas": 5})
    assert builders.spec_hash(one) == builders.spec_hash(five)
    assert deployment(one)["spec"]["template"] == deployment(five)["spec"]["template"]


@pytest.mark.parametrize(
    "change",
    [
        {"model": {"uri": "https://models.example/resnet-v2.onnx"}},
        {"model": {"uri": "https://models.example/resnet.onnx", "name": "other"}},
        {"runtime": {"engine": "triton"}},
        {"runtime": {"image": "registry.local/runtime:2"}},
        {"runtime": {"batching": {"maxBatchSize": 8}}},
        {"runtime": {"batching": {"maxQueueDelayMicroseconds": 1}}},
        {"runtime": {"args": ["--x"]}},
        {"runtime": {"env": [{"name": "A", "value": "1"}]}},
        {"runtime": {"env": [{"name": "A", "valueFrom": {"secretKeyRef": SECRET_REF}}]}},
        {"resources": {"gpus": 1}},
        {"resources": {"cpu": "2"}},
        {"resources": {"memory": "1Gi"}},
        {"scheduling": {"nodeSelector": {"pool": "a"}}},
        {"scheduling": {"tolerations": [{"key": "k", "operator": "Exists"}]}},
        {"scheduling": {"affinity": {"nodeAffinity": {}}}},
        {"scheduling": {"priorityClassName": "high"}},
    ],
)
def test_spec_hash_changes_with_the_spec(change: dict[str, Any]) -> None:
    assert builders.spec_hash(make_isvc(change)) != builders.spec_hash(make_isvc())


def test_pod_helpers_follow_the_engine_and_the_model_source() -> None:
    """The helpers that status and reconcile call answer for the spec they are given."""
    sluice, on_triton = make_isvc(), make_isvc(engine="triton")
    in_place = make_isvc({"model": {"uri": "/opt/models/resnet.onnx"}})
    assert pods.model_path(sluice) == "/models/resnet"
    assert pods.model_path(on_triton) == "/models"
    assert pods.model_path(in_place) == "/opt/models/resnet.onnx"
    images = pods.DEFAULT_IMAGES
    assert pods.runtime_image(sluice, images) == "ghcr.io/sluice-dev/sluice-runtime:0.1.0"
    assert pods.runtime_image(on_triton, images) == "nvcr.io/nvidia/tritonserver:24.08-py3"
    # Triton's image has no `sluice-runtime fetch`: its download step runs the sluice image.
    assert pods.fetch_image(on_triton, images) == "ghcr.io/sluice-dev/sluice-runtime:0.1.0"
    assert pods.metrics_port(sluice) == 8080
    assert pods.metrics_port(on_triton) == 8002


def test_an_autoscaled_deployment_leaves_replicas_to_the_autoscaler() -> None:
    fixed = make_isvc({"replicas": 3})
    scaled = dataclasses.replace(fixed, autoscaling=AutoscalingSpec(engine="sluice"))
    assert deployment(fixed)["spec"]["replicas"] == 3
    assert "replicas" not in deployment(scaled)["spec"]
    # Only the replica count changes hands: the pods are the same.
    assert deployment(scaled)["spec"]["template"] == deployment(fixed)["spec"]["template"]
