"""Desired child objects of an InferenceService, as plain dicts ready for server-side apply.

Pure functions: a parsed ``InferenceService`` in, full Kubernetes objects out; no API calls.
The controller applies every object ``desired_children`` returns with one field manager, so
running it twice changes nothing. Every child carries the same labels and a controller owner
reference, so Kubernetes garbage-collects it with its InferenceService.

Children today, for an InferenceService NAME:

- Deployment ``NAME-predictor``: the runtime pods of the default variant (``pods.py``).
- Service ``NAME``: the stable address clients use, selecting the predictor pods.

Child names come from ``child_name`` alone, so further variants (``NAME-<variant>``) and the
router (``NAME-router``) extend the same scheme. ``MANAGED_KINDS`` lists every kind this module
can emit: the reconciler deletes an object of those kinds that it owns but that is no longer
desired. A Deployment leaves its replica count out when an autoscaler owns it
(``autoscaled``), so applying it never undoes the autoscaler's decision.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from sluice.contracts import ports
from sluice.contracts.api import API_VERSION, KIND
from sluice.contracts.labels import (
    ANNOTATION_SPEC_HASH,
    LABEL_APP_COMPONENT,
    LABEL_COMPONENT,
    LABEL_INFERENCESERVICE,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    MANAGED_BY,
    PREDICTOR,
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
from sluice.operator.spec import InferenceService

# (apiVersion, kind) of every child kind ``desired_children`` can return.
MANAGED_KINDS: tuple[tuple[str, str], ...] = (("apps/v1", "Deployment"), ("v1", "Service"))


def child_name(isvc: InferenceService, component: str) -> str:
    """The name of one child: ``NAME-<component>`` (``predictor``, later variants, ``router``)."""
    return f"{isvc.name}-{component}"


def deployment_name(isvc: InferenceService, variant: str = PREDICTOR) -> str:
    """The name of a variant's Deployment; the default variant is ``predictor``."""
    return child_name(isvc, variant)


def service_name(isvc: InferenceService) -> str:
    """The name of the stable Service clients address: the InferenceService's own name."""
    return isvc.name


def service_url(isvc: InferenceService) -> str:
    """The in-cluster URL of the InferenceService, reported in ``status.url``."""
    return f"http://{service_name(isvc)}.{isvc.namespace}.svc.cluster.local"


def total_gpus(isvc: InferenceService, replicas: int) -> int:
    """GPUs requested by ``replicas`` runtime pods, reported in ``status.gpus``."""
    return isvc.resources.gpus * replicas


def autoscaled(isvc: InferenceService) -> bool:
    """Whether an autoscaler, not ``spec.replicas``, decides how many pods run."""
    return isvc.autoscaling is not None


def variant_of(child: dict[str, Any]) -> str:
    """The variant (``predictor``, a canary, an A/B variant) a child object belongs to."""
    return str(child["metadata"]["labels"][LABEL_APP_COMPONENT])


def child_labels(isvc: InferenceService) -> dict[str, str]:
    """Labels on every child object; the first one finds all children of an InferenceService."""
    return {
        LABEL_INFERENCESERVICE: isvc.name,
        LABEL_NAME: isvc.name,
        LABEL_MANAGED_BY: MANAGED_BY,
    }


def selector_labels(isvc: InferenceService, variant: str = PREDICTOR) -> dict[str, str]:
    """Labels selecting one variant's pods (immutable in a Deployment: keep them minimal)."""
    return {LABEL_INFERENCESERVICE: isvc.name, LABEL_COMPONENT: variant}


def owner_reference(isvc: InferenceService) -> dict[str, Any]:
    """The controller owner reference every child carries."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": isvc.name,
        "uid": isvc.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


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


def predictor_deployment(isvc: InferenceService, images: Images) -> dict[str, Any]:
    """The Deployment running the default variant's runtime pods, on ``images`` where the
    spec names no image."""
    variant = PREDICTOR
    pod_labels = {**child_labels(isvc), **selector_labels(isvc, variant)}
    pod_labels[LABEL_APP_COMPONENT] = variant
    # Left out, the field is no longer this field manager's: server-side apply then keeps
    # whatever count the autoscaler sets.
    replicas = {} if autoscaled(isvc) else {"replicas": isvc.replicas}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(isvc, deployment_name(isvc, variant), component=variant),
        "spec": {
            **replicas,
            "progressDeadlineSeconds": PROGRESS_DEADLINE_SECONDS,
            "selector": {"matchLabels": selector_labels(isvc, variant)},
            # Never drop below the serving capacity during a rollout; GPUs are scarce, so add
            # one pod at a time.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
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
            },
        },
    }


def predictor_service(isvc: InferenceService) -> dict[str, Any]:
    """The ClusterIP Service at the InferenceService's stable address."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(isvc, service_name(isvc), component=PREDICTOR),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(isvc),
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


def desired_children(
    isvc: InferenceService, images: Images = DEFAULT_IMAGES
) -> list[dict[str, Any]]:
    """Every object the InferenceService should own, in apply order; pods run ``images``
    (the operator's ``--runtime-image`` and ``--triton-image``) unless the spec names one."""
    return [predictor_deployment(isvc, images), predictor_service(isvc)]


def _metadata(isvc: InferenceService, name: str, *, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": isvc.namespace,
        "labels": {**child_labels(isvc), LABEL_APP_COMPONENT: component},
        "ownerReferences": [owner_reference(isvc)],
    }
