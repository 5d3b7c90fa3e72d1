"""The thin kopf layer: feed the watch cache from kopf's watches and queue keys to reconcile.

Built by ``running.py`` at start-up (nothing registers at import time). kopf watches the
InferenceServices and, with a server-side label selector, the Deployments, Services, Pods,
ServiceAccounts, ConfigMaps, Roles and RoleBindings labelled
``serving.sluice.dev/inferenceservice``. For each of those kinds two handlers run;
neither reconciles (the workers of ``workqueue.py`` do) and neither calls the API:

  * an index handler puts every listed or changed object into the ``Cache`` and queues its
    InferenceService's key when what the cache keeps of it changed (so a pod turning Ready
    wakes it, while a probe's timestamps, which the cache does not keep, wake nobody). kopf
    runs index handlers first and holds every other handler until each watched kind has
    been listed once;
  * an event handler forgets deleted objects (index handlers never see deletions) and queues
    the key. Its first call therefore means the initial listings are all in the cache:
    it sets ``synced``, and ``running.py`` starts the workers only then, so no run mistakes
    a child not yet listed for a missing one.

Only index and event handlers are registered: kopf keeps state (an annotation PATCHed onto
every object) for its change-detecting handlers (create, update, resume) alone, so kopf itself
never writes to the cluster.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import kopf
from sluice.contracts.labels import LABEL_INFERENCESERVICE

from . import spec
from .cache import Cache
from .reconcile import Key
from .workqueue import WorkQueue

ISVC = (spec.API_VERSION, spec.PLURAL)
# The (group/version, plural) of every child kind and of pods, watched by label.
LABELLED: tuple[tuple[str, str], ...] = (
    ("apps/v1", "deployments"),
    ("v1", "services"),
    ("v1", "pods"),
    ("v1", "serviceaccounts"),
    ("v1", "configmaps"),
    ("rbac.authorization.k8s.io/v1", "roles"),
    ("rbac.authorization.k8s.io/v1", "rolebindings"),
)


def configure(settings: kopf.OperatorSettings, *, namespaced: bool) -> None:
    """Adjust kopf to a controller that only watches: ``namespaced`` when the operator
    serves a fixed list of namespaces."""
    # Serving named namespaces, kopf would list and watch all Namespaces to see them come and
    # go (RBAC the operator otherwise never needs) and wait out retries when refused. The
    # names are exact, so skip that; resources are then discovered once at start-up.
    settings.scanning.disabled = namespaced
    # The reconciler posts its own events about transitions; kopf's per-handler events
    # would add a write per watch event for no reader's benefit.
    settings.posting.enabled = False
    for group_version, plural in LABELLED:
        settings.watching.label_selectors[group_version, plural] = LABEL_INFERENCESERVICE
    # Operator-level retries of a failed watch connection.
    settings.watching.reconnect_backoff = 1.0
    settings.networking.error_backoffs = [1, 2, 5, 10]


def build_registry(
    cache: Cache,
    queue: WorkQueue[Key],
    synced: asyncio.Event,
    credentials: Callable[[], dict[str, Any]],
) -> kopf.OperatorRegistry:
    """A registry whose handlers keep ``cache`` current and add keys to ``queue``; ``synced``
    is set once the initial listings are cached. kopf logs in with ``credentials()``, the
    operator's own client's connection."""
    registry = kopf.OperatorRegistry()

    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(**credentials())

    kopf.on.login(registry=registry)(login)
    _watch(registry, ISVC, cache, queue, synced, owner=_own_key)
    for resource in LABELLED:
        _watch(registry, resource, cache, queue, synced, owner=_owner_key)
    return registry


def _watch(
    registry: kopf.OperatorRegistry,
    resource: tuple[str, str],
    cache: Cache,
    queue: WorkQueue[Key],
    synced: asyncio.Event,
    *,
    owner: Callable[[Mapping[str, Any]], Key | None],
) -> None:
    """Register the index and event handlers of one watched kind."""
    plural = resource[1]

    async def index(body: kopf.Body, **_: Any) -> None:
        key = owner(body)
        if cache.put(body) and key is not None:
            queue.add(key)

    async def event(type: str | None, body: kopf.Body, **_: Any) -> None:
        synced.set()
        if type != "DELETED":
            return
        meta = body["metadata"]
        cache.remove(body["apiVersion"], body["kind"], meta["namespace"], meta["name"])
        key = owner(body)
        if key is not None:
            queue.add(key)

    kopf.index(*resource, registry=registry, id=f"cache-{plural}")(index)
    kopf.on.event(*resource, registry=registry, id=f"deleted-{plural}")(event)


def _own_key(body: Mapping[str, Any]) -> Key:
    """The key of an InferenceService."""
    meta = body["metadata"]
    return meta["namespace"], meta["name"]


def _owner_key(body: Mapping[str, Any]) -> Key | None:
    """The key of the InferenceService a labelled object belongs to."""
    meta = body["metadata"]
    owner = (meta.get("labels") or {}).get(LABEL_INFERENCESERVICE)
    return None if owner is None else (meta["namespace"], owner)
