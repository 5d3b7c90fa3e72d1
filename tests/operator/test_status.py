"""Unit tests for sluice.operator.status: conditions, counters and events from observations."""

from __future__ import annotations

from typing import Any

from sluice.operator import status
from sluice.operator.status import Observed

T1 = "2026-01-01T00:00:00Z"
T2 = "2026-01-01T00:05:00Z"
URL = "http://resnet.models.svc.cluster.local"
FIELDS = {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"}
GPU_SHORTFALL = (
    "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are "
    "available: 3 No preemption victims found for incoming pod.."
)
MISSING_PVC = (
    '0/3 nodes are available: persistentvolumeclaim "cache" not found. preemption: 0/3 nodes '
    "are available: 3 Preemption is not helpful for scheduling.."
)


def deployment(
    *, generation: int = 2, seen: int = 2, ready: int = 2, updated: int = 2, total: int = 2
) -> dict[str, Any]:
    """A predictor Deployment as the API server returns it (zero counters are omitted)."""
    counters = {
        "replicas": total,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": ready,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "resnet-predictor", "namespace": "models", "generation": generation},
        "spec": {"replicas": 2},
        "status": {"observedGeneration": seen, **{k: v for k, v in counters.items() if v}},
    }


def pod(
    name: str, *, gpus: int = 1, node: str | None = "gpu-0", unschedulable: str | None = None
) -> dict[str, Any]:
    """A predictor pod; ``unschedulable`` is the scheduler's PodScheduled message."""
    limits = {"cpu": "2", "nvidia.com/gpu": str(gpus)} if gpus else {"cpu": "2"}
    spec: dict[str, Any] = {
        "containers": [{"name": "runtime", "resources": {"limits": limits, "requests": limits}}]
    }
    if node is not None:
        spec["nodeName"] = node
    conditions: list[dict[str, Any]] = []
    if unschedulable is not None:
        conditions.append(
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": unschedulable,
                "lastProbeTime": None,
                "lastTransitionTime": T1,
            }
        )
    return {
        "metadata": {"name": name, "namespace": "models"},
        "spec": spec,
        "status": {"phase": "Pending" if node is None else "Running", "conditions": conditions},
    }


def stuck(name: str, message: str = GPU_SHORTFALL, *, gpus: int = 1) -> dict[str, Any]:
    return pod(name, gpus=gpus, node=None, unschedulable=message)


def observe(**changes: Any) -> Observed:
    """Two replicas of one GPU each, generation 2, fully rolled out unless ``changes`` say;
    ``deployment=`` replaces the predictor's Deployment (None: not created yet)."""
    predictor = status.Workload(2, changes.pop("deployment", deployment()))
    base: dict[str, Any] = {
        "generation": 2,
        "workloads": {"predictor": predictor},
        "gpus": 2,
        "url": URL,
    }
    return Observed(**{**base, **changes})


def rolled_out(deployment: dict[str, Any] | None, replicas: int = 2) -> bool:
    return status.rollout({"predictor": status.Workload(replicas, deployment)})[0]


def by_type(st: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in st["conditions"]}


def state(st: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]}


# Ready and the counters.


def test_rolled_out_deployment_is_ready() -> None:
    st = status.compute(observe(), {}, T1)
    assert state(st) == {
        "Ready": ("True", "Available"),
        "PodsScheduled": ("True", "Scheduled"),
        "SpecValid": ("True", "Valid"),
        "Reconciled": ("True", "Applied"),
    }
    assert [c["type"] for c in st["conditions"]] == list(status.CONDITION_ORDER)
    assert by_type(st)["Ready"]["message"] == "2/2 replicas ready"
    assert st["observedGeneration"] == 2
    assert (st["replicas"], st["readyReplicas"], st["replicasSummary"]) == (2, 2, "2/2")
    assert (st["gpus"], st["url"]) == (2, URL)


def test_every_condition_has_the_full_shape_and_the_generation() -> None:
    for observed in (observe(), observe(deployment=None), observe(spec_error="bad")):
        for cond in status.compute(observed, {}, T1)["conditions"]:
            assert set(cond) == FIELDS
            assert cond["observedGeneration"] == 2
            assert cond["lastTransitionTime"] == T1


