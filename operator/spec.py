"""The InferenceService spec as typed, immutable values.

``parse`` turns a custom-resource body (the dict kopf hands to a handler) into frozen
dataclasses with every default applied (the batching defaults are the runtime's own, from
``sluice.contracts.flags``). The CustomResourceDefinition in ``crds/`` applies the
same defaults and rejects most bad specs at admission; parsing repeats that work as defence in
depth (an object stored before a schema change, or a schema installed without defaulting), and
raises ``SpecError`` for a spec the operator cannot honour. A ``SpecError`` is permanent: the
controller reports it in status instead of retrying.

An A/B variant's ``model``, ``runtime``, ``resources`` and ``scheduling`` are merged key by key
over the main model's raw objects and parsed by the same functions, so every rule holds for
variants too and errors name the variant's own field (``spec.variants[0].model.uri``).

Builders (``builders.py``, ``pods.py``) consume these values and never look at raw dicts.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal, TypeVar

from sluice.contracts import flags, labels, routes

# The resource's identity (defined with the other contracts), part of this module's interface.
from sluice.contracts.api import API_VERSION as API_VERSION
from sluice.contracts.api import GROUP as GROUP
from sluice.contracts.api import KIND as KIND
from sluice.contracts.api import PLURAL as PLURAL
from sluice.contracts.api import VERSION as VERSION

Engine = Literal["sluice", "triton"]
ModelFormat = Literal["onnx", "tensorrt"]
SourceKind = Literal["image", "pvc", "http", "s3"]
RolloutStrategy = Literal["RollingUpdate", "Canary"]
TrafficProvider = Literal["Router", "GatewayAPI"]
KeyRefKind = Literal["secretKeyRef", "configMapKeyRef"]

ENGINES: tuple[Engine, ...] = ("sluice", "triton")
FORMATS: tuple[ModelFormat, ...] = ("onnx", "tensorrt")
ROLLOUT_STRATEGIES: tuple[RolloutStrategy, ...] = ("RollingUpdate", "Canary")
TRAFFIC_PROVIDERS: tuple[TrafficProvider, ...] = ("Router", "GatewayAPI")
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
# A variant's children are named NAME-<variant>, a DNS label: NAME and the variant name share it.
MAX_CHILD_NAME_LENGTH = 63
MAX_VARIANTS = 8
# Match entries per variant, and canary steps: small bounds keep the CRD's CEL rules cheap.
MAX_MATCHES = 16
MAX_CANARY_STEPS = 10
# The longest any rollout step, deadline or readiness wait may be: one day.
MAX_ROLLOUT_SECONDS = 86_400
# Upper bounds of the canary analysis' settings, so every field has one.
MAX_MIN_REQUESTS = 1_000_000
MAX_FAILURE_LIMIT = 100
MAX_P99_SECONDS = 3600
# Variant names the operator gives children and routes of its own: the main model's route and
# Deployment, the canary's, the router's and the activator's.
RESERVED_VARIANT_NAMES = (routes.MAIN, routes.CANARY, labels.ROUTER, "activator", labels.PREDICTOR)
# What ``spec.variants[]`` may override of the main model, field by field.
VARIANT_OVERRIDES = ("model", "runtime", "resources", "scheduling")
# The node label NVIDIA GPU feature discovery sets to the GPU product name.
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"

_NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# An HTTP header name (an RFC 9110 token) in lower case, as HTTP/2 and Envoy carry it, and a
# cookie name (an RFC 6265 token): what the router can match and hash on.
HEADER_NAME_RE = re.compile(r"^[a-z0-9!#$%&'*+.^_`|~-]+$")
COOKIE_NAME_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_MAX_HEADER_LENGTH = 256
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
class AnalysisSpec:
    """``spec.rollout.canary.analysis``: how a canary step is judged on its own metrics.

    A step is judged once ``min_requests`` canary requests were answered in it (and its
    ``stepSeconds`` passed); a step that has not seen them ``deadline_seconds`` after it began
    fails. ``max_p99_latency_seconds`` None judges no latency.
    """

    min_requests: int = 20
    max_error_rate: float = 0.01
    max_p99_latency_seconds: float | None = None
    failure_limit: int = 1
    deadline_seconds: int = 600


@dataclass(frozen=True)
class CanarySpec:
    """``spec.rollout.canary``: the canary's traffic steps (percent of the main model's
    traffic, increasing, each below 100; promotion comes after the last), the least time at
    each, and how long the canary may take to become ready before the rollout is rolled back."""

    steps: tuple[int, ...] = (10, 50)
    step_seconds: int = 30
    analysis: AnalysisSpec = field(default_factory=AnalysisSpec)
    ready_deadline_seconds: int = 600


@dataclass(frozen=True)
class RolloutSpec:
    """``spec.rollout``: how a change to the main model's pods reaches them."""

    strategy: RolloutStrategy = "RollingUpdate"
    canary: CanarySpec = field(default_factory=CanarySpec)
    paused: bool = False


