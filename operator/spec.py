"""The InferenceService spec as typed, immutable values.

``parse`` turns a custom-resource body (the dict kopf hands to a handler) into frozen
dataclasses with every default applied (the batching defaults are the runtime's own, from
``sluice.contracts.flags``). The CustomResourceDefinition in ``crds/`` applies the
same defaults and rejects most bad specs at admission; parsing repeats that work as defence in
depth (an object stored before a schema change, or a schema installed without defaulting), and
raises ``SpecError`` for a spec the operator cannot honour. A ``SpecError`` is permanent: the
controller reports it in status instead of retrying.

Builders (``builders.py``, ``pods.py``) consume these values and never look at raw dicts.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, TypeVar

from sluice.contracts import flags

# The resource's identity (defined with the other contracts), part of this module's interface.
from sluice.contracts.api import API_VERSION as API_VERSION
from sluice.contracts.api import GROUP as GROUP
from sluice.contracts.api import KIND as KIND
from sluice.contracts.api import PLURAL as PLURAL
from sluice.contracts.api import VERSION as VERSION

Engine = Literal["sluice", "triton"]
ModelFormat = Literal["onnx", "tensorrt"]
SourceKind = Literal["image", "pvc", "http", "s3"]
KeyRefKind = Literal["secretKeyRef", "configMapKeyRef"]

ENGINES: tuple[Engine, ...] = ("sluice", "triton")
FORMATS: tuple[ModelFormat, ...] = ("onnx", "tensorrt")
# The ``valueFrom`` sources ``spec.runtime.env`` accepts. A container's fieldRef and
# resourceFieldRef are left out: the variables are for the model's credentials and settings,
# and the pod's own fields mean nothing to the runtime.
KEY_REF_KINDS: tuple[KeyRefKind, ...] = ("secretKeyRef", "configMapKeyRef")
# The formats each engine can serve; the CRD holds the same table as a CEL rule.
ENGINE_FORMATS: Mapping[Engine, tuple[ModelFormat, ...]] = MappingProxyType(
    {"sluice": ("onnx",), "triton": ("onnx", "tensorrt")}
)

MAX_GPUS = 64
MAX_REPLICAS = 1000
# Child objects are named NAME-<suffix> and NAME is a label value; 52 leaves room for suffixes.
MAX_NAME_LENGTH = 52
# The node label NVIDIA GPU feature discovery sets to the GPU product name.
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"

_NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_ENV_NAME_RE = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
# Secret and ConfigMap names (DNS-1123 subdomains) and their keys, as the API server checks them.
_OBJECT_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")
_CLAIM_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_QUANTITY_RE = re.compile(
    r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_TOLERATION_OPERATORS = ("Exists", "Equal")
_TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")

_S = TypeVar("_S", bound=str)


class SpecError(ValueError):
    """A spec the operator cannot honour; permanent until the user edits the resource."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class ModelSource:
    """Where the model comes from, decided once from ``spec.model.uri``.

    ``image``: a path already inside the runtime image (``file://`` or an absolute path).
    ``pvc``: ``path`` inside PersistentVolumeClaim ``claim``, mounted read-only.
    ``http`` / ``s3``: downloaded by the init container before the runtime starts.
    """

    kind: SourceKind
    uri: str
    path: str = ""
    claim: str = ""


@dataclass(frozen=True)
class ModelSpec:
    """``spec.model``: what is served and under which name."""

    uri: str
    name: str
    format: ModelFormat
    source: ModelSource


@dataclass(frozen=True)
class BatchingSpec:
    """``spec.runtime.batching``: dynamic batching limits."""

    max_batch_size: int = flags.MAX_BATCH_SIZE.default
    max_queue_delay_us: int = flags.MAX_QUEUE_DELAY_US.default


@dataclass(frozen=True)
class KeyRef:
    """An env value read from one key of a Secret or ConfigMap in the InferenceService's own
    namespace (``valueFrom.secretKeyRef`` / ``valueFrom.configMapKeyRef``), as a container's
    env reads it. ``optional``: a missing object or key leaves the variable unset instead of
    keeping the pod from starting."""

    kind: KeyRefKind
    name: str
    key: str
    optional: bool = False


@dataclass(frozen=True)
class EnvVar:
    """One ``spec.runtime.env`` entry: a literal ``value`` or, when ``value_from`` is set, a
    key of a Secret or ConfigMap."""

    name: str
    value: str = ""
    value_from: KeyRef | None = None