def test_rollout_in_progress_says_how_far_it_got() -> None:
    observed = observe(
        deployment=deployment(ready=1, updated=2, total=3), pods=(pod("a"), pod("b"), pod("c"))
    )
    st = status.compute(observed, {}, T1)
    ready = by_type(st)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "RolloutInProgress")
    assert ready["message"] == "1/2 replicas ready, 2 updated, 3 in total"
    assert state(st)["PodsScheduled"] == ("True", "Scheduled")
    assert st["replicasSummary"] == "1/2"
    assert not rolled_out(observed.workloads["predictor"].deployment, 2)


def test_a_spec_the_deployment_controller_has_not_seen_is_not_ready() -> None:
    stale = deployment(generation=3, seen=2)
    st = status.compute(observe(deployment=stale), {}, T1)
    assert state(st)["Ready"] == ("False", "RolloutInProgress")
    assert "has not seen the latest spec" in by_type(st)["Ready"]["message"]
    assert not rolled_out(stale, 2)
    assert rolled_out(deployment(), 2)


def test_missing_deployment_and_pods_waiting_for_the_scheduler() -> None:
    st = status.compute(observe(deployment=None), {}, T1)
    assert by_type(st)["Ready"]["message"] == "the predictor Deployment does not exist yet"
    assert by_type(st)["PodsScheduled"]["status"] == "Unknown"
    assert by_type(st)["PodsScheduled"]["message"] == "no pods created yet"
    assert (st["readyReplicas"], st["replicasSummary"]) == (0, "0/2")

    rolling = observe(
        deployment=deployment(ready=0, updated=2), pods=(pod("a"), pod("b", node=None))
    )
    scheduled = by_type(status.compute(rolling, {}, T1))["PodsScheduled"]
    assert (scheduled["status"], scheduled["reason"]) == ("Unknown", "Pending")
    assert scheduled["message"] == "1/2 pods waiting for the scheduler"


# PodsScheduled: the scheduler's verdicts.


def test_gpu_shortfall_is_named_from_the_scheduler_message() -> None:
    observed = observe(
        deployment=deployment(ready=1, updated=2, total=2),
        pods=(pod("a", gpus=2), stuck("b", gpus=2)),
    )
    st = status.compute(observed, {}, T1)
    expected = (
        "1/2 pods unschedulable: "
        "0/3 nodes have 2 nvidia.com/gpu free (3 Insufficient nvidia.com/gpu)"
    )
    assert by_type(st)["PodsScheduled"]["status"] == "False"
    assert by_type(st)["PodsScheduled"]["reason"] == "Unschedulable"
    assert by_type(st)["PodsScheduled"]["message"] == expected
    assert state(st)["Ready"] == ("False", "Unschedulable")
    assert by_type(st)["Ready"]["message"] == expected


def test_mixed_verdicts_are_not_called_a_gpu_shortfall() -> None:
    message = "0/3 nodes are available: 1 Insufficient memory, 2 Insufficient nvidia.com/gpu."
    st = status.compute(observe(deployment=None, pods=(stuck("a", message),)), {}, T1)
    assert by_type(st)["PodsScheduled"]["message"] == (
        "1/1 pods unschedulable: 0/3 nodes can run a pod needing 1 nvidia.com/gpu "
        "(1 Insufficient memory, 2 Insufficient nvidia.com/gpu)"
    )


def test_a_missing_volume_claim_is_not_called_a_gpu_shortfall() -> None:
    st = status.compute(observe(deployment=None, pods=(stuck("a", MISSING_PVC),)), {}, T1)
    cond = by_type(st)["PodsScheduled"]
    assert (cond["status"], cond["reason"]) == ("False", "Unschedulable")
    assert 'persistentvolumeclaim "cache" not found' in cond["message"]
    assert "free" not in cond["message"]
    assert "Insufficient" not in cond["message"]


