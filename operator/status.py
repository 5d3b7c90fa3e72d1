"""InferenceService status: conditions and counters computed from what was observed.

Pure functions, called by ``reconcile.py`` after it has read the children: any number of
Deployments (one per variant: the predictor, later a canary or A/B variants), each with the
replica count wanted of it, and the pods when a rollout is not done. The conditions
follow Kubernetes' own shape (type, status, reason, message, lastTransitionTime,
observedGeneration); ``lastTransitionTime`` is carried over while a condition's status stays
the same, so an unchanged world yields an identical status and no write.

``provider`` is the execution provider the stable variant's pods report (``providers.py``
learns it), the distinct ones comma-separated when its pods disagree. While none of them has
answered (pods starting, or unreachable from the operator) the last value stays, so it never
flaps; an engine whose pods report none (Triton) has none.

Condition types:
  ``Ready``          every desired Deployment is rolled out with every replica ready
  ``PodsScheduled``  every pod has a node; ``Unschedulable`` names the shortfall the scheduler saw
  ``SpecValid``      the spec can be honoured (``InvalidSpec`` otherwise)
  ``Reconciled``     the last apply of the children was accepted by the API server
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sluice.contracts.labels import PREDICTOR

from .pods import GPU_RESOURCE

READY = "Ready"
PODS_SCHEDULED = "PodsScheduled"
SPEC_VALID = "SpecValid"
RECONCILED = "Reconciled"
CONDITION_ORDER = (READY, PODS_SCHEDULED, SPEC_VALID, RECONCILED)

# (condition type, status, reason) -> (event type, event reason): what deserves an Event.
EVENTS: Mapping[tuple[str, str, str], tuple[str, str]] = {
    (SPEC_VALID, "False", "InvalidSpec"): ("Warning", "InvalidSpec"),
    (PODS_SCHEDULED, "False", "Unschedulable"): ("Warning", "Unschedulable"),
    (RECONCILED, "False", "ApplyFailed"): ("Warning", "ApplyFailed"),
    (READY, "True", "Available"): ("Normal", "Ready"),
}

_SCHEDULER_MESSAGE = re.compile(r"^(\d+)/(\d+) nodes are available: (.*?)(?: preemption:.*)?$")
# The scheduler separates its "N <why>" verdicts with ", " or ". ".
_SEPARATOR = re.compile(r"[.,]\s+")


@dataclass(frozen=True)
class Workload:
    """One variant's Deployment: the replicas wanted of it, and the object as observed
    (None before it exists)."""

    replicas: int
    deployment: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Observed:
    """What one reconcile learned; ``spec_error`` set means nothing else was computed.
    ``workloads`` maps each variant to its Deployment; ``providers`` each variant to the
    execution providers its pods reported (absent: none answered yet), or is None when the
    engine's pods report none."""

    generation: int
    spec_error: str | None = None
    apply_error: str | None = None
    workloads: Mapping[str, Workload] = field(default_factory=dict)
    gpus: int = 0
    url: str = ""
    pods: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)
    providers: Mapping[str, tuple[str, ...]] | None = field(default_factory=dict)
    rollout: Mapping[str, Any] | None = None
    # Why the InferenceService is not serving yet beyond its workloads (the router starting).
    pending: str | None = None

    @property
    def replicas(self) -> int:
        """Replicas wanted across every variant."""
        return sum(w.replicas for w in self.workloads.values())

    @property
    def ready_replicas(self) -> int:
        """Ready replicas across every variant, as their Deployments report them."""
        return sum(
            int(((w.deployment or {}).get("status") or {}).get("readyReplicas") or 0)
            for w in self.workloads.values()
        )


@dataclass(frozen=True)
class Condition:
    """One condition before timestamps are decided."""

    type: str
    status: str
    reason: str
    message: str