@dataclass(frozen=True)
class RuntimeSpec:
    """``spec.runtime``: the model server and how it runs. ``image`` is None for the default."""

    engine: Engine = "sluice"
    image: str | None = None
    batching: BatchingSpec = field(default_factory=BatchingSpec)
    args: tuple[str, ...] = ()
    env: tuple[EnvVar, ...] = ()


@dataclass(frozen=True)
class ResourcesSpec:
    """``spec.resources``: GPUs per replica, GPU product, CPU and memory quantities."""

    gpus: int = 0
    gpu_type: str | None = None
    cpu: str | None = None
    memory: str | None = None


@dataclass(frozen=True)
class Toleration:
    """One ``spec.scheduling.tolerations`` entry, fields as in a Pod's tolerations."""

    key: str | None = None
    operator: str | None = None
    value: str | None = None
    effect: str | None = None
    toleration_seconds: int | None = None


@dataclass(frozen=True)
class SchedulingSpec:
    """``spec.scheduling``: where the runtime pods may run."""

    node_selector: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    tolerations: tuple[Toleration, ...] = ()
    affinity: Mapping[str, Any] | None = None
    priority_class_name: str | None = None


@dataclass(frozen=True)
class AutoscalingSpec:
    """Who scales the runtime pods when it is not the spec's fixed ``replicas``.

    Not in the CRD yet (``spec.autoscaling`` comes with the autoscaler); ``parse`` leaves it
    None. Its presence alone makes the Deployments' replica count the autoscaler's.
    """

    engine: str


@dataclass(frozen=True)
class InferenceService:
    """A parsed InferenceService: identity plus the spec with defaults applied."""

    name: str
    namespace: str
    uid: str
    generation: int
    model: ModelSpec
    runtime: RuntimeSpec
    resources: ResourcesSpec
    scheduling: SchedulingSpec
    replicas: int = 1
    autoscaling: AutoscalingSpec | None = None


def parse(body: Mapping[str, Any]) -> InferenceService:
    """Parse a custom-resource body into an ``InferenceService``, or raise ``SpecError``."""
    metadata = _mapping(body.get("metadata"), "metadata")
    name = _str(metadata.get("name"), "metadata.name")
    if len(name) > MAX_NAME_LENGTH or not _NAME_RE.match(name):
        raise SpecError(
            "metadata.name",
            f"must be at most {MAX_NAME_LENGTH} lowercase letters, digits and '-', "
            "starting with a letter",
        )
    spec = _mapping(body.get("spec"), "spec")
    resources = _parse_resources(_mapping(spec.get("resources"), "spec.resources"))
    runtime = _parse_runtime(_mapping(spec.get("runtime"), "spec.runtime"))
    model = _parse_model(_mapping(spec.get("model"), "spec.model"), default_name=name)
    allowed = ENGINE_FORMATS[runtime.engine]
    if model.format not in allowed:
        raise SpecError(
            "spec.model.format",
            f"engine {runtime.engine!r} serves formats {', '.join(allowed)}, not {model.format!r}",
        )
    scheduling = _parse_scheduling(_mapping(spec.get("scheduling"), "spec.scheduling"))
    pinned = scheduling.node_selector.get(GPU_PRODUCT_LABEL)
    if resources.gpu_type is not None and pinned is not None and pinned != resources.gpu_type:
        raise SpecError(
            "spec.scheduling.nodeSelector",
            f"{GPU_PRODUCT_LABEL} conflicts with spec.resources.gpuType",
        )
    return InferenceService(
        name=name,
        namespace=_str(metadata.get("namespace"), "metadata.namespace"),
        uid=str(metadata.get("uid") or ""),
        generation=_int(metadata.get("generation", 0), "metadata.generation", 0, None),
        model=model,
        runtime=runtime,
        resources=resources,
        scheduling=scheduling,
        replicas=_int(spec.get("replicas", 1), "spec.replicas", 0, MAX_REPLICAS),
    )


