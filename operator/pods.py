"""The runtime pod template: containers, model volumes, probes, scheduling, security.

Pure functions from a parsed ``InferenceService`` to a Pod spec dict; called by
``builders.py``, which wraps it in a Deployment. The runtime's command lines
(``sluice-runtime serve`` and ``sluice-runtime fetch``) are rendered from
``sluice.contracts.flags``, the table the runtime builds its parser from, on the ports of
``sluice.contracts.ports``; Triton's come from ``triton.py``. docs/api.md describes them.
Images come from ``spec.runtime.image`` or else from the ``Images`` the operator was started
with (``--runtime-image``, ``--triton-image``, ``--router-image``), passed in by the caller:
nothing here is read from global state.

How the model reaches the serving container, by ``spec.model.uri``:

- ``http(s)://`` and ``s3://``: the ``fetch-model`` init container downloads it into an
  emptyDir at ``/models``.
- ``pvc://CLAIM/PATH``: the claim is mounted read-only at ``/models/NAME``; nothing is
  copied. Triton needs its repository layout, so for Triton ``fetch-model`` copies the file
  from the claim into the emptyDir instead.
- ``file:///PATH`` or ``/PATH``: the model (for Triton, a model repository) is already inside
  the runtime image. Node paths are never mounted: hostPath breaks the restricted pod
  security standard and ties pods to nodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sluice.contracts import flags, ports
from sluice.operator import triton
from sluice.operator.spec import GPU_PRODUCT_LABEL, Engine, EnvVar, InferenceService

SLUICE_IMAGE = "ghcr.io/sluice-dev/sluice-runtime:0.1.0"
ROUTER_IMAGE = "ghcr.io/sluice-dev/sluice-router:0.1.0"

MODELS_DIR = "/models"
# Where the Triton fetch step sees a PVC model source before copying it into the repository.
PVC_SOURCE_DIR = "/mnt/model-source"
RUNTIME_CONTAINER = "runtime"
FETCH_CONTAINER = "fetch-model"
RUN_AS_USER = 1000

GPU_RESOURCE = "nvidia.com/gpu"
# The taint GPU node pools carry (GKE, AKS and the NVIDIA GPU operator's examples).
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}

# Loading a large model onto a GPU can take minutes; the startup probe allows 15.
STARTUP_PERIOD_SECONDS = 5
# A deleted pod keeps serving this long before the kubelet sends SIGTERM: time for the
# endpoint change to reach every proxy (kube-proxy, the router), so that no new request is
# sent to a server that has begun to drain.
DEREGISTER_SECONDS = 5
# Then the runtime drains: it answers everything accepted within its request timeout.
TERMINATION_GRACE_SECONDS = DEREGISTER_SECONDS + int(flags.REQUEST_TIMEOUT_S.default) + 5
STARTUP_FAILURE_THRESHOLD = 180
# A rollout is only reported stuck after the download and the startup probe have had their time.
PROGRESS_DEADLINE_SECONDS = 1800


@dataclass(frozen=True)
class Images:
    """The images the operator puts into pods when ``spec.runtime.image`` is not set.

    Decided once, by ``sluice-operator --runtime-image / --triton-image`` (the Helm chart's
    values), and handed to the builders, so that a cluster that cannot reach the public
    registries runs images of its own choosing.
    """

    runtime: str = SLUICE_IMAGE  # Sluice's own runtime; also the fetch step of every engine
    triton: str = triton.IMAGE
    router: str = ROUTER_IMAGE  # Envoy and its control plane, in front of split traffic

    def engine(self, engine: Engine) -> str:
        """The default serving image of ``engine``."""
        return self.triton if engine == "triton" else self.runtime


# The published images: what ``sluice-operator`` uses unless told otherwise.
DEFAULT_IMAGES = Images()


def runtime_image(isvc: InferenceService, images: Images) -> str:
    """The serving container's image: ``spec.runtime.image`` or the engine's default."""
    return isvc.runtime.image or images.engine(isvc.runtime.engine)


def fetch_image(isvc: InferenceService, images: Images) -> str:
    """The download step's image: it runs ``sluice-runtime fetch``, which Triton's lacks."""
    if isvc.runtime.engine == "sluice":
        return runtime_image(isvc, images)
    return images.runtime


def model_path(isvc: InferenceService) -> str:
    """The serving container's model: a file or folder (sluice), a repository (triton)."""
    source = isvc.model.source
    if source.kind == "image":
        return source.path
    if isvc.runtime.engine == "triton":
        return MODELS_DIR
    return f"{MODELS_DIR}/{isvc.model.name}"