@dataclass(frozen=True)
class VariantMatch:
    """One ``spec.variants[].match`` entry: a request header equal to ``value`` (or fully
    matching ``regex``), or a cookie equal to ``value``. Entries of a variant are alternatives:
    a request matching any one goes to the variant."""

    header: str | None = None
    cookie: str | None = None
    value: str | None = None
    regex: str | None = None


@dataclass(frozen=True)
class VariantSpec:
    """One ``spec.variants`` entry, with the main model's fields wherever it overrides none:
    ``model``, ``runtime``, ``resources`` and ``scheduling`` replace the main model's value
    field by field. ``weight`` is its percent of the requests no match rule took."""

    name: str
    weight: int
    match: tuple[VariantMatch, ...]
    model: ModelSpec
    runtime: RuntimeSpec
    resources: ResourcesSpec
    scheduling: SchedulingSpec
    replicas: int = 1


@dataclass(frozen=True)
class MirrorSpec:
    """``spec.traffic.mirror``: copy ``percent`` of the main model's requests to ``variant``,
    whose answers are discarded."""

    variant: str
    percent: float = 100.0


@dataclass(frozen=True)
class TrafficSpec:
    """``spec.traffic``: sticky assignment by one header or one cookie, a mirror, and who
    routes (Sluice's router, or a Gateway API implementation through an HTTPRoute).

    With provider ``GatewayAPI`` the HTTPRoute attaches to Gateway ``gateway_name`` in
    ``gateway_namespace`` (the InferenceService's own unless the spec names one), at listener
    ``gateway_section`` when set; with provider ``Router`` all three are None.
    """

    sticky_header: str | None = None
    sticky_cookie: str | None = None
    mirror: MirrorSpec | None = None
    provider: TrafficProvider = "Router"
    gateway_name: str | None = None
    gateway_namespace: str | None = None
    gateway_section: str | None = None


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
    rollout: RolloutSpec = field(default_factory=RolloutSpec)
    variants: tuple[VariantSpec, ...] = ()
    traffic: TrafficSpec = field(default_factory=TrafficSpec)
    annotations: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


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
    namespace = _str(metadata.get("namespace"), "metadata.namespace")
    spec = _mapping(body.get("spec"), "spec")
    main = _parse_serving(spec, "spec", model_name=name)
    variants = _parse_variants(spec, isvc_name=name)
    return InferenceService(
        name=name,
        namespace=namespace,
        uid=str(metadata.get("uid") or ""),
        generation=_int(metadata.get("generation", 0), "metadata.generation", 0, None),
        model=main.model,
        runtime=main.runtime,
        resources=main.resources,
        scheduling=main.scheduling,
        replicas=_int(spec.get("replicas", 1), "spec.replicas", 0, MAX_REPLICAS),
        rollout=_parse_rollout(spec.get("rollout"), "spec.rollout"),
        variants=variants,
        traffic=_parse_traffic(
            spec.get("traffic"), "spec.traffic", variants=variants, namespace=namespace
        ),
        annotations=_parse_annotations(metadata.get("annotations")),
    )


def parse_model_uri(uri: str, *, where: str = "spec.model.uri") -> ModelSource:
    """Classify a model URI; raise ``SpecError`` for a scheme or shape the operator can't fetch.
    ``where`` names the field in the error."""
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


@dataclass(frozen=True)
class _Serving:
    """What the main model and each variant have: the model and how its pods serve it."""

    model: ModelSpec
    runtime: RuntimeSpec
    resources: ResourcesSpec
    scheduling: SchedulingSpec


