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

from sluice.contracts import routes
from sluice.contracts.labels import (
    ANNOTATION_ROLLOUT_ACTION,
    ANNOTATION_SPEC_HASH,
    LABEL_COMPONENT,
    PREDICTOR,
    ROUTER,
)

from . import analysis, builders, rollout, router_metrics, router_objects, routing, spec, status
from .cache import Cache
from .diffing import needs_apply, stamped
from .errors import PermanentError, TemporaryError
from .pods import DEFAULT_IMAGES, Images

REPORTING_CONTROLLER = "serving.sluice.dev/sluice-operator"
ROUTES_CHANGED = router_objects.ANNOTATION_ROUTES_CHANGED
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

    def remove_annotation(
        self, api_version: str, kind: str, namespace: str, name: str, key: str
    ) -> Body: ...


class CanaryMetrics(Protocol):
    """Reads a canary's cumulative traffic counters now: from the router pods' metrics
    (``router_metrics.RouterMetrics`` in the operator), summed over ``pods``; None when any
    cannot be read."""

    def canary_sample(
        self, isvc: spec.InferenceService, pods: list[Body]
    ) -> analysis.Sample | None: ...


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
        metrics: CanaryMetrics | None = None,
    ) -> None:
        self._kube = kube
        self._cache = cache
        self._providers = providers
        self._metrics = metrics
        # The canary's counters when each analysis window began. In memory only: after a
        # restart, the step's window starts afresh.
        self._baselines = router_metrics.Baselines()
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
            decision = self._decide(isvc, body)
            plan, settle = self._plan(isvc, decision)
            wanted = builders.desired_children(isvc, self._images, plan)
            self._stamp_routes(isvc, wanted)
        except spec.SpecError as exc:
            self._report(body, status.Observed(generation, spec_error=str(exc)))
            return Result()
        stored = (body.get("status") or {}).get("rollout")
        observed = self._converge(isvc, wanted, decision.state.to_patch(stored))
        if observed is None:
            return Result(requeue_after=0.0)
        if decision.remove_action:
            self._remove_action(isvc)
        self._report(body, observed)
        for event_type, reason, message in decision.events:
            self._event(body, event_type, reason, message)
        waits = [w for w in (decision.requeue_after, settle) if w is not None]
        return Result(requeue_after=min(waits) if waits else None)

    def _decide(self, isvc: spec.InferenceService, body: Body) -> rollout.Decision:
        """The rollout's next move, from its state in status and what the cache shows."""
        revision = builders.spec_hash(isvc)
        stable = self._deployment(isvc, PREDICTOR)
        canary = self._deployment(isvc, routes.CANARY)
        state = rollout.RolloutState.from_status((body.get("status") or {}).get("rollout") or {})
        sample = None
        if state.phase == "Progressing" and self._metrics is not None and canary is not None:
            pods = self._cache.owned("v1", "Pod", isvc.namespace, isvc.name)
            sample = self._metrics.canary_sample(isvc, pods)
        key = router_metrics.WindowKey.of(isvc.namespace, isvc.name, state)
        observation = rollout.Observation(
            now=self._clock(),
            spec_revision=revision,
            stable_revision=_revision(stable),
            stable_rolled_out=_revision(stable) == revision
            and status.rollout({PREDICTOR: status.Workload(isvc.replicas, stable)})[0],
            canary_ready=_revision(canary) == revision and _available(canary) > 0,
            window=self._baselines.window(key, sample, start=False),
            action=isvc.annotations.get(ANNOTATION_ROLLOUT_ACTION),
        )
        decision = rollout.decide(isvc.rollout, state, observation)
        if decision.window_start:
            fresh = router_metrics.WindowKey.of(isvc.namespace, isvc.name, decision.state)
            self._baselines.window(fresh, sample, start=True)
        if not decision.canary:
            self._baselines.forget(isvc.namespace, isvc.name)
        return decision

    def _plan(
        self, isvc: spec.InferenceService, decision: rollout.Decision
    ) -> tuple[builders.Plan, float | None]:
        """What the builders render beyond the spec, the rollout's and the router's state; and
        when to look again for a departing canary's pods to go."""
        stable = self._deployment(isvc, PREDICTOR)
        template = None
        if not decision.stable_takes_spec and stable is not None:
            template = stable["spec"]["template"]
        canary_replicas, canary_weight, settle = 0, decision.canary_weight, None
        if decision.canary:
            steps = isvc.rollout.canary.steps
            step_weight = steps[min(decision.state.step, len(steps) - 1)]
            canary_replicas = rollout.canary_replicas(
                isvc.replicas, max(step_weight, decision.canary_weight)
            )
        elif (canary := self._deployment(isvc, routes.CANARY)) is not None:
            settle = self._settling(isvc, routes.CANARY)
            if settle is not None:
                # Out of the routes first, at weight 0; its pods go once the routers agree.
                canary_replicas = max(1, int((canary.get("spec") or {}).get("replicas") or 1))
                canary_weight = 0
        router = self._deployment(isvc, ROUTER)
        on_router = self._service_on_router(isvc)
        wanted = routing.router_in_front(isvc)
        plan = builders.Plan(
            stable_template=template,
            canary_replicas=canary_replicas,
            canary_weight=canary_weight,
            # A router leaving keeps serving until the stable Service has moved off it.
            router=wanted or on_router,
            service_to_router=wanted and (_available(router) > 0 or on_router),
            # A promotion with a canary serving beside the stable pods, and more than one of
            # them: roll them in place, so the GPUs the canary holds are not needed twice.
            stable_replaces_in_place=decision.canary
            and decision.stable_takes_spec
            and isvc.replicas > 1,
        )
        return plan, settle

    def _settling(self, isvc: spec.InferenceService, variant: str) -> float | None:
        """Seconds until the routers are known to serve a table that sends ``variant`` no
        traffic; None when they already do (or there is no router)."""
        live = self._cache.get("v1", "ConfigMap", isvc.namespace, router_objects.name(isvc))
        if live is None:
            return None
        try:
            table = routes.from_json((live.get("data") or {}).get(routes.CONFIGMAP_KEY, ""))
        except ValueError:
            return None
        if any(b.variant == variant and b.weight for r in table.routes for b in r.backends):
            return router_objects.ROUTES_SETTLE_SECONDS
        changed = _time((live["metadata"].get("annotations") or {}).get(ROUTES_CHANGED))
        if changed is None:
            return None
        left = router_objects.ROUTES_SETTLE_SECONDS - (self._clock() - changed).total_seconds()
        return left if left > 0 else None

    def _stamp_routes(self, isvc: spec.InferenceService, wanted: list[Body]) -> None:
        """Stamp the route table's ConfigMap with when its table last changed."""
        for child in wanted:
            if child["kind"] != "ConfigMap":
                continue
            live = self._cache.get("v1", "ConfigMap", isvc.namespace, child["metadata"]["name"])
            since = ((live or {}).get("metadata", {}).get("annotations") or {}).get(ROUTES_CHANGED)
            if live is None or live.get("data") != child["data"] or since is None:
                since = self._clock().strftime("%Y-%m-%dT%H:%M:%SZ")
            child["metadata"].setdefault("annotations", {})[ROUTES_CHANGED] = since

    def _router_pending(self, isvc: spec.InferenceService) -> str | None:
        """Why the stable Service does not reach the router yet, when it should."""
        if not routing.router_in_front(isvc) or self._service_on_router(isvc):
            return None
        return "the router is starting; the stable Service moves to it once it serves"

    def _service_on_router(self, isvc: spec.InferenceService) -> bool:
        """Whether the stable Service, as last seen, selects the router pods."""
        live = self._cache.get("v1", "Service", isvc.namespace, builders.service_name(isvc))
        selector = ((live or {}).get("spec") or {}).get("selector") or {}
        return bool(selector.get(LABEL_COMPONENT) == ROUTER)

    def _deployment(self, isvc: spec.InferenceService, component: str) -> Body | None:
        return self._cache.get(
            "apps/v1", "Deployment", isvc.namespace, builders.deployment_name(isvc, component)
        )

    def _remove_action(self, isvc: spec.InferenceService) -> None:
        """Take the rollout-action annotation off once acted on, so it never touches a later
        rollout; the InferenceService's next watch event brings the change to the cache."""
        try:
            self._kube.remove_annotation(
                spec.API_VERSION, spec.KIND, isvc.namespace, isvc.name, ANNOTATION_ROLLOUT_ACTION
            )
        except PermanentError as exc:
            log.warning(
                "%s/%s: could not remove %s: %s",
                isvc.namespace,
                isvc.name,
                ANNOTATION_ROLLOUT_ACTION,
                exc,
            )

    def _converge(
        self,
        isvc: spec.InferenceService,
        wanted: list[Body],
        rollout_status: Mapping[str, Any],
    ) -> status.Observed | None:
        """Apply each child that differs from its desired form, delete the ones no longer
        desired, and observe the results; None when a missing child was left for the next
        run because this one already created another."""
        children = [stamped(child) for child in wanted]
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
            component = builders.variant_of(want)
            if want["kind"] == "Deployment" and component != ROUTER:
                have = current[("Deployment", want["metadata"]["name"])]
                workloads[component] = _workload(want, have)
        # Status reads pods only while a rollout is unfinished (they say why it is stuck);
        # the providers are learned from them all along.
        rolled_out, _ = status.rollout(workloads)
        pending = self._router_pending(isvc)
        pods = self._cache.owned("v1", "Pod", isvc.namespace, isvc.name)
        return status.Observed(
            isvc.generation,
            apply_error=apply_error,
            workloads=workloads,
            gpus=builders.total_gpus(isvc, {c: w.replicas for c, w in workloads.items()}),
            rollout=rollout_status,
            pending=pending,
            url=builders.service_url(isvc),
            pods=() if rolled_out and pending is None else tuple(pods),
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
        if status.unchanged(old, new):
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


def _time(text: str | None) -> datetime.datetime | None:
    """An RFC 3339 UTC timestamp as written by this module; None when absent or garbled."""
    try:
        parsed = datetime.datetime.strptime(text or "", "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return None
    return parsed.replace(tzinfo=datetime.UTC)


def _revision(deployment: Mapping[str, Any] | None) -> str:
    """The spec hash a Deployment's pod template carries; "" when there is none."""
    if deployment is None:
        return ""
    template = (deployment.get("spec") or {}).get("template") or {}
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(ANNOTATION_SPEC_HASH, ""))


def _available(deployment: Mapping[str, Any] | None) -> int:
    """Available replicas of an observed Deployment of the current generation."""
    if deployment is None:
        return 0
    st = deployment.get("status") or {}
    if int(st.get("observedGeneration") or 0) < int(deployment["metadata"].get("generation", 0)):
        return 0
    return int(st.get("availableReplicas") or 0)


def _controlled_by(meta: Mapping[str, Any], uid: str) -> bool:
    """Whether the object's controller ownerReference is the InferenceService ``uid``."""
    return any(
        ref.get("uid") == uid and ref.get("controller") for ref in meta.get("ownerReferences") or []
    )
