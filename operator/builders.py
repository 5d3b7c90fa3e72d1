"""Desired child objects of an InferenceService, as plain dicts ready for server-side apply.

Pure functions: a parsed ``InferenceService`` and a ``Plan`` in, full Kubernetes objects out;
no API calls. The controller applies every object ``desired_children`` returns with one field
manager, so running it twice changes nothing. Every child carries the same labels and a
controller owner reference (``meta.py``), so Kubernetes garbage-collects it with its
InferenceService.

Children, for an InferenceService NAME:

- Deployment ``NAME-predictor``: the main model's runtime pods (``pods.py``); during a canary
  rollout it keeps the pod template it runs (``Plan.stable_template``) until promotion.
- Deployment ``NAME-canary`` during a rollout, sized by its traffic share; Deployment
  ``NAME-<variant>`` for each A/B variant.
- When traffic is split: a Service ``NAME-<component>`` per variant, and either the router
  (``router_objects.py``) or an HTTPRoute (``gateway.py``).
- Service ``NAME``: the stable address clients use. It selects the router pods once one is
  ready to serve (``Plan.service_to_router``), else the main model's pods.

``MANAGED_KINDS`` lists every kind this module can emit: the reconciler deletes an object of
those kinds that it owns but that is no longer desired. A Deployment leaves its replica count
out when an autoscaler owns it (``autoscaled``), so applying it never undoes the
autoscaler's decision.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sluice.contracts import ports, routes
from sluice.contracts.labels import ANNOTATION_SPEC_HASH, LABEL_APP_COMPONENT, PREDICTOR, ROUTER
from sluice.operator import gateway, router_objects, routing
from sluice.operator.meta import (
    child_labels,
    child_name,
    metadata,
    owner_reference,
    selector_labels,
)
from sluice.operator.pods import (
    DEFAULT_IMAGES,
    PROGRESS_DEADLINE_SECONDS,
    RUNTIME_CONTAINER,
    Images,
    metrics_port,
    plain,
    pod_spec,
)
from sluice.operator.spec import InferenceService, VariantSpec

# Re-exported: callers name children through this module.
__all__ = ["child_labels", "child_name", "owner_reference", "selector_labels"]

# (apiVersion, kind) of every child kind ``desired_children`` can return.
MANAGED_KINDS: tuple[tuple[str, str], ...] = (
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("v1", "ServiceAccount"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("v1", "ConfigMap"),
    # Watched by no handler: pruned when this process applied them (docs/gateway-api.md).
    *gateway.KINDS,
)


@dataclass(frozen=True)
class Plan:
    """What the reconciler decided beyond the spec: the rollout's state and the router's.

    ``stable_template``: the pod template the main model's Deployment keeps while a canary
    rollout runs (None: render it from the spec). ``canary_replicas`` 0: no canary, else its
    Deployment's size with the spec's pods, taking ``canary_weight`` percent of the main
    model's traffic. ``router``: the router's children are wanted (``routing.router_in_front``,
    or still serving the stable Service while it moves back). ``service_to_router``: the
    stable Service selects the router pods (once they serve).
    """

    stable_template: Mapping[str, Any] | None = None
    canary_replicas: int = 0
    canary_weight: int = 0
    router: bool = False
    service_to_router: bool = False
    stable_replaces_in_place: bool = False


def deployment_name(isvc: InferenceService, component: str = PREDICTOR) -> str:
    """The name of a component's Deployment; the main model's is ``predictor``."""
    return child_name(isvc, component)


def service_name(isvc: InferenceService) -> str:
    """The name of the stable Service clients address: the InferenceService's own name."""
    return isvc.name


def service_url(isvc: InferenceService) -> str:
    """The in-cluster URL of the InferenceService, reported in ``status.url``."""
    return f"http://{service_name(isvc)}.{isvc.namespace}.svc.cluster.local"


def total_gpus(isvc: InferenceService, replicas: Mapping[str, int]) -> int:
    """GPUs requested by the runtime pods, ``replicas`` per component, for ``status.gpus``:
    a variant's pods ask for its own count, the main model's and a canary's for the spec's."""
    per_pod = {v.name: v.resources.gpus for v in isvc.variants}
    return sum(per_pod.get(c, isvc.resources.gpus) * n for c, n in replicas.items())


def autoscaled(isvc: InferenceService) -> bool:
    """Whether an autoscaler, not ``spec.replicas``, decides how many pods run."""
    return isvc.autoscaling is not None


def variant_of(child: dict[str, Any]) -> str:
    """The variant (``predictor``, a canary, an A/B variant) a child object belongs to."""
    return str(child["metadata"]["labels"][LABEL_APP_COMPONENT])