def metrics_port(isvc: InferenceService) -> int:
    """The port Prometheus scrapes: the HTTP port for sluice, Triton's own metrics port."""
    return triton.METRICS_PORT if isvc.runtime.engine == "triton" else ports.HTTP_PORT


def serve_command(isvc: InferenceService) -> list[str]:
    """The serving container's command line, followed by ``spec.runtime.args``."""
    if isvc.runtime.engine == "triton":
        command = triton.serve_command(model_path(isvc), ports.HTTP_PORT, ports.GRPC_PORT)
    else:
        batching = isvc.runtime.batching
        command = flags.serve_command(
            {isvc.model.name: model_path(isvc)},
            [
                flags.HTTP_PORT.arg(ports.HTTP_PORT),
                flags.GRPC_PORT.arg(ports.GRPC_PORT),
                flags.MAX_BATCH_SIZE.arg(batching.max_batch_size),
                flags.MAX_QUEUE_DELAY_US.arg(batching.max_queue_delay_us),
            ],
        )
    return [*command, *isvc.runtime.args]


def fetch_command(isvc: InferenceService) -> list[str] | None:
    """The download step's command line, or None when the model is served where it lies."""
    source = isvc.model.source
    if source.kind == "image":
        return None
    if isvc.runtime.engine == "triton":
        uri = f"file://{PVC_SOURCE_DIR}/{source.path}" if source.kind == "pvc" else source.uri
        return flags.fetch_command(uri, triton.model_file(isvc, MODELS_DIR))
    if source.kind == "pvc":
        return None
    return flags.fetch_command(source.uri, f"{MODELS_DIR}/{isvc.model.name}/model.onnx")


def pod_spec(isvc: InferenceService, images: Images) -> dict[str, Any]:
    """The runtime Pod spec: the serving container, its init containers, volumes."""
    init = _init_containers(isvc, images)
    spec: dict[str, Any] = {
        # Service links would inject NAME_PORT-style variables, some of which could collide
        # with the runtime's SLUICE_ settings; the runtime never needs them.
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_serving_container(isvc, images)],
        "volumes": _volumes(isvc, fetching=bool(init)),
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
    }
    if init:
        spec["initContainers"] = init
    node_selector = _node_selector(isvc)
    if node_selector:
        spec["nodeSelector"] = node_selector
    tolerations = _tolerations(isvc)
    if tolerations:
        spec["tolerations"] = tolerations
    if isvc.scheduling.affinity is not None:
        spec["affinity"] = plain(isvc.scheduling.affinity)
    if isvc.scheduling.priority_class_name is not None:
        spec["priorityClassName"] = isvc.scheduling.priority_class_name
    return spec


def _init_containers(isvc: InferenceService, images: Images) -> list[dict[str, Any]]:
    fetch = fetch_command(isvc)
    if fetch is None:
        return []
    containers = [_fetch_container(isvc, fetch, images)]
    if isvc.runtime.engine == "triton":
        containers.append(
            {
                "name": triton.CONFIG_CONTAINER,
                "image": runtime_image(isvc, images),
                "command": triton.config_command(isvc, MODELS_DIR),
                "resources": _resources(isvc, gpus=False),
                "securityContext": container_security(),
                "volumeMounts": [
                    {"name": "tmp", "mountPath": "/tmp"},
                    {"name": "models", "mountPath": MODELS_DIR},
                ],
            }
        )
    return containers


def _serving_container(isvc: InferenceService, images: Images) -> dict[str, Any]:
    container_ports = [
        {"name": ports.HTTP, "containerPort": ports.HTTP_PORT, "protocol": "TCP"},
        {"name": ports.GRPC, "containerPort": ports.GRPC_PORT, "protocol": "TCP"},
    ]
    if isvc.runtime.engine == "triton":
        container_ports.append(
            {"name": "metrics", "containerPort": triton.METRICS_PORT, "protocol": "TCP"}
        )
    container: dict[str, Any] = {
        "name": RUNTIME_CONTAINER,
        "image": runtime_image(isvc, images),
        "command": serve_command(isvc),
        "ports": container_ports,
        "resources": _resources(isvc),
        "readinessProbe": _probe(ports.READY_PATH, period=5, failures=3),
        "livenessProbe": _probe(ports.LIVE_PATH, period=10, failures=3),
        "startupProbe": _probe(
            ports.READY_PATH, period=STARTUP_PERIOD_SECONDS, failures=STARTUP_FAILURE_THRESHOLD
        ),
        "lifecycle": {"preStop": {"sleep": {"seconds": DEREGISTER_SECONDS}}},
        "securityContext": container_security(),
        "volumeMounts": _serving_mounts(isvc),
    }
    if isvc.runtime.env:
        container["env"] = _env(isvc)
    return container