def compute(observed: Observed, old: Mapping[str, Any], now: str) -> dict[str, Any]:
    """The whole new status; ``old`` is the current status, ``now`` an RFC 3339 timestamp."""
    old_conditions = {c.get("type"): c for c in old.get("conditions") or []}
    status: dict[str, Any] = {"observedGeneration": observed.generation}
    if observed.spec_error is not None:
        fresh = [
            Condition(READY, "False", "InvalidSpec", observed.spec_error),
            Condition(SPEC_VALID, "False", "InvalidSpec", observed.spec_error),
        ]
        for key in (
            "replicas",
            "readyReplicas",
            "replicasSummary",
            "gpus",
            "url",
            "provider",
            "rollout",
        ):
            if key in old:
                status[key] = old[key]
    else:
        ready = observed.ready_replicas
        status.update(
            replicas=observed.replicas,
            readyReplicas=ready,
            replicasSummary=f"{ready}/{observed.replicas}",
            gpus=observed.gpus,
            url=observed.url,
        )
        provider = _provider(observed, old)
        if provider is not None or "provider" in old:
            status["provider"] = provider  # None removes it (a JSON merge patch)
        if observed.rollout is not None:
            status["rollout"] = dict(observed.rollout)
        fresh = _conditions(observed, ready)
    status["conditions"] = _merge(fresh, old_conditions, observed.generation, now)
    return status