def spec_hash(isvc: InferenceService) -> str:
    """A short digest of everything in the spec that shapes the runtime pods.

    Replicas are left out, so scaling never restarts pods. It is stamped on the pod template,
    so a spec change rolls the Deployment and pods show which spec they run.
    """
    shaping = {
        "model": dataclasses.asdict(isvc.model),
        "runtime": dataclasses.asdict(isvc.runtime),
        "resources": dataclasses.asdict(isvc.resources),
        "scheduling": {
            "node_selector": plain(isvc.scheduling.node_selector),
            "tolerations": [dataclasses.asdict(t) for t in isvc.scheduling.tolerations],
            "affinity": plain(isvc.scheduling.affinity),
            "priority_class_name": isvc.scheduling.priority_class_name,
        },
    }
    canonical = json.dumps(shaping, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def as_variant(isvc: InferenceService, variant: VariantSpec) -> InferenceService:
    """``isvc`` as an A/B variant runs it: the variant's model, runtime, resources,
    scheduling and replicas (its overrides already merged over the main model's)."""
    return dataclasses.replace(
        isvc,
        model=variant.model,
        runtime=variant.runtime,
        resources=variant.resources,
        scheduling=variant.scheduling,
        replicas=variant.replicas,
    )


def workload_deployment(
    isvc: InferenceService,
    images: Images,
    component: str = PREDICTOR,
    *,
    replicas: int | None = None,
    template: Mapping[str, Any] | None = None,
    in_place: bool = False,
) -> dict[str, Any]:
    """The Deployment running one component's runtime pods: ``isvc``'s pods on ``images``
    where the spec names no image, ``replicas`` of them (the spec's when None), or the given
    pod ``template`` as it is (a rollout holding the stable pods where they are). ``in_place``
    rolls one pod down before its replacement comes up, needing no spare GPU."""
    pod_labels = {**child_labels(isvc), **selector_labels(isvc, component)}
    pod_labels[LABEL_APP_COMPONENT] = component
    # Left out, the field is no longer this field manager's: server-side apply then keeps
    # whatever count the autoscaler sets.
    count = (
        {} if autoscaled(isvc) else {"replicas": isvc.replicas if replicas is None else replicas}
    )
    rendered = {
        "metadata": {
            "labels": pod_labels,
            "annotations": {
                ANNOTATION_SPEC_HASH: spec_hash(isvc),
                "kubectl.kubernetes.io/default-container": RUNTIME_CONTAINER,
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(metrics_port(isvc)),
                "prometheus.io/path": ports.METRICS_PATH,
            },
        },
        "spec": pod_spec(isvc, images),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(isvc, deployment_name(isvc, component), component=component),
        "spec": {
            **count,
            "progressDeadlineSeconds": PROGRESS_DEADLINE_SECONDS,
            "selector": {"matchLabels": selector_labels(isvc, component)},
            # Never drop below the serving capacity during a rollout; GPUs are scarce, so add
            # one pod at a time.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": (
                    {"maxUnavailable": 1, "maxSurge": 0}
                    if in_place
                    else {"maxUnavailable": 0, "maxSurge": 1}
                ),
            },
            "template": plain(template) if template is not None else rendered,
        },
    }


def service(isvc: InferenceService, name: str, component: str) -> dict[str, Any]:
    """A ClusterIP Service ``name`` in front of one component's pods, on the runtime's two
    ports by name (router pods name theirs alike)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(isvc, name, component=component),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(isvc, component),
            "ports": [
                {
                    "name": ports.HTTP,
                    "port": ports.SERVICE_HTTP_PORT,
                    "targetPort": ports.HTTP,
                    "protocol": "TCP",
                    "appProtocol": "http",
                },
                {
                    "name": ports.GRPC,
                    "port": ports.SERVICE_GRPC_PORT,
                    "targetPort": ports.GRPC,
                    "protocol": "TCP",
                    "appProtocol": "kubernetes.io/h2c",
                },
            ],
        },
    }


def stable_service(isvc: InferenceService, *, to_router: bool = False) -> dict[str, Any]:
    """The Service at the InferenceService's stable address: the router's pods or the main
    model's. Its labels name the main model either way, so switching changes the selector
    only."""
    found = service(isvc, service_name(isvc), PREDICTOR)
    if to_router:
        found["spec"]["selector"] = selector_labels(isvc, ROUTER)
    return found


def desired_children(
    isvc: InferenceService, images: Images = DEFAULT_IMAGES, plan: Plan | None = None
) -> list[dict[str, Any]]:
    """Every object the InferenceService should own, in apply order: the workloads first
    (their pods are the slow part), then their Services, the router, the stable Service.
    Pods run ``images`` (the operator's ``--runtime-image`` and friends) unless the spec names
    one. Raises ``SpecError`` when the spec's traffic cannot be routed."""
    plan = plan or Plan()
    workloads = [
        workload_deployment(
            isvc, images, template=plan.stable_template, in_place=plan.stable_replaces_in_place
        )
    ]
    if plan.canary_replicas:
        workloads.append(
            workload_deployment(isvc, images, routes.CANARY, replicas=plan.canary_replicas)
        )
    for variant in isvc.variants:
        workloads.append(workload_deployment(as_variant(isvc, variant), images, variant.name))
    children = list(workloads)
    if routing.splits_traffic(isvc) or plan.router:
        for workload in workloads:
            component = variant_of(workload)
            children.append(service(isvc, child_name(isvc, component), component))
        table = routing.route_table(isvc, plan.canary_weight if plan.canary_replicas else None)
        if plan.router:
            children += router_objects.router_objects(isvc, table, images)
        if isvc.traffic.provider == "GatewayAPI":
            children += gateway.routes(isvc, table)
    children.append(stable_service(isvc, to_router=plan.service_to_router))
    return children
