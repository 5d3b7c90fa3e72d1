"""The router's children: its Deployment, its route table, and exactly the access it needs.

Pure functions. Router pods (component ``router``) run ``sluice-router``: Envoy plus the
control plane that feeds it. The control plane reads the InferenceService's route table from
the ConfigMap ``NAME-router`` (``routes.CONFIGMAP_KEY``, written here) and the variants'
EndpointSlices through the API, as the ServiceAccount ``NAME-router``, whose Role grants
reading that one ConfigMap and the namespace's EndpointSlices and nothing else. Pods listen
on the runtime's port numbers and names (``ports.HTTP``, ``ports.GRPC``), so the stable
Service targets router or runtime pods alike.

A deleted router pod keeps serving for ``pods.DEREGISTER_SECONDS`` while endpoints drop it
everywhere, then drains: Envoy stops taking connections and answers what it accepted within
``DRAIN_SECONDS``.
"""

from __future__ import annotations

from typing import Any

from sluice.contracts import ports, routes
from sluice.contracts.api import GROUP
from sluice.contracts.labels import LABEL_APP_COMPONENT, ROUTER
from sluice.operator.meta import child_labels, child_name, metadata, selector_labels
from sluice.operator.pods import DEREGISTER_SECONDS, Images, container_security
from sluice.operator.spec import InferenceService

CONTAINER = "router"
# Two pods, so one can restart or move while the other serves.
REPLICAS = 2
# The router image's own user.
RUN_AS_USER = 10001
CONFIG_DIR = "/var/run/sluice-router"
# Envoy answers what it accepted within this, after it stops taking connections.
DRAIN_SECONDS = 10
TERMINATION_GRACE_SECONDS = DEREGISTER_SECONDS + DRAIN_SECONDS + 5
# On the route table's ConfigMap: when its table last changed (RFC 3339). A variant leaving
# the table keeps its pods until every router has served the table without it this long, so
# no request is routed to a Service whose endpoints are already gone.
ANNOTATION_ROUTES_CHANGED = f"{GROUP}/routes-changed"
ROUTES_SETTLE_SECONDS = 3.0


def name(isvc: InferenceService) -> str:
    """The name of the router's Deployment, ServiceAccount, Role, RoleBinding and ConfigMap."""
    return child_name(isvc, ROUTER)


def router_objects(
    isvc: InferenceService, table: routes.RouteTable, images: Images
) -> list[dict[str, Any]]:
    """The router's children in apply order: its identity and access before its pods, so
    the pods never start without them."""
    return [
        service_account(isvc),
        role(isvc),
        role_binding(isvc),
        config_map(isvc, table),
        deployment(isvc, images),
    ]


def service_account(isvc: InferenceService) -> dict[str, Any]:
    """The router pods' identity."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(isvc, name(isvc), component=ROUTER),
        "automountServiceAccountToken": False,
    }


def role(isvc: InferenceService) -> dict[str, Any]:
    """Read the route table's ConfigMap and the namespace's EndpointSlices; nothing else."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": metadata(isvc, name(isvc), component=ROUTER),
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": [name(isvc)],
                "verbs": ["get", "list", "watch"],
            },
            {
                "apiGroups": ["discovery.k8s.io"],
                "resources": ["endpointslices"],
                "verbs": ["list", "watch"],
            },
        ],
    }


def role_binding(isvc: InferenceService) -> dict[str, Any]:
    """Grants the Role to the router's ServiceAccount."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": metadata(isvc, name(isvc), component=ROUTER),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name(isvc)},
        "subjects": [{"kind": "ServiceAccount", "name": name(isvc), "namespace": isvc.namespace}],
    }


def config_map(isvc: InferenceService, table: routes.RouteTable) -> dict[str, Any]:
    """The route table, as the router reads it."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(isvc, name(isvc), component=ROUTER),
        "data": {routes.CONFIGMAP_KEY: routes.to_json(table)},
    }


def deployment(isvc: InferenceService, images: Images) -> dict[str, Any]:
    """The router pods: ``sluice-router`` on the runtime's ports, ready once Envoy serves."""
    pod_labels = {**child_labels(isvc), **selector_labels(isvc, ROUTER)}
    pod_labels[LABEL_APP_COMPONENT] = ROUTER
    container = {
        "name": CONTAINER,
        "image": images.router,
        "args": [
            "--namespace",
            isvc.namespace,
            "--routes-configmap",
            name(isvc),
            "--config-dir",
            CONFIG_DIR,
            "--drain-seconds",
            str(DRAIN_SECONDS),
        ],
        "ports": [
            {"name": ports.HTTP, "containerPort": ports.HTTP_PORT, "protocol": "TCP"},
            {"name": ports.GRPC, "containerPort": ports.GRPC_PORT, "protocol": "TCP"},
            {
                "name": ports.ROUTER_METRICS,
                "containerPort": ports.ROUTER_METRICS_PORT,
                "protocol": "TCP",
            },
        ],
        "readinessProbe": {
            "httpGet": {"path": ports.ROUTER_READY_PATH, "port": ports.ROUTER_METRICS},
            "periodSeconds": 2,
            "timeoutSeconds": 2,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "tcpSocket": {"port": ports.ROUTER_METRICS},
            "periodSeconds": 10,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        "lifecycle": {"preStop": {"sleep": {"seconds": DEREGISTER_SECONDS}}},
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(isvc, name(isvc), component=ROUTER),
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": selector_labels(isvc, ROUTER)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {
                        "kubectl.kubernetes.io/default-container": CONTAINER,
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(ports.ROUTER_METRICS_PORT),
                        "prometheus.io/path": ports.METRICS_PATH,
                    },
                },
                "spec": {
                    "serviceAccountName": name(isvc),
                    "automountServiceAccountToken": True,
                    "enableServiceLinks": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUN_AS_USER,
                        "runAsGroup": RUN_AS_USER,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [
                        {"name": "config", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                    ],
                    "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
                    "affinity": {
                        "podAntiAffinity": {
                            "preferredDuringSchedulingIgnoredDuringExecution": [
                                {
                                    "weight": 100,
                                    "podAffinityTerm": {
                                        "labelSelector": {
                                            "matchLabels": selector_labels(isvc, ROUTER)
                                        },
                                        "topologyKey": "kubernetes.io/hostname",
                                    },
                                }
                            ]
                        }
                    },
                },
            },
        },
    }