def _fetch_container(isvc: InferenceService, command: list[str], images: Images) -> dict[str, Any]:
    mounts: list[dict[str, Any]] = [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "models", "mountPath": MODELS_DIR},
    ]
    if isvc.model.source.kind == "pvc":
        mounts.append({"name": "model-source", "mountPath": PVC_SOURCE_DIR, "readOnly": True})
    container: dict[str, Any] = {
        "name": FETCH_CONTAINER,
        "image": fetch_image(isvc, images),
        "command": command,
        # The serving container's CPU and memory: a pod's request is the larger of its init
        # and serving needs, so this adds nothing, and satisfies quotas that demand limits.
        "resources": _resources(isvc, gpus=False),
        "securityContext": container_security(),
        "volumeMounts": mounts,
    }
    if isvc.runtime.env:
        # The download needs the model's credentials (for s3://, the AWS_* variables boto3
        # reads), which users give with the runtime's other variables: the same list, so a
        # Secret named once reaches both steps.
        container["env"] = _env(isvc)
    return container


def _serving_mounts(isvc: InferenceService) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    source = isvc.model.source
    if source.kind == "image":
        return mounts
    if source.kind == "pvc" and isvc.runtime.engine == "sluice":
        mounts.append(
            {
                "name": "model-source",
                "mountPath": model_path(isvc),
                "subPath": source.path,
                "readOnly": True,
            }
        )
    else:
        mounts.append({"name": "models", "mountPath": MODELS_DIR, "readOnly": True})
    return mounts


def _volumes(isvc: InferenceService, *, fetching: bool) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    if fetching:
        volumes.append({"name": "models", "emptyDir": {}})
    source = isvc.model.source
    if source.kind == "pvc":
        volumes.append(
            {
                "name": "model-source",
                "persistentVolumeClaim": {"claimName": source.claim, "readOnly": True},
            }
        )
    return volumes


def _resources(isvc: InferenceService, *, gpus: bool = True) -> dict[str, Any]:
    amounts: dict[str, str] = {}
    if isvc.resources.cpu is not None:
        amounts["cpu"] = isvc.resources.cpu
    if isvc.resources.memory is not None:
        amounts["memory"] = isvc.resources.memory
    if gpus and isvc.resources.gpus > 0:
        amounts[GPU_RESOURCE] = str(isvc.resources.gpus)
    if not amounts:
        return {}
    # Requests equal limits: a GPU pod should not be the first evicted or be throttled.
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _node_selector(isvc: InferenceService) -> dict[str, str]:
    selector = dict(isvc.scheduling.node_selector)
    if isvc.resources.gpu_type is not None:
        selector[GPU_PRODUCT_LABEL] = isvc.resources.gpu_type
    return selector


def _tolerations(isvc: InferenceService) -> list[dict[str, Any]]:
    tolerations: list[dict[str, Any]] = []
    if isvc.resources.gpus > 0:
        tolerations.append(dict(GPU_TOLERATION))
    for toleration in isvc.scheduling.tolerations:
        entry: dict[str, Any] = {
            key: value
            for key, value in (
                ("key", toleration.key),
                ("operator", toleration.operator),
                ("value", toleration.value),
                ("effect", toleration.effect),
                ("tolerationSeconds", toleration.toleration_seconds),
            )
            if value is not None
        }
        if entry not in tolerations:
            tolerations.append(entry)
    return tolerations


def _env(isvc: InferenceService) -> list[dict[str, Any]]:
    return [_env_var(var) for var in isvc.runtime.env]


def _env_var(var: EnvVar) -> dict[str, Any]:
    """One container env entry; ``optional`` is written only when set, as the API server
    leaves it out by default."""
    if var.value_from is None:
        return {"name": var.name, "value": var.value}
    ref = var.value_from
    source: dict[str, Any] = {"name": ref.name, "key": ref.key}
    if ref.optional:
        source["optional"] = True
    return {"name": var.name, "valueFrom": {ref.kind: source}}


def _probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": ports.HTTP},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
    }


def plain(value: Any) -> Any:
    """A deep copy of read-only mappings and tuples as plain dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value
