"""Helpers for the operator's integration tests: bounded waits and InferenceService access."""

from __future__ import annotations

from typing import Any

from kubernetes import client
from sluice.contracts.api import GROUP, PLURAL, VERSION
from sluice.contracts.labels import LABEL_INFERENCESERVICE as LABEL

from e2e.cluster.waiting import wait_for


def isvc_body(name: str, *, gpus: int = 1, replicas: int = 1, **spec: Any) -> dict[str, Any]:
    """A minimal InferenceService serving an ONNX model baked into the runtime image."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": "file:///models/mlp.onnx"},
            "resources": {"gpus": gpus},
            "replicas": replicas,
            **spec,
        },
    }


class Isvcs:
    """InferenceService verbs for one namespace, as cluster admin."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.namespace = namespace
        self.custom = client.CustomObjectsApi(api)
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)
        self.events = client.EventsV1Api(api)

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body
        )
        return created

    def get(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )
        return found

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            name,
            {"spec": spec},
            _content_type="application/merge-patch+json",
        )

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def condition(self, name: str, kind: str) -> dict[str, Any] | None:
        """The named status condition of an InferenceService, if reported."""
        for cond in (self.get(name).get("status") or {}).get("conditions") or []:
            if cond.get("type") == kind:
                found: dict[str, Any] = cond
                return found
        return None

    def wait_condition(
        self,
        name: str,
        kind: str,
        status: str,
        *,
        reason: str | None = None,
        timeout: float = 60,
    ) -> dict[str, Any]:
        """Wait until condition ``kind`` has ``status`` (and ``reason``) for the latest spec."""

        def probe() -> dict[str, Any] | None:
            body = self.get(name)
            generation = body["metadata"]["generation"]
            for cond in (body.get("status") or {}).get("conditions") or []:
                if (
                    cond.get("type") == kind
                    and cond.get("status") == status
                    and (reason is None or cond.get("reason") == reason)
                    and cond.get("observedGeneration") == generation
                ):
                    found: dict[str, Any] = cond
                    return found
            return None

        return wait_for(probe, timeout=timeout, what=f"{name} {kind}={status} {reason or ''}")

    def events_for(self, name: str) -> list[Any]:
        """events.k8s.io Events about the InferenceService ``name``."""
        listed = self.events.list_namespaced_event(
            self.namespace, field_selector=f"regarding.name={name}"
        )
        return [e for e in listed.items if e.regarding and e.regarding.kind == "InferenceService"]

    def children(self, name: str) -> tuple[list[Any], list[Any]]:
        """Deployments and Services labelled as children of ``name``."""
        selector = f"{LABEL}={name}"
        deployments = self.apps.list_namespaced_deployment(self.namespace, label_selector=selector)
        services = self.core.list_namespaced_service(self.namespace, label_selector=selector)
        return deployments.items, services.items
