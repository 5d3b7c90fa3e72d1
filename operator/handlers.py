"""The thin kopf layer: which changes wake the reconciler, and kopf's settings.

Built by ``running.py`` at start-up (nothing registers at import time). Every handler only
names the InferenceService to reconcile and hands over to ``Reconciler.reconcile``; the one
translation done here is the operator's ``TemporaryError`` into kopf's, so kopf retries it.

What wakes the reconciler:
  * the InferenceService itself: on resume (operator start), create, and spec update;
  * its children (Deployments, Services) and their pods, on any change: drift repair and
    status. kopf watches them with a server-side label selector, so the operator sees only
    objects labelled ``serving.sluice.dev/inferenceservice``; pods only wake it when the
    scheduler marks one unschedulable (readiness reaches it through the Deployment's status).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import kopf

from . import errors, spec
from .builders import LABEL_INFERENCESERVICE
from .reconcile import Reconciler

ISVC = (spec.API_VERSION, spec.PLURAL)
# The (kopf selector, label selector) of every child kind the operator watches.
CHILDREN: tuple[tuple[str, str], ...] = (("apps/v1", "deployments"), ("v1", "services"))
PODS = ("v1", "pods")
# Annotations under the project's own prefix keep kopf's bookkeeping (the last handled spec)
# out of status and clearly labelled.
KOPF_PREFIX = "kopf.serving.sluice.dev"
WORKERS = 16


def configure(settings: kopf.OperatorSettings, *, namespaced: bool) -> None:
    """Adjust kopf to a controller that owns its children through ownerReferences;
    ``namespaced`` when the operator serves a fixed list of namespaces."""
    # Serving named namespaces, kopf would list and watch all Namespaces to see them come and
    # go (RBAC the operator otherwise never needs) and wait out retries when refused. The
    # names are exact, so skip that; resources are then discovered once at start-up.
    settings.scanning.disabled = namespaced
    # Nothing lives outside the cluster, so no finalizer: deletion is never blocked, and the
    # garbage collector removes children through their ownerReferences. (kopf adds its
    # finalizer only for deletion handlers, timers and daemons; none are registered.)
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=KOPF_PREFIX, key="last-handled-configuration"
    )
    # The reconciler posts its own events about what it did; kopf's per-handler events
    # ("Handler succeeded") would double every write for no reader's benefit.
    settings.posting.enabled = False
    for group_version, plural in (*CHILDREN, PODS):
        settings.watching.label_selectors[group_version, plural] = LABEL_INFERENCESERVICE
    # Handlers are synchronous and mostly wait on the API server: more threads than cores.
    settings.execution.max_workers = WORKERS
    # Operator-level retries of a failed watch connection; handlers retry on their own.
    settings.watching.reconnect_backoff = 1.0
    settings.networking.error_backoffs = [1, 2, 5, 10]


def build_registry(
    reconciler: Reconciler, credentials: Callable[[], dict[str, Any]]
) -> kopf.OperatorRegistry:
    """A registry with the InferenceService and children handlers bound to ``reconciler``;
    kopf logs in with ``credentials()``, the reconciler's own client's connection."""
    registry = kopf.OperatorRegistry()

    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(**credentials())

    def reconcile(namespace: str, name: str) -> None:
        try:
            reconciler.reconcile(namespace, name)
        except errors.TemporaryError as exc:
            raise kopf.TemporaryError(str(exc), delay=exc.delay) from None
        except errors.PermanentError as exc:
            raise kopf.PermanentError(str(exc)) from None

    def on_isvc(namespace: str | None, name: str, **_: Any) -> None:
        if namespace:
            reconcile(namespace, name)

    def on_child(namespace: str | None, labels: Mapping[str, str], type: str, **_: Any) -> None:
        # No type is the initial listing at start-up, already covered by the resume handler.
        owner = labels.get(LABEL_INFERENCESERVICE)
        if type and owner and namespace:
            try:
                reconcile(namespace, owner)
            except (kopf.TemporaryError, kopf.PermanentError) as exc:
                # kopf does not retry event handlers; the reconciler's retry loop does.
                logging.getLogger(__name__).warning("%s/%s: %s", namespace, owner, exc)

    kopf.on.login(registry=registry)(login)
    kopf.on.resume(*ISVC, registry=registry, id="reconcile")(on_isvc)
    kopf.on.create(*ISVC, registry=registry, id="reconcile")(on_isvc)
    kopf.on.update(*ISVC, field="spec", registry=registry, id="reconcile")(on_isvc)
    for group_version, plural in CHILDREN:
        kopf.on.event(group_version, plural, registry=registry, id=f"child-{plural}")(on_child)
    kopf.on.event(*PODS, registry=registry, id="pod-scheduling", when=_unschedulable)(on_child)
    return registry


def _unschedulable(status: kopf.Status, **_: Any) -> bool:
    """Whether the scheduler has marked a pod unschedulable: only then does a pod event matter."""
    return any(
        c.get("type") == "PodScheduled" and c.get("status") == "False"
        for c in status.get("conditions") or []
    )