def parse_model_uri(uri: str) -> ModelSource:
    """Classify a model URI; raise ``SpecError`` for a scheme or shape the operator can't fetch."""
    where = "spec.model.uri"
    if uri.startswith("/"):
        return ModelSource(kind="image", uri=uri, path=uri)
    if uri.startswith("file://"):
        path = uri.removeprefix("file://")
        if not path.startswith("/"):
            raise SpecError(where, "a file:// URI needs an absolute path (file:///path)")
        return ModelSource(kind="image", uri=uri, path=path)
    if uri.startswith("pvc://"):
        claim, _, path = uri.removeprefix("pvc://").partition("/")
        path = path.removesuffix("/")
        if not _CLAIM_RE.match(claim) or not path or "" in path.split("/"):
            raise SpecError(where, "a pvc:// URI needs a claim name and a path: pvc://CLAIM/PATH")
        if any(part in (".", "..") for part in path.split("/")):
            raise SpecError(where, "the path of a pvc:// URI must not contain '.' or '..'")
        return ModelSource(kind="pvc", uri=uri, path=path, claim=claim)
    if uri.startswith("s3://"):
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        if not bucket or not key:
            raise SpecError(where, "an s3:// URI needs a bucket and a key: s3://BUCKET/KEY")
        return ModelSource(kind="s3", uri=uri)
    if uri.startswith(("http://", "https://")):
        if not uri.partition("://")[2].partition("/")[0]:
            raise SpecError(where, "an http(s):// URI needs a host")
        return ModelSource(kind="http", uri=uri)
    raise SpecError(where, "scheme must be one of file://, /, pvc://, http://, https://, s3://")


def _parse_model(raw: Mapping[str, Any], *, default_name: str) -> ModelSpec:
    uri = _str(raw.get("uri"), "spec.model.uri")
    name = _str(raw.get("name", default_name), "spec.model.name")
    if len(name) > 63 or not _MODEL_NAME_RE.match(name):
        raise SpecError(
            "spec.model.name",
            "must be at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit",
        )
    return ModelSpec(
        uri=uri,
        name=name,
        format=_choice(raw.get("format", "onnx"), "spec.model.format", FORMATS),
        source=parse_model_uri(uri),
    )


def _parse_runtime(raw: Mapping[str, Any]) -> RuntimeSpec:
    batching = _mapping(raw.get("batching"), "spec.runtime.batching")
    image = raw.get("image")
    env: list[EnvVar] = []
    for index, item in enumerate(_list(raw.get("env"), "spec.runtime.env")):
        var = _parse_env_var(item, f"spec.runtime.env[{index}]")
        if any(existing.name == var.name for existing in env):
            raise SpecError(f"spec.runtime.env[{index}].name", f"duplicate name {var.name!r}")
        env.append(var)
    return RuntimeSpec(
        engine=_choice(raw.get("engine", "sluice"), "spec.runtime.engine", ENGINES),
        image=None if image in (None, "") else _str(image, "spec.runtime.image"),
        batching=BatchingSpec(
            max_batch_size=_int(
                batching.get("maxBatchSize", flags.MAX_BATCH_SIZE.default),
                "spec.runtime.batching.maxBatchSize",
                1,
                4096,
            ),
            max_queue_delay_us=_int(
                batching.get("maxQueueDelayMicroseconds", flags.MAX_QUEUE_DELAY_US.default),
                "spec.runtime.batching.maxQueueDelayMicroseconds",
                0,
                10_000_000,
            ),
        ),
        args=tuple(
            _str(arg, f"spec.runtime.args[{i}]")
            for i, arg in enumerate(_list(raw.get("args"), "spec.runtime.args"))
        ),
        env=tuple(env),
    )


def _parse_env_var(item: Any, where: str) -> EnvVar:
    entry = _mapping(item, where)
    name = _str(entry.get("name"), f"{where}.name")
    if not _ENV_NAME_RE.match(name):
        raise SpecError(f"{where}.name", "must be a valid environment variable name")
    # The runtime reads its own settings from these variables.
    if name.startswith(flags.ENV_PREFIX):
        raise SpecError(f"{where}.name", f"names starting {flags.ENV_PREFIX} are reserved")
    if entry.get("valueFrom") is None:
        return EnvVar(name, str(entry.get("value", "")))
    if "value" in entry:
        raise SpecError(f"{where}.valueFrom", "set value or valueFrom, not both")
    return EnvVar(name, value_from=_parse_key_ref(entry["valueFrom"], f"{where}.valueFrom"))