def test_a_cpu_only_pod_kept_off_gpu_nodes_is_not_a_gpu_shortfall() -> None:
    taint = "3 node(s) had untolerated taint {nvidia.com/gpu: present}"
    for verdict in (taint, "3 Insufficient cpu"):
        message = f"0/3 nodes are available: {verdict}."
        pods = (stuck("a", message, gpus=0),)
        st = status.compute(observe(gpus=0, deployment=None, pods=pods), {}, T1)
        assert by_type(st)["PodsScheduled"]["message"] == (
            f"1/1 pods unschedulable: 0/3 nodes can run the pod ({verdict})"
        )


def test_an_unfamiliar_scheduler_message_is_quoted_as_it_is() -> None:
    st = status.compute(observe(deployment=None, pods=(stuck("a", "no quota left"),)), {}, T1)
    assert by_type(st)["PodsScheduled"]["message"] == "1/1 pods unschedulable: no quota left"


def test_terminating_and_finished_pods_do_not_count() -> None:
    leaving = stuck("old")
    leaving["metadata"]["deletionTimestamp"] = T1
    failed = stuck("failed")
    failed["status"]["phase"] = "Failed"
    observed = observe(deployment=deployment(ready=0), pods=(leaving, failed, pod("a"), pod("b")))
    assert state(status.compute(observed, {}, T1))["PodsScheduled"] == ("True", "Scheduled")


# SpecValid and Reconciled.


def test_invalid_spec_reports_the_error_and_keeps_the_rest() -> None:
    before = status.compute(observe(), {}, T1)
    error = "spec.resources.gpus: must be at most 8"
    st = status.compute(Observed(generation=3, spec_error=error), before, T2)
    conds = by_type(st)
    assert state(st)["SpecValid"] == ("False", "InvalidSpec")
    assert state(st)["Ready"] == ("False", "InvalidSpec")
    assert conds["SpecValid"]["message"] == conds["Ready"]["message"] == error
    assert conds["SpecValid"]["observedGeneration"] == conds["Ready"]["observedGeneration"] == 3
    assert conds["Reconciled"] == by_type(before)["Reconciled"]
    assert conds["PodsScheduled"] == by_type(before)["PodsScheduled"]
    assert st["observedGeneration"] == 3
    assert (st["replicasSummary"], st["gpus"], st["url"]) == ("2/2", 2, URL)

    first = status.compute(Observed(generation=1, spec_error=error), {}, T1)
    assert [c["type"] for c in first["conditions"]] == ["Ready", "SpecValid"]
    assert "replicas" not in first
    assert "url" not in first


def test_apply_error_is_reported_on_reconciled_and_ready() -> None:
    error = 'Deployment resnet-predictor: spec.template.spec.affinity: Invalid value: "x"'
    st = status.compute(observe(apply_error=error), {}, T1)
    conds = by_type(st)
    assert state(st)["Reconciled"] == ("False", "ApplyFailed")
    assert state(st)["Ready"] == ("False", "ApplyFailed")
    assert conds["Reconciled"]["message"] == conds["Ready"]["message"] == error
    assert state(st)["SpecValid"] == ("True", "Valid")


# lastTransitionTime.


def test_an_unchanged_world_yields_an_identical_status() -> None:
    first = status.compute(observe(), {}, T1)
    assert status.compute(observe(), first, T2) == first


def test_transition_time_moves_only_when_the_status_flips() -> None:
    progressing = observe(deployment=deployment(ready=0, updated=0, total=0), pods=(stuck("a"),))
    first = status.compute(progressing, {}, T1)
    assert by_type(first)["Ready"]["reason"] == "Unschedulable"
    # Same status, new reason and message: the transition time stays.
    rolling = observe(deployment=deployment(ready=1), pods=(pod("a"), pod("b")))
    second = by_type(status.compute(rolling, first, T2))
    assert (second["Ready"]["reason"], second["Ready"]["lastTransitionTime"]) == (
        "RolloutInProgress",
        T1,
    )
    # PodsScheduled and Ready flip: their transition times move; SpecValid stays.
    third = by_type(status.compute(observe(), first, T2))
    assert third["Ready"]["lastTransitionTime"] == T2
    assert third["PodsScheduled"]["lastTransitionTime"] == T2
    assert third["SpecValid"]["lastTransitionTime"] == T1


# Events.