def unchanged(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether merge-patching ``new`` onto ``old`` would change nothing: a None in ``new``
    deletes a key, so it equals an absent one."""
    return all(_pruned(old.get(key)) == _pruned(value) for key, value in new.items())


def _pruned(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _pruned(v) for k, v in value.items() if v is not None}
    return value


def events(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(event type, reason, message) for each condition that newly entered a notable state."""
    before = {c["type"]: (c["status"], c["reason"]) for c in old.get("conditions") or []}
    found = []
    for cond in new.get("conditions") or []:
        state = (cond["status"], cond["reason"])
        event = EVENTS.get((cond["type"], *state))
        if event is not None and before.get(cond["type"]) != state:
            found.append((*event, cond["message"]))
    return found


def _provider(observed: Observed, old: Mapping[str, Any]) -> str | None:
    """The stable variant's execution providers as reported, or the last value while none
    of its pods has answered; None for an engine that reports none."""
    if observed.providers is None:
        return None
    reported = observed.providers.get(PREDICTOR)
    if reported:
        return ",".join(reported)
    prior = old.get("provider")
    return str(prior) if prior else None


def _conditions(observed: Observed, ready: int) -> list[Condition]:
    """Conditions for a valid spec from the Deployments' rollouts and their pods."""
    desired = observed.replicas
    rolled_out, progress = rollout(observed.workloads)
    if rolled_out and observed.pending is not None:
        rolled_out, progress = False, observed.pending
    scheduled = _scheduling(observed.pods, rolled_out)
    found = [Condition(SPEC_VALID, "True", "Valid", "the spec can be honoured")]
    if observed.apply_error is not None:
        found.append(Condition(RECONCILED, "False", "ApplyFailed", observed.apply_error))
    else:
        found.append(Condition(RECONCILED, "True", "Applied", "children match the spec"))
    found.append(scheduled)
    if observed.apply_error is not None:
        found.append(Condition(READY, "False", "ApplyFailed", observed.apply_error))
    elif rolled_out:
        found.append(Condition(READY, "True", "Available", f"{ready}/{desired} replicas ready"))
    elif scheduled.reason == "Unschedulable":
        found.append(Condition(READY, "False", "Unschedulable", scheduled.message))
    else:
        found.append(Condition(READY, "False", "RolloutInProgress", progress))
    return found


def rollout(workloads: Mapping[str, Workload]) -> tuple[bool, str]:
    """Whether every variant's Deployment is rolled out, and how far the others are; with
    several variants, each unfinished one is named."""
    pending = []
    for variant, workload in workloads.items():
        done, progress = _rollout(variant, workload.deployment, workload.replicas)
        if not done:
            pending.append(progress if len(workloads) == 1 else f"{variant}: {progress}")
    return not pending, "; ".join(pending)


def _rollout(variant: str, deployment: Mapping[str, Any] | None, desired: int) -> tuple[bool, str]:
    """Whether the Deployment runs ``desired`` up-to-date, available replicas and no others,
    and how far it is when not."""
    if deployment is None:
        return False, f"the {variant} Deployment does not exist yet"
    st = deployment.get("status") or {}
    if int(st.get("observedGeneration") or 0) < int(deployment["metadata"].get("generation", 0)):
        return False, "the Deployment controller has not seen the latest spec yet"
    updated = int(st.get("updatedReplicas") or 0)
    total = int(st.get("replicas") or 0)
    available = int(st.get("availableReplicas") or 0)
    ready = int(st.get("readyReplicas") or 0)
    done = updated == desired and total == desired and available >= desired
    return done, f"{ready}/{desired} replicas ready, {updated} updated, {total} in total"


def _scheduling(pods: Iterable[Mapping[str, Any]], rolled_out: bool) -> Condition:
    """PodsScheduled from the pods' own PodScheduled conditions, set by the scheduler."""
    if rolled_out:
        return Condition(PODS_SCHEDULED, "True", "Scheduled", "every pod has a node")
    live = [p for p in pods if _live(p)]
    stuck = [p for p in live if _unschedulable_message(p) is not None]
    if stuck:
        first = stuck[0]
        detail = _shortfall(_unschedulable_message(first) or "", _pod_gpus(first))
        message = f"{len(stuck)}/{len(live)} pods unschedulable: {detail}"
        return Condition(PODS_SCHEDULED, "False", "Unschedulable", message)
    if not live:
        return Condition(PODS_SCHEDULED, "Unknown", "Pending", "no pods created yet")
    waiting = sum(1 for p in live if not (p.get("spec") or {}).get("nodeName"))
    if waiting:
        message = f"{waiting}/{len(live)} pods waiting for the scheduler"
        return Condition(PODS_SCHEDULED, "Unknown", "Pending", message)
    return Condition(PODS_SCHEDULED, "True", "Scheduled", "every pod has a node")


def _live(pod: Mapping[str, Any]) -> bool:
    """A pod that counts: not terminating and not finished."""
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def _unschedulable_message(pod: Mapping[str, Any]) -> str | None:
    """The scheduler's message when it marked the pod unschedulable, else None."""
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if (cond.get("type"), cond.get("status"), cond.get("reason")) == (
            "PodScheduled",
            "False",
            "Unschedulable",
        ):
            return str(cond.get("message") or "no node fits the pod")
    return None


def _pod_gpus(pod: Mapping[str, Any]) -> int:
    """GPUs one pod asks for: the sum of its containers' nvidia.com/gpu limits."""
    total = 0
    for container in (pod.get("spec") or {}).get("containers") or []:
        limits = (container.get("resources") or {}).get("limits") or {}
        total += int(limits.get(GPU_RESOURCE, 0))
    return total


def _shortfall(message: str, gpus: int) -> str:
    """Rephrase "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: ..."
    as the GPU shortfall it is; other scheduler verdicts are quoted as they are."""
    match = _SCHEDULER_MESSAGE.match(message.strip())
    if match is None:
        return message
    fit, total, listed = match.groups()
    verdicts = [v.strip(" .,") for v in _SEPARATOR.split(listed) if v[:1].isdigit()]
    reasons = ", ".join(verdicts) or listed.strip(" .,")
    # Only "Insufficient nvidia.com/gpu" is a shortfall: a node can also turn a pod away for
    # an untolerated taint {nvidia.com/gpu: ...} with GPUs to spare.
    if verdicts and all(f"Insufficient {GPU_RESOURCE}" in v for v in verdicts):
        return f"{fit}/{total} nodes have {gpus} {GPU_RESOURCE} free ({reasons})"
    if gpus == 0:
        return f"{fit}/{total} nodes can run the pod ({reasons})"
    return f"{fit}/{total} nodes can run a pod needing {gpus} {GPU_RESOURCE} ({reasons})"


def _merge(
    fresh: list[Condition], old: Mapping[Any, Mapping[str, Any]], generation: int, now: str
) -> list[dict[str, Any]]:
    """Conditions as dicts in a fixed order; unchanged statuses keep their transition time,
    and conditions this reconcile did not compute are kept as they were."""
    by_type = {c.type: c for c in fresh}
    merged = []
    for kind in CONDITION_ORDER:
        cond = by_type.get(kind)
        if cond is None:
            if kind in old:
                merged.append(dict(old[kind]))
            continue
        previous = old.get(kind) or {}
        since = (
            previous.get("lastTransitionTime") if previous.get("status") == cond.status else None
        )
        merged.append(
            {
                "type": cond.type,
                "status": cond.status,
                "reason": cond.reason,
                "message": cond.message,
                "lastTransitionTime": since or now,
                "observedGeneration": generation,
            }
        )
    return merged