def _parse_serving(raw: Mapping[str, Any], where: str, *, model_name: str) -> _Serving:
    """``model``, ``runtime``, ``resources`` and ``scheduling`` of ``raw`` (the spec, or a
    variant's overrides merged over it) with the rules that span them; errors name fields
    under ``where``."""
    resources = _parse_resources(raw.get("resources"), f"{where}.resources")
    runtime = _parse_runtime(raw.get("runtime"), f"{where}.runtime")
    model = _parse_model(raw.get("model"), f"{where}.model", default_name=model_name)
    allowed = ENGINE_FORMATS[runtime.engine]
    if model.format not in allowed:
        raise SpecError(
            f"{where}.model.format",
            f"engine {runtime.engine!r} serves formats {', '.join(allowed)}, not {model.format!r}",
        )
    scheduling = _parse_scheduling(raw.get("scheduling"), f"{where}.scheduling")
    pinned = scheduling.node_selector.get(GPU_PRODUCT_LABEL)
    if resources.gpu_type is not None and pinned is not None and pinned != resources.gpu_type:
        raise SpecError(
            f"{where}.scheduling.nodeSelector",
            f"{GPU_PRODUCT_LABEL} conflicts with {where}.resources.gpuType",
        )
    return _Serving(model=model, runtime=runtime, resources=resources, scheduling=scheduling)


def _parse_model(value: Any, where: str, *, default_name: str) -> ModelSpec:
    raw = _mapping(value, where)
    uri = _str(raw.get("uri"), f"{where}.uri")
    name = _str(raw.get("name", default_name), f"{where}.name")
    if len(name) > 63 or not _MODEL_NAME_RE.match(name):
        raise SpecError(
            f"{where}.name",
            "must be at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit",
        )
    return ModelSpec(
        uri=uri,
        name=name,
        format=_choice(raw.get("format", "onnx"), f"{where}.format", FORMATS),
        source=parse_model_uri(uri, where=f"{where}.uri"),
    )


