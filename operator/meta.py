"""Names, labels and owner references shared by every child an InferenceService owns.

Every child is named ``NAME-<component>`` (``child_name``) except the stable Service, which
is ``NAME`` itself; every child carries ``child_labels`` and a controller ownerReference, so
the operator finds its children by label and Kubernetes garbage-collects them with their
InferenceService. The modules that render children (``builders``, ``router_objects``,
``gateway``) take these from here.
"""

from __future__ import annotations

from typing import Any

from sluice.contracts.api import API_VERSION, KIND
from sluice.contracts.labels import (
    LABEL_APP_COMPONENT,
    LABEL_COMPONENT,
    LABEL_INFERENCESERVICE,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    MANAGED_BY,
    PREDICTOR,
)
from sluice.operator.spec import InferenceService


def child_name(isvc: InferenceService, component: str) -> str:
    """The name of one child: ``NAME-<component>`` (``predictor``, a variant, ``router``)."""
    return f"{isvc.name}-{component}"


def child_labels(isvc: InferenceService) -> dict[str, str]:
    """Labels on every child object; the first one finds all children of an InferenceService."""
    return {
        LABEL_INFERENCESERVICE: isvc.name,
        LABEL_NAME: isvc.name,
        LABEL_MANAGED_BY: MANAGED_BY,
    }


def selector_labels(isvc: InferenceService, component: str = PREDICTOR) -> dict[str, str]:
    """Labels selecting one component's pods (immutable in a Deployment: keep them minimal)."""
    return {LABEL_INFERENCESERVICE: isvc.name, LABEL_COMPONENT: component}


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


def metadata(isvc: InferenceService, name: str, *, component: str) -> dict[str, Any]:
    """A child's metadata: its name, namespace, labels and owner reference."""
    return {
        "name": name,
        "namespace": isvc.namespace,
        "labels": {**child_labels(isvc), LABEL_APP_COMPONENT: component},
        "ownerReferences": [owner_reference(isvc)],
    }