def _parse_key_ref(item: Any, where: str) -> KeyRef:
    raw = _mapping(item, where)
    unsupported = sorted(set(raw) - set(KEY_REF_KINDS))
    if unsupported:
        raise SpecError(
            f"{where}.{unsupported[0]}", "is not supported: use secretKeyRef or configMapKeyRef"
        )
    kinds = [kind for kind in KEY_REF_KINDS if kind in raw]
    if len(kinds) != 1:
        raise SpecError(where, "needs exactly one of secretKeyRef or configMapKeyRef")
    kind = kinds[0]
    ref = _mapping(raw[kind], f"{where}.{kind}")
    name = _str(ref.get("name"), f"{where}.{kind}.name")
    if len(name) > 253 or not _OBJECT_NAME_RE.match(name):
        raise SpecError(f"{where}.{kind}.name", "must be a Secret or ConfigMap name")
    key = _str(ref.get("key"), f"{where}.{kind}.key")
    if len(key) > 253 or not _KEY_RE.match(key):
        raise SpecError(f"{where}.{kind}.key", "must be letters, digits, '-', '_' or '.'")
    optional = ref.get("optional", False)
    if not isinstance(optional, bool):
        raise SpecError(f"{where}.{kind}.optional", "must be true or false")
    return KeyRef(kind=kind, name=name, key=key, optional=optional)


def _parse_resources(raw: Mapping[str, Any]) -> ResourcesSpec:
    gpus = _int(raw.get("gpus", 0), "spec.resources.gpus", 0, MAX_GPUS)
    gpu_type = raw.get("gpuType")
    if gpu_type is not None:
        gpu_type = _str(gpu_type, "spec.resources.gpuType")
        if gpus == 0:
            raise SpecError("spec.resources.gpuType", "requires spec.resources.gpus > 0")
    return ResourcesSpec(
        gpus=gpus,
        gpu_type=gpu_type,
        cpu=_quantity(raw.get("cpu"), "spec.resources.cpu"),
        memory=_quantity(raw.get("memory"), "spec.resources.memory"),
    )


def _parse_scheduling(raw: Mapping[str, Any]) -> SchedulingSpec:
    selector = _mapping(raw.get("nodeSelector"), "spec.scheduling.nodeSelector")
    tolerations = []
    for index, item in enumerate(_list(raw.get("tolerations"), "spec.scheduling.tolerations")):
        tolerations.append(_parse_toleration(item, f"spec.scheduling.tolerations[{index}]"))
    affinity = raw.get("affinity")
    priority = raw.get("priorityClassName")
    return SchedulingSpec(
        node_selector=MappingProxyType(
            {str(k): _str(v, f"spec.scheduling.nodeSelector.{k}") for k, v in selector.items()}
        ),
        tolerations=tuple(tolerations),
        affinity=(
            None
            if affinity is None
            else MappingProxyType(
                copy.deepcopy(dict(_mapping(affinity, "spec.scheduling.affinity")))
            )
        ),
        priority_class_name=(
            None if priority in (None, "") else _str(priority, "spec.scheduling.priorityClassName")
        ),
    )


def _parse_toleration(item: Any, where: str) -> Toleration:
    raw = _mapping(item, where)
    operator = raw.get("operator")
    if operator is not None:
        operator = _choice(operator, f"{where}.operator", _TOLERATION_OPERATORS)
    effect = raw.get("effect")
    if effect is not None:
        effect = _choice(effect, f"{where}.effect", _TOLERATION_EFFECTS)
    key = raw.get("key")
    if not key and operator != "Exists":
        raise SpecError(f"{where}.operator", "an empty key requires operator Exists")
    if operator == "Exists" and raw.get("value"):
        raise SpecError(f"{where}.value", "must be empty when operator is Exists")
    seconds = raw.get("tolerationSeconds")
    if seconds is not None and effect != "NoExecute":
        raise SpecError(f"{where}.tolerationSeconds", "is only valid with effect NoExecute")
    return Toleration(
        key=None if key is None else _str(key, f"{where}.key"),
        operator=operator,
        value=None if raw.get("value") is None else _str(raw["value"], f"{where}.value"),
        effect=effect,
        toleration_seconds=(
            None if seconds is None else _int(seconds, f"{where}.tolerationSeconds", None, None)
        ),
    )


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(where, "must be an object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise SpecError(where, "must be a list")
    return list(value)


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise SpecError(where, "must be a non-empty string")
    return value


def _int(value: Any, where: str, minimum: int | None, maximum: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(where, "must be an integer")
    if minimum is not None and value < minimum:
        raise SpecError(where, f"must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise SpecError(where, f"must be at most {maximum}")
    return value


def _choice(value: Any, where: str, choices: tuple[_S, ...]) -> _S:
    for choice in choices:
        if value == choice:
            return choice
    raise SpecError(where, f"must be one of {', '.join(choices)}")


def _quantity(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise SpecError(where, "must be a quantity such as 2, 500m or 8Gi")
    text = str(value)
    if not _QUANTITY_RE.match(text):
        raise SpecError(where, "must be a quantity such as 2, 500m or 8Gi")
    return text