def _parse_runtime(value: Any, where: str) -> RuntimeSpec:
    raw = _mapping(value, where)
    batching = _mapping(raw.get("batching"), f"{where}.batching")
    image = raw.get("image")
    env: list[EnvVar] = []
    for index, item in enumerate(_list(raw.get("env"), f"{where}.env")):
        var = _parse_env_var(item, f"{where}.env[{index}]")
        if any(existing.name == var.name for existing in env):
            raise SpecError(f"{where}.env[{index}].name", f"duplicate name {var.name!r}")
        env.append(var)
    return RuntimeSpec(
        engine=_choice(raw.get("engine", "sluice"), f"{where}.engine", ENGINES),
        image=None if image in (None, "") else _str(image, f"{where}.image"),
        batching=BatchingSpec(
            max_batch_size=_int(
                batching.get("maxBatchSize", flags.MAX_BATCH_SIZE.default),
                f"{where}.batching.maxBatchSize",
                1,
                4096,
            ),
            max_queue_delay_us=_int(
                batching.get("maxQueueDelayMicroseconds", flags.MAX_QUEUE_DELAY_US.default),
                f"{where}.batching.maxQueueDelayMicroseconds",
                0,
                10_000_000,
            ),
        ),
        args=tuple(
            _str(arg, f"{where}.args[{i}]")
            for i, arg in enumerate(_list(raw.get("args"), f"{where}.args"))
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
    optional = _bool(ref.get("optional", False), f"{where}.{kind}.optional")
    return KeyRef(kind=kind, name=name, key=key, optional=optional)


def _parse_resources(value: Any, where: str) -> ResourcesSpec:
    raw = _mapping(value, where)
    gpus = _int(raw.get("gpus", 0), f"{where}.gpus", 0, MAX_GPUS)
    gpu_type = raw.get("gpuType")
    if gpu_type is not None:
        gpu_type = _str(gpu_type, f"{where}.gpuType")
        if gpus == 0:
            raise SpecError(f"{where}.gpuType", f"requires {where}.gpus > 0")
    return ResourcesSpec(
        gpus=gpus,
        gpu_type=gpu_type,
        cpu=_quantity(raw.get("cpu"), f"{where}.cpu"),
        memory=_quantity(raw.get("memory"), f"{where}.memory"),
    )


def _parse_scheduling(value: Any, where: str) -> SchedulingSpec:
    raw = _mapping(value, where)
    selector = _mapping(raw.get("nodeSelector"), f"{where}.nodeSelector")
    tolerations = []
    for index, item in enumerate(_list(raw.get("tolerations"), f"{where}.tolerations")):
        tolerations.append(_parse_toleration(item, f"{where}.tolerations[{index}]"))
    affinity = raw.get("affinity")
    priority = raw.get("priorityClassName")
    return SchedulingSpec(
        node_selector=MappingProxyType(
            {str(k): _str(v, f"{where}.nodeSelector.{k}") for k, v in selector.items()}
        ),
        tolerations=tuple(tolerations),
        affinity=(
            None
            if affinity is None
            else MappingProxyType(copy.deepcopy(dict(_mapping(affinity, f"{where}.affinity"))))
        ),
        priority_class_name=(
            None if priority in (None, "") else _str(priority, f"{where}.priorityClassName")
        ),
    )


def _parse_variants(spec: Mapping[str, Any], *, isvc_name: str) -> tuple[VariantSpec, ...]:
    items = _list(spec.get("variants"), "spec.variants")
    if len(items) > MAX_VARIANTS:
        raise SpecError("spec.variants", f"must have at most {MAX_VARIANTS} entries")
    variants: list[VariantSpec] = []
    for index, item in enumerate(items):
        where = f"spec.variants[{index}]"
        variant = _parse_variant(item, where, spec=spec, isvc_name=isvc_name)
        if any(existing.name == variant.name for existing in variants):
            raise SpecError(f"{where}.name", f"duplicate name {variant.name!r}")
        variants.append(variant)
    if sum(variant.weight for variant in variants) > 100:
        raise SpecError(
            "spec.variants",
            "weights must add up to at most 100: the main model answers the rest",
        )
    return tuple(variants)


def _parse_variant(
    item: Any, where: str, *, spec: Mapping[str, Any], isvc_name: str
) -> VariantSpec:
    raw = _mapping(item, where)
    name = _parse_variant_name(raw.get("name"), f"{where}.name", isvc_name=isvc_name)
    if "name" in _mapping(raw.get("model"), f"{where}.model"):
        raise SpecError(
            f"{where}.model.name",
            "cannot be overridden: every variant serves the main model's name, "
            "the one clients address",
        )
    # Field by field: a key the variant sets replaces the main model's value for that key
    # whole (runtime.batching, scheduling.tolerations, ...); the others are the main model's.
    merged = {
        key: {**_mapping(spec.get(key), f"spec.{key}"), **_mapping(raw.get(key), f"{where}.{key}")}
        for key in VARIANT_OVERRIDES
    }
    serving = _parse_serving(merged, where, model_name=isvc_name)
    matches = _list(raw.get("match"), f"{where}.match")
    if len(matches) > MAX_MATCHES:
        raise SpecError(f"{where}.match", f"must have at most {MAX_MATCHES} entries")
    return VariantSpec(
        name=name,
        weight=_int(raw.get("weight", 0), f"{where}.weight", 0, 100),
        match=tuple(_parse_match(m, f"{where}.match[{i}]") for i, m in enumerate(matches)),
        model=serving.model,
        runtime=serving.runtime,
        resources=serving.resources,
        scheduling=serving.scheduling,
        replicas=_int(raw.get("replicas", 1), f"{where}.replicas", 0, MAX_REPLICAS),
    )


def _parse_variant_name(value: Any, where: str, *, isvc_name: str) -> str:
    name = _str(value, where)
    if len(name) > MAX_CHILD_NAME_LENGTH or not _NAME_RE.match(name):
        raise SpecError(
            where, "must be a DNS label: lowercase letters, digits and '-', starting with a letter"
        )
    if name in RESERVED_VARIANT_NAMES:
        raise SpecError(
            where, f"{name!r} is reserved: {', '.join(RESERVED_VARIANT_NAMES)} name Sluice's own"
        )
    if len(isvc_name) + 1 + len(name) > MAX_CHILD_NAME_LENGTH:
        raise SpecError(
            where,
            f"the variant's objects are named {isvc_name}-{name}, which must be at most "
            f"{MAX_CHILD_NAME_LENGTH} characters",
        )
    return name


def _parse_match(item: Any, where: str) -> VariantMatch:
    raw = _mapping(item, where)
    if ("header" in raw) == ("cookie" in raw):
        raise SpecError(where, "needs exactly one of header or cookie")
    if "cookie" in raw:
        cookie = _mapping(raw["cookie"], f"{where}.cookie")
        return VariantMatch(
            cookie=_cookie_name(cookie.get("name"), f"{where}.cookie.name"),
            value=_str(cookie.get("value"), f"{where}.cookie.value"),
        )
    header = _mapping(raw["header"], f"{where}.header")
    name = _header_name(header.get("name"), f"{where}.header.name")
    if ("value" in header) == ("regex" in header):
        raise SpecError(f"{where}.header", "needs exactly one of value or regex")
    if "value" in header:
        return VariantMatch(header=name, value=_str(header["value"], f"{where}.header.value"))
    regex = _str(header["regex"], f"{where}.header.regex")
    try:
        re.compile(regex)
    except re.error as exc:
        raise SpecError(f"{where}.header.regex", f"is not a regular expression: {exc}") from None
    return VariantMatch(header=name, regex=regex)


_ROLLOUT = RolloutSpec()
_CANARY = CanarySpec()
_ANALYSIS = AnalysisSpec()
_TRAFFIC = TrafficSpec()


def _parse_rollout(value: Any, where: str) -> RolloutSpec:
    raw = _mapping(value, where)
    return RolloutSpec(
        strategy=_choice(
            raw.get("strategy", _ROLLOUT.strategy), f"{where}.strategy", ROLLOUT_STRATEGIES
        ),
        canary=_parse_canary(raw.get("canary"), f"{where}.canary"),
        paused=_bool(raw.get("paused", _ROLLOUT.paused), f"{where}.paused"),
    )


def _parse_canary(value: Any, where: str) -> CanarySpec:
    raw = _mapping(value, where)
    steps: list[int] = []
    for index, item in enumerate(_list(raw.get("steps", list(_CANARY.steps)), f"{where}.steps")):
        step = _int(item, f"{where}.steps[{index}]", 1, 99)
        if steps and step <= steps[-1]:
            raise SpecError(f"{where}.steps[{index}]", "must be above the step before it")
        steps.append(step)
    if not 1 <= len(steps) <= MAX_CANARY_STEPS:
        raise SpecError(f"{where}.steps", f"needs 1 to {MAX_CANARY_STEPS} steps")
    step_seconds = _int(
        raw.get("stepSeconds", _CANARY.step_seconds), f"{where}.stepSeconds", 1, MAX_ROLLOUT_SECONDS
    )
    analysis = _parse_analysis(raw.get("analysis"), f"{where}.analysis")
    if analysis.deadline_seconds < step_seconds:
        raise SpecError(
            f"{where}.analysis.deadlineSeconds", f"must be at least {where}.stepSeconds"
        )
    return CanarySpec(
        steps=tuple(steps),
        step_seconds=step_seconds,
        analysis=analysis,
        ready_deadline_seconds=_int(
            raw.get("readyDeadlineSeconds", _CANARY.ready_deadline_seconds),
            f"{where}.readyDeadlineSeconds",
            1,
            MAX_ROLLOUT_SECONDS,
        ),
    )


def _parse_analysis(value: Any, where: str) -> AnalysisSpec:
    raw = _mapping(value, where)
    p99 = raw.get("maxP99LatencySeconds")
    return AnalysisSpec(
        min_requests=_int(
            raw.get("minRequests", _ANALYSIS.min_requests),
            f"{where}.minRequests",
            1,
            MAX_MIN_REQUESTS,
        ),
        max_error_rate=_number(
            raw.get("maxErrorRate", _ANALYSIS.max_error_rate), f"{where}.maxErrorRate", 0, 1
        ),
        max_p99_latency_seconds=(
            None
            if p99 is None
            else _number(p99, f"{where}.maxP99LatencySeconds", 0, MAX_P99_SECONDS, open_low=True)
        ),
        failure_limit=_int(
            raw.get("failureLimit", _ANALYSIS.failure_limit),
            f"{where}.failureLimit",
            1,
            MAX_FAILURE_LIMIT,
        ),
        deadline_seconds=_int(
            raw.get("deadlineSeconds", _ANALYSIS.deadline_seconds),
            f"{where}.deadlineSeconds",
            1,
            MAX_ROLLOUT_SECONDS,
        ),
    )


def _parse_traffic(
    value: Any, where: str, *, variants: tuple[VariantSpec, ...], namespace: str
) -> TrafficSpec:
    raw = _mapping(value, where)
    sticky_header = sticky_cookie = None
    if raw.get("stickyBy") is not None:
        sticky = _mapping(raw["stickyBy"], f"{where}.stickyBy")
        if ("header" in sticky) == ("cookie" in sticky):
            raise SpecError(f"{where}.stickyBy", "needs exactly one of header or cookie")
        if "header" in sticky:
            sticky_header = _header_name(sticky["header"], f"{where}.stickyBy.header")
        else:
            sticky_cookie = _cookie_name(sticky["cookie"], f"{where}.stickyBy.cookie")
    provider = _choice(
        raw.get("provider", _TRAFFIC.provider), f"{where}.provider", TRAFFIC_PROVIDERS
    )
    gateway = raw.get("gateway")
    if provider == "GatewayAPI" and gateway is None:
        raise SpecError(f"{where}.gateway", "is required with provider GatewayAPI")
    if provider != "GatewayAPI" and gateway is not None:
        raise SpecError(f"{where}.gateway", "applies only to provider GatewayAPI")
    traffic = TrafficSpec(
        sticky_header=sticky_header,
        sticky_cookie=sticky_cookie,
        mirror=_parse_mirror(raw.get("mirror"), f"{where}.mirror", variants=variants),
        provider=provider,
    )
    if gateway is None:
        return traffic
    return _with_gateway(traffic, gateway, f"{where}.gateway", namespace=namespace)


def _parse_mirror(
    value: Any, where: str, *, variants: tuple[VariantSpec, ...]
) -> MirrorSpec | None:
    if value is None:
        return None
    raw = _mapping(value, where)
    variant = _str(raw.get("variant"), f"{where}.variant")
    if not any(v.name == variant for v in variants):
        raise SpecError(f"{where}.variant", f"must name one of spec.variants, not {variant!r}")
    percent = _number(raw.get("percent", 100), f"{where}.percent", 0, 100, open_low=True)
    return MirrorSpec(variant=variant, percent=percent)


def _with_gateway(traffic: TrafficSpec, value: Any, where: str, *, namespace: str) -> TrafficSpec:
    """``traffic`` attached to the Gateway ``value`` names; its namespace defaults to the
    InferenceService's."""
    raw = _mapping(value, where)
    name = _str(raw.get("name"), f"{where}.name")
    if len(name) > 253 or not _OBJECT_NAME_RE.match(name):
        raise SpecError(f"{where}.name", "must be a Gateway's name (a DNS subdomain)")
    gateway_namespace = _str(raw.get("namespace", namespace), f"{where}.namespace")
    if len(gateway_namespace) > 63 or not _NAMESPACE_RE.match(gateway_namespace):
        raise SpecError(f"{where}.namespace", "must be a namespace name (a DNS label)")
    section = raw.get("sectionName")
    if section is not None:
        section = _str(section, f"{where}.sectionName")
        if len(section) > 253 or not _OBJECT_NAME_RE.match(section):
            raise SpecError(f"{where}.sectionName", "must be a listener name (a DNS subdomain)")
    return replace(
        traffic, gateway_name=name, gateway_namespace=gateway_namespace, gateway_section=section
    )


def _parse_annotations(value: Any) -> Mapping[str, str]:
    raw = _mapping(value, "metadata.annotations")
    for key, text in raw.items():
        if not isinstance(text, str):
            raise SpecError(f"metadata.annotations.{key}", "must be a string")
    return MappingProxyType({str(key): text for key, text in raw.items()})


def _header_name(value: Any, where: str) -> str:
    name = _str(value, where)
    if len(name) > _MAX_HEADER_LENGTH or not HEADER_NAME_RE.match(name):
        raise SpecError(where, "must be an HTTP header name in lower case")
    return name


def _cookie_name(value: Any, where: str) -> str:
    name = _str(value, where)
    if len(name) > _MAX_HEADER_LENGTH or not COOKIE_NAME_RE.match(name):
        raise SpecError(where, "must be a cookie name (an HTTP token)")
    return name


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


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise SpecError(where, "must be true or false")
    return value


def _number(
    value: Any, where: str, minimum: float, maximum: float, *, open_low: bool = False
) -> float:
    """A number in [minimum, maximum], or (minimum, maximum] when ``open_low``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SpecError(where, "must be a number")
    if value < minimum or (open_low and value == minimum):
        raise SpecError(where, f"must be {'above' if open_low else 'at least'} {minimum:g}")
    if value > maximum:
        raise SpecError(where, f"must be at most {maximum:g}")
    return float(value)


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
