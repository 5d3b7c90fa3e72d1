"""The reconcile function for one InferenceService: observe, compute, diff, act, report.

Called by the workers of ``workqueue.py`` (started in ``running.py``) with one key, a
(namespace, name) pair, never for the same key in two threads at once. Every run reads the
object and its children from the watch cache (``cache.py``) rather than the API server, so a
run that finds nothing to change sends no request at all, and runs are level-based: any number
in a row converge on the same state.

A run applies each child whose desired form differs from the cached one (server-side apply,
one field manager), deletes children of the managed kinds that carry the InferenceService's
label and its controller ownerReference but are no longer desired, and writes status when it
changed. Events are posted for condition transitions only (``status.EVENTS``), not per write.
It returns a ``Result`` saying when to look again, as controller-runtime's reconcilers do.

A run creates at most one missing child and, when more are missing, asks to run again at
once, behind the keys already queued: a burst of new InferenceServices gets every workload
(the Deployment, listed first) before any gets its Service. The API server allocates Service
ClusterIPs one at a time under a server-wide lock, so in a burst a Service create waits
seconds; created in the same run, it would hold the worker while other InferenceServices'
Deployments, the slow part to come up, wait behind it. Status is written by the run that
finds nothing left to create, so a new object still costs one status write.

A run also hands the runtime pods to a ``ProviderSource`` (``providers.Providers`` in the
operator), which asks each Ready pod once for the execution provider it really uses, in the
background, and says what the pods have answered so far: a run never waits for a pod, and an
answer queues the InferenceService again. Triton's pods report no provider, so none is asked.
"""

from __future__ import annotations

import datetime
import logging
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from . import builders, spec, status
from .cache import Cache
from .diffing import needs_apply, stamped
from .errors import PermanentError, TemporaryError
from .pods import DEFAULT_IMAGES, Images

REPORTING_CONTROLLER = "serving.sluice.dev/sluice-operator"
# Events.k8s.io/v1 notes are limited to 1 KiB.
NOTE_LIMIT = 1024

log = logging.getLogger(__name__)

Body = dict[str, Any]
Key = tuple[str, str]  # (namespace, name) of an InferenceService
Clock = Callable[[], datetime.datetime]


@dataclass(frozen=True)
class Result:
    """When to look at the object again without waiting for an event: ``requeue_after``
    seconds, or None for "on the next event or resync"."""

    requeue_after: float | None = None


class Writer(Protocol):
    """The API verbs a run uses: ``kube.Kube`` in the operator, an in-memory fake in tests.
    Reads come from the cache, so there are none here."""

    def apply(self, obj: Body) -> Body: ...

    def delete(
        self, api_version: str, kind: str, namespace: str, name: str, *, uid: str
    ) -> None: ...

    def patch_status(
        self, api_version: str, kind: str, namespace: str, name: str, status: Body
    ) -> Body: ...

    def create(self, obj: Body) -> Body: ...


