"""The reconcile loop for one InferenceService: observe, compute, diff, act, report.

Called by the kopf handlers in ``handlers.py`` (on the resource's own changes, on events of
its children, and on the periodic resync), always with just a namespace and a name: every run
reads the current object and children afresh, so it is level-based and any number of runs in
a row converge on the same state. A run that finds nothing to change makes no write at all.

Runs for the same object never overlap: kopf calls handlers of different resources (the
InferenceService, its Deployment, its Service) concurrently, so ``reconcile`` collapses
requests for an object that is already being reconciled into one more pass of that run.
"""

from __future__ import annotations

import datetime
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from . import builders, spec, status
from .diffing import needs_apply, stamped
from .errors import OperatorError, PermanentError, TemporaryError
from .kube import Kube

REPORTING_CONTROLLER = "serving.sluice.dev/sluice-operator"
# Events.k8s.io/v1 notes are limited to 1 KiB.
NOTE_LIMIT = 1024

log = logging.getLogger(__name__)

Body = dict[str, Any]
Clock = Callable[[], datetime.datetime]


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Reconciler:
    """Reconciles InferenceServices through one ``Kube`` client."""

    def __init__(self, kube: Kube, *, clock: Clock = _utc_now, instance: str = "") -> None:
        self._kube = kube
        self._clock = clock
        self._instance = instance or socket.gethostname()
        self._guard = threading.Lock()
        # Keys being reconciled now -> whether another run was asked for meanwhile.
        self._active: dict[tuple[str, str], bool] = {}
        # Keys whose last run failed temporarily -> when to try again (monotonic seconds).
        self._retry_at: dict[tuple[str, str], float] = {}

    def reconcile(self, namespace: str, name: str) -> None:
        """Bring one InferenceService's children and status in line with its spec.

        Asked while a run for the same object is in progress (a burst of child events), it
        returns at once and that run goes round once more, as a work queue collapses
        duplicate keys: no worker thread waits on another, and a burst costs two runs.
        Raises ``TemporaryError`` when the run should be retried; a spec or object the
        API server rejects is reported in status and events instead of raised.
        """
        key = (namespace, name)
        with self._guard:
            if key in self._active:
                self._active[key] = True
                return
            self._active[key] = False
        try:
            again = True
            while again:
                self._reconcile_once(namespace, name)
                with self._guard:
                    again = self._active[key]
                    self._active[key] = False
            with self._guard:
                self._retry_at.pop(key, None)
        except TemporaryError as exc:
            # Whoever asked meanwhile was told nothing: remember the key for ``due``.
            with self._guard:
                self._retry_at[key] = time.monotonic() + exc.delay
            raise
        finally:
            with self._guard:
                del self._active[key]

    def _reconcile_once(self, namespace: str, name: str) -> None:
        body = self._kube.get(spec.API_VERSION, spec.KIND, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return  # gone or going: owner references let the garbage collector finish
        generation = int(body["metadata"].get("generation", 0))
        try:
            isvc = spec.parse(body)
        except spec.SpecError as exc:
            self._report(body, status.Observed(generation, spec_error=str(exc)))
            return
        self._report(body, self._converge(isvc, body))

    def due(self) -> list[tuple[str, str]]:
        """Objects whose last run failed temporarily and whose retry delay has passed."""
        now = time.monotonic()
        with self._guard:
            return [key for key, at in self._retry_at.items() if at <= now]

    def resync(self, namespaces: Iterable[str] | None) -> int:
        """Reconcile every InferenceService (in ``namespaces``, or everywhere with None),
        the safety net for missed watch events. Returns how many runs failed; one object's
        failure does not stop the others."""
        failed = 0
        for namespace in namespaces if namespaces is not None else [None]:
            try:
                items = self._kube.list(spec.API_VERSION, spec.KIND, namespace)
            except OperatorError as exc:
                log.warning("resync: cannot list InferenceServices: %s", exc)
                failed += 1
                continue
            for item in items:
                meta = item["metadata"]
                try:
                    self.reconcile(meta["namespace"], meta["name"])
                except OperatorError as exc:
                    log.warning("resync of %s/%s failed: %s", meta["namespace"], meta["name"], exc)
                    failed += 1
        return failed

    def _converge(self, isvc: spec.InferenceService, body: Body) -> status.Observed:
        """Apply each child that differs from its desired form; observe the results."""
        children = builders.desired_children(isvc)
        current: dict[tuple[str, str], Body | None] = {}
        apply_error: str | None = None
        for child in children:
            want = stamped(child)
            kind, name = want["kind"], want["metadata"]["name"]
            have = self._kube.get(want["apiVersion"], kind, isvc.namespace, name)
            if needs_apply(want, have):
                try:
                    applied = self._kube.apply(want)
                except PermanentError as exc:
                    apply_error = f"{kind} {name}: {exc}"
                    current[(kind, name)] = have
                    continue
                verb = "Created" if have is None else "Updated"
                self._event(body, "Normal", verb, f"{verb} {kind} {name}")
                have = applied
            current[(kind, name)] = have
        deployment_name = builders.deployment_name(isvc)
        wanted = next(
            c
            for c in children
            if c["kind"] == "Deployment" and c["metadata"]["name"] == deployment_name
        )
        replicas = int(wanted["spec"].get("replicas", 1))
        deployment = current.get(("Deployment", deployment_name))
        pods: list[Body] = []
        if deployment is not None and not status.rolled_out(deployment, replicas):
            selector = wanted["spec"]["selector"]["matchLabels"]
            pods = self._kube.list("v1", "Pod", isvc.namespace, label_selector=_selector(selector))
        return status.Observed(
            isvc.generation,
            apply_error=apply_error,
            desired_replicas=replicas,
            gpus=builders.total_gpus(isvc),
            url=builders.service_url(isvc),
            deployment=deployment,
            pods=tuple(pods),
        )

    def _report(self, body: Body, observed: status.Observed) -> None:
        """Write status when it changed, then post an event for each notable transition."""
        old: Mapping[str, Any] = body.get("status") or {}
        new = status.compute(observed, old, self._clock().strftime("%Y-%m-%dT%H:%M:%SZ"))
        if all(old.get(key) == value for key, value in new.items()):
            return
        meta = body["metadata"]
        self._kube.patch_status(spec.API_VERSION, spec.KIND, meta["namespace"], meta["name"], new)
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


def _selector(match_labels: Mapping[str, str]) -> str:
    """A label selector string from matchLabels."""
    return ",".join(f"{key}={value}" for key, value in sorted(match_labels.items()))