def test_events_on_transitions_only() -> None:
    rolling = status.compute(observe(deployment=deployment(ready=1)), {}, T1)
    assert status.events({}, rolling) == []
    ready = status.compute(observe(), rolling, T2)
    assert status.events(rolling, ready) == [("Normal", "Ready", "2/2 replicas ready")]
    assert status.events(ready, status.compute(observe(), ready, T2)) == []
    assert status.events(ready, ready) == []


def test_warning_events_for_invalid_spec_apply_failure_and_unschedulable() -> None:
    ready = status.compute(observe(), {}, T1)
    invalid = status.compute(Observed(generation=3, spec_error="bad gpus"), ready, T2)
    assert status.events(ready, invalid) == [("Warning", "InvalidSpec", "bad gpus")]
    failed = status.compute(observe(apply_error="rejected"), ready, T2)
    assert status.events(ready, failed) == [("Warning", "ApplyFailed", "rejected")]
    blocked = status.compute(observe(deployment=None, pods=(stuck("a"),)), ready, T2)
    ((kind, reason, message),) = status.events(ready, blocked)
    assert (kind, reason) == ("Warning", "Unschedulable")
    assert message.startswith("1/1 pods unschedulable: 0/3 nodes have 1 nvidia.com/gpu free")
    # Still blocked, with a different count: no second event.
    worse = status.compute(observe(deployment=None, pods=(stuck("a"), stuck("b"))), blocked, T2)
    assert status.events(blocked, worse) == []


def test_ready_again_after_a_dip_is_a_new_event() -> None:
    ready = status.compute(observe(), {}, T1)
    dipped = status.compute(observe(deployment=deployment(ready=1)), ready, T2)
    assert status.events(ready, dipped) == []
    again = status.compute(observe(), dipped, T2)
    assert status.events(dipped, again) == [("Normal", "Ready", "2/2 replicas ready")]


# Several variants.


def test_ready_only_when_every_variant_is_rolled_out() -> None:
    canary = {**deployment(ready=0, updated=0, total=0), "spec": {"replicas": 1}}
    workloads = {
        "predictor": status.Workload(2, deployment()),
        "canary": status.Workload(1, canary),
    }
    st = status.compute(observe(workloads=workloads), {}, T1)
    assert (st["replicas"], st["readyReplicas"], st["replicasSummary"]) == (3, 2, "2/3")
    assert state(st)["Ready"] == ("False", "RolloutInProgress")
    assert by_type(st)["Ready"]["message"] == "canary: 0/1 replicas ready, 0 updated, 0 in total"

    done = {**deployment(ready=1, updated=1, total=1), "spec": {"replicas": 1}}
    workloads["canary"] = status.Workload(1, done)
    st = status.compute(observe(workloads=workloads), st, T2)
    assert state(st)["Ready"] == ("True", "Available")
    assert by_type(st)["Ready"]["message"] == "3/3 replicas ready"


# The execution provider.

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def test_provider_is_the_stable_variants() -> None:
    assert "provider" not in status.compute(observe(), {}, T1)  # none answered yet
    providers = {"predictor": (CPU,), "canary": (CUDA,)}
    assert status.compute(observe(providers=providers), {}, T1)["provider"] == CPU


def test_pods_that_disagree_are_all_named() -> None:
    st = status.compute(observe(providers={"predictor": (CPU, CUDA)}), {}, T1)
    assert st["provider"] == f"{CPU},{CUDA}"


def test_provider_stays_while_no_pod_answers() -> None:
    first = status.compute(observe(providers={"predictor": (CUDA,)}), {}, T1)
    # New pods not asked yet, or pods the operator cannot reach: nothing changes.
    assert status.compute(observe(providers={}), first, T2) == first
    assert status.compute(observe(providers={"canary": (CPU,)}), first, T2) == first
    invalid = status.compute(Observed(generation=3, spec_error="bad"), first, T2)
    assert invalid["provider"] == CUDA


def test_an_engine_that_reports_no_provider_clears_it() -> None:
    first = status.compute(observe(providers={"predictor": (CUDA,)}), {}, T1)
    triton = status.compute(observe(providers=None), first, T2)
    assert triton["provider"] is None  # removes it: status is written as a JSON merge patch
    assert "provider" not in status.compute(observe(providers=None), {}, T2)