class ProviderSource(Protocol):
    """What the runtime pods say of their execution providers: ``providers.Providers`` in
    the operator. ``observe`` returns at once, per variant the providers its pods reported."""

    def observe(
        self, key: Key, model: str, pods: Iterable[Mapping[str, Any]]
    ) -> Mapping[str, tuple[str, ...]]: ...

    def forget(self, key: Key) -> None: ...


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Reconciler:
    """Reconciles InferenceServices from ``cache``, writing through ``kube``; runtime pods run
    ``images`` where a spec names no image. Without ``providers`` nothing is learned of the
    pods' execution providers, and ``status.provider`` stays as it is."""

    def __init__(
        self,
        kube: Writer,
        cache: Cache,
        *,
        images: Images = DEFAULT_IMAGES,
        clock: Clock = _utc_now,
        instance: str = "",
        providers: ProviderSource | None = None,
    ) -> None:
        self._kube = kube
        self._cache = cache
        self._providers = providers
        self._images = images
        self._clock = clock
        self._instance = instance or socket.gethostname()

    def reconcile(self, key: Key) -> Result:
        """Bring one InferenceService's children and status in line with its spec.

        Raises ``TemporaryError`` when the run should be retried; a spec or a child the API
        server rejects is reported in status and events instead of raised.
        """
        namespace, name = key
        body = self._cache.get(spec.API_VERSION, spec.KIND, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            if self._providers is not None:
                self._providers.forget(key)
            return Result()  # gone or going: owner references let the garbage collector finish
        generation = int(body["metadata"].get("generation", 0))
        try:
            isvc = spec.parse(body)
        except spec.SpecError as exc:
            self._report(body, status.Observed(generation, spec_error=str(exc)))
            return Result()
        observed = self._converge(isvc)
        if observed is None:
            return Result(requeue_after=0.0)
        self._report(body, observed)
        return Result()

    def _converge(self, isvc: spec.InferenceService) -> status.Observed | None:
        """Apply each child that differs from its desired form, delete the ones no longer
        desired, and observe the results; None when a missing child was left for the next
        run because this one already created another."""
        children = [stamped(child) for child in builders.desired_children(isvc, self._images)]
        current: dict[tuple[str, str], Body | None] = {}
        apply_error: str | None = None
        created = False
        for want in children:
            kind, name = want["kind"], want["metadata"]["name"]
            have = self._cache.get(want["apiVersion"], kind, isvc.namespace, name)
            if have is None and created:
                return None
            if needs_apply(want, have):
                try:
                    applied = self._kube.apply(want)
                except PermanentError as exc:
                    apply_error = f"{kind} {name}: {exc}"
                else:
                    created = created or have is None
                    have = applied
                    self._cache.put(have)
            current[(kind, name)] = have
        self._prune(isvc, {(c["apiVersion"], c["kind"], c["metadata"]["name"]) for c in children})
        workloads: dict[str, status.Workload] = {}
        for want in children:
            if want["kind"] == "Deployment":
                have = current[("Deployment", want["metadata"]["name"])]
                workloads[builders.variant_of(want)] = _workload(want, have)
        # Status reads pods only while a rollout is unfinished (they say why it is stuck);
        # the providers are learned from them all along.
        rolled_out, _ = status.rollout(workloads)
        pods = self._cache.owned("v1", "Pod", isvc.namespace, isvc.name)
        replicas = sum(w.replicas for w in workloads.values())
        return status.Observed(
            isvc.generation,
            apply_error=apply_error,
            workloads=workloads,
            gpus=builders.total_gpus(isvc, replicas),
            url=builders.service_url(isvc),
            pods=() if rolled_out else tuple(pods),
            providers=self._observe_providers(isvc, pods),
        )

    def _observe_providers(
        self, isvc: spec.InferenceService, pods: list[Body]
    ) -> Mapping[str, tuple[str, ...]] | None:
        """The providers each variant's pods reported so far; None for an engine whose
        pods report none (Triton's metadata has no such field), so status shows none."""
        key = (isvc.namespace, isvc.name)
        if isvc.runtime.engine == "triton":
            if self._providers is not None:
                self._providers.forget(key)
            return None
        if self._providers is None:
            return {}
        return self._providers.observe(key, isvc.model.name, pods)

    def _prune(self, isvc: spec.InferenceService, desired: set[tuple[str, str, str]]) -> None:
        """Delete children of the managed kinds that this InferenceService controls (label
        and ownerReference uid) but no longer desires."""
        for api_version, kind in builders.MANAGED_KINDS:
            for obj in self._cache.owned(api_version, kind, isvc.namespace, isvc.name):
                meta = obj["metadata"]
                if (api_version, kind, meta["name"]) in desired or not _controlled_by(
                    meta, isvc.uid
                ):
                    continue
                log.info("%s/%s: deleting %s %s", isvc.namespace, isvc.name, kind, meta["name"])
                self._kube.delete(api_version, kind, isvc.namespace, meta["name"], uid=meta["uid"])
                self._cache.remove(api_version, kind, isvc.namespace, meta["name"])

    def _report(self, body: Body, observed: status.Observed) -> None:
        """Write status when it changed, then post an event for each notable transition."""
        old: Mapping[str, Any] = body.get("status") or {}
        new = status.compute(observed, old, self._clock().strftime("%Y-%m-%dT%H:%M:%SZ"))
        if all(old.get(key) == value for key, value in new.items()):
            return
        meta = body["metadata"]
        patched = self._kube.patch_status(
            spec.API_VERSION, spec.KIND, meta["namespace"], meta["name"], new
        )
        self._cache.put(patched)
        for event_type, reason, message in status.events(old, new):
            self._event(body, event_type, reason, message)

    def _event(self, body: Body, event_type: str, reason: str, note: str) -> None:
        """Post an events.k8s.io/v1 Event about the InferenceService.

        Events are a courtesy to humans, like client-go's recorder: a failure to post one is
        logged and does not fail the reconcile that has already done its work.
        """
        meta = body["metadata"]
        event = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}-", "namespace": meta["namespace"]},
            "eventTime": self._clock().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "reportingController": REPORTING_CONTROLLER,
            "reportingInstance": self._instance[:128],
            "action": "Reconcile",
            "reason": reason,
            "type": event_type,
            "note": note[:NOTE_LIMIT],
            "regarding": {
                "apiVersion": body["apiVersion"],
                "kind": body["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
        }
        log.info("%s/%s: %s: %s", meta["namespace"], meta["name"], reason, note)
        try:
            self._kube.create(event)
        except (TemporaryError, PermanentError) as exc:
            log.warning(
                "could not post event %s for %s/%s: %s",
                reason,
                meta["namespace"],
                meta["name"],
                exc,
            )


def _workload(want: Mapping[str, Any], have: Mapping[str, Any] | None) -> status.Workload:
    """A variant's Deployment with the replicas wanted of it: the spec's, or, when an
    autoscaler owns the count (the desired object leaves it out), the Deployment's own."""
    replicas = want["spec"].get("replicas")
    if replicas is None:
        replicas = ((have or {}).get("spec") or {}).get("replicas", 1)
    return status.Workload(int(replicas), have)


def _controlled_by(meta: Mapping[str, Any], uid: str) -> bool:
    """Whether the object's controller ownerReference is the InferenceService ``uid``."""
    return any(
        ref.get("uid") == uid and ref.get("controller") for ref in meta.get("ownerReferences") or []
    )
