"""Canary rollouts on real pods, judged on the router's metrics under real client traffic:
a good canary is promoted, a failing or a slow one is rolled back, paused / promote / abort
are obeyed, and an operator killed mid-rollout resumes at the same step.

One InferenceService serves every scenario in turn, 2 replicas of 1 GPU each: at the
canary's 20 % and 50 % steps it holds 1 extra GPU pod, never 2.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client
from sluice.contracts.api import GROUP, PLURAL, VERSION
from sluice.contracts.labels import ANNOTATION_ROLLOUT_ACTION

from e2e import inference
from e2e.cluster import model_store
from e2e.cluster import operator as sluice_operator
from e2e.cluster.client import Cluster
from e2e.cluster.fixtures import fresh_namespace
from e2e.cluster.waiting import wait_for
from e2e.load import Load
from e2e.system.conftest import Served, batch, classifier, leading_pod, model_uri, serve
from tests.integration.support import Isvcs

NAME = "cny"
MODEL = model_store.SAMPLE
ROLLOUT_TIMEOUT = 300.0
ROLLOUT = {
    "strategy": "Canary",
    "paused": False,
    "canary": {
        "steps": [20, 50],
        "stepSeconds": 4,
        "readyDeadlineSeconds": 180,
        "analysis": {
            "minRequests": 10,
            "maxErrorRate": 0.05,
            "maxP99LatencySeconds": 0.5,
            "deadlineSeconds": 120,
        },
    },
}


@pytest.fixture(scope="module")
def canary(sluice: Cluster, api: client.ApiClient) -> Iterator[tuple[Isvcs, Served]]:
    with fresh_namespace(api, fake_nodes=False) as namespace:
        isvcs = Isvcs(api, namespace)
        served = serve(
            isvcs, NAME, model_uri(sluice, 1), gpus=1, replicas=2, spec={"rollout": ROLLOUT}
        )
        yield isvcs, served


def rollout_status(isvcs: Isvcs) -> dict[str, Any]:
    found: dict[str, Any] = (isvcs.get(NAME).get("status") or {}).get("rollout") or {}
    return found


def watch_until(
    isvcs: Isvcs, phase: str, seen: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Poll the rollout's status until ``phase`` for the latest spec (handing each status to
    ``seen``)."""
    deadline = time.monotonic() + ROLLOUT_TIMEOUT
    while True:
        body = isvcs.get(NAME)
        status = body.get("status") or {}
        state = status.get("rollout") or {}
        if seen is not None:
            seen(body)
        current = status.get("observedGeneration") == body["metadata"]["generation"]
        if current and state.get("phase") == phase:
            return dict(state)
        if time.monotonic() > deadline:
            raise TimeoutError(f"rollout not {phase} in {ROLLOUT_TIMEOUT:.0f}s: {state}")
        time.sleep(0.5)


def annotate(isvcs: Isvcs, action: str) -> None:
    isvcs.custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        isvcs.namespace,
        PLURAL,
        NAME,
        {"metadata": {"annotations": {ANNOTATION_ROLLOUT_ACTION: action}}},
        _content_type="application/merge-patch+json",
    )


def canary_exists(isvcs: Isvcs) -> bool:
    names = [d.metadata.name for d in isvcs.apps.list_namespaced_deployment(isvcs.namespace).items]
    return f"{NAME}-canary" in names


def loads(cluster: Cluster, served: Served) -> tuple[Load, Load]:
    classify = classifier(cluster)
    return (
        Load(lambda: inference.HttpModel(served.http, MODEL), batch(), classify),
        Load(lambda: inference.GrpcModel(served.grpc, MODEL), batch(), classify),
    )


def reasons(isvcs: Isvcs) -> set[str]:
    return {e.reason for e in isvcs.events_for(NAME)}


def test_a_good_canary_is_promoted_holding_gpus_for_its_share(
    sluice: Cluster, canary: tuple[Isvcs, Served]
) -> None:
    isvcs, served = canary
    weights: list[int] = []
    gpus: list[int] = []

    def seen(body: dict[str, Any]) -> None:
        state = (body.get("status") or {}).get("rollout") or {}
        if state.get("phase") == "Progressing":
            weights.append(int(state.get("canaryWeight") or 0))
            gpus.append(int(body["status"].get("gpus") or 0))

    http, grpc = loads(sluice, served)
    with http, grpc:
        http.wait_answers(20)
        grpc.wait_answers(20)
        isvcs.patch_spec(NAME, {"model": {"uri": model_uri(sluice, 2)}})
        state = watch_until(isvcs, "Succeeded", seen)
        http.wait_answers(20, "v2")
        grpc.wait_answers(20, "v2")
    assert {20, 50} <= set(weights), weights
    # 2 stable pods of 1 GPU, and a canary sized by its share of 2: 1 pod, never 2.
    assert max(gpus) == 3, gpus
    # The last rollout's revision stays on record, now the stable one.
    assert state["stableRevision"] == state["canaryRevision"], state
    wait_for(lambda: not canary_exists(isvcs), timeout=60, what="the canary to be removed")
    for load in (http, grpc):
        assert load.report.failures == [], load.report
        assert set(load.report.answers) == {"v1", "v2"}, load.report
    assert {"RolloutStarted", "StepAdvanced", "AnalysisPassed", "RolloutSucceeded"} <= reasons(
        isvcs
    )


def test_a_canary_answering_5xx_is_rolled_back(
    sluice: Cluster, canary: tuple[Isvcs, Served]
) -> None:
    isvcs, served = canary
    stable = rollout_status(isvcs)["stableRevision"]
    http, grpc = loads(sluice, served)
    with http, grpc:
        http.wait_answers(20)
        isvcs.patch_spec(NAME, {"model": {"uri": f"{sluice.models_url}/{model_store.FAULTY}"}})
        state = watch_until(isvcs, "RolledBack")
        wait_for(lambda: not canary_exists(isvcs), timeout=60, what="the canary to be removed")
        before = len(http.report.failures) + len(grpc.report.failures)
        http.wait_answers(30, "v2")
        grpc.wait_answers(30, "v2")
    assert state["stableRevision"] == stable, state
    assert state["failedRevision"], state
    assert state["analysis"]["verdict"] == "Failed", state
    # Only the canary failed requests, and only while it had traffic.
    assert len(http.report.failures) + len(grpc.report.failures) == before
    assert "RolledBack" in reasons(isvcs)
    # The failed revision is not retried while the spec stays as it is.
    time.sleep(6)
    assert rollout_status(isvcs)["phase"] == "RolledBack"
    assert not canary_exists(isvcs)


def test_a_canary_slower_than_its_p99_bound_is_rolled_back(
    sluice: Cluster, canary: tuple[Isvcs, Served]
) -> None:
    isvcs, served = canary
    http, grpc = loads(sluice, served)
    with http, grpc:
        http.wait_answers(20)
        isvcs.patch_spec(NAME, {"model": {"uri": f"{sluice.models_url}/{model_store.SLOW}"}})
        state = watch_until(isvcs, "RolledBack")
    assert state["analysis"]["p99LatencySeconds"] > 0.5, state
    assert http.report.failures == [], http.report
    assert grpc.report.failures == [], grpc.report


def test_paused_holds_the_step_and_promote_finishes_it(
    sluice: Cluster, canary: tuple[Isvcs, Served]
) -> None:
    isvcs, served = canary
    http, grpc = loads(sluice, served)
    with http, grpc:
        http.wait_answers(20)
        isvcs.patch_spec(
            NAME,
            {
                "model": {"uri": model_uri(sluice, 1)},
                "rollout": {**ROLLOUT, "paused": True},
            },
        )
        held = watch_until(isvcs, "Paused")
        time.sleep(10)  # over two steps' time
        still = rollout_status(isvcs)
        assert (still["phase"], still["step"]) == ("Paused", held["step"]), still
        annotate(isvcs, "promote")
        state = watch_until(isvcs, "Succeeded")
        http.wait_answers(20, "v1")
    assert state["lastAction"].startswith("promote"), state
    assert ANNOTATION_ROLLOUT_ACTION not in (isvcs.get(NAME)["metadata"].get("annotations") or {})
    assert http.report.failures == []
    assert grpc.report.failures == []


def test_abort_returns_all_traffic_to_stable(sluice: Cluster, canary: tuple[Isvcs, Served]) -> None:
    isvcs, served = canary
    isvcs.patch_spec(NAME, {"model": {"uri": model_uri(sluice, 2)}, "rollout": ROLLOUT})
    watch_until(isvcs, "Progressing")
    annotate(isvcs, "abort")
    state = watch_until(isvcs, "Aborted")
    wait_for(lambda: not canary_exists(isvcs), timeout=60, what="the canary to be removed")
    assert state["lastAction"].startswith("abort"), state
    assert ANNOTATION_ROLLOUT_ACTION not in (isvcs.get(NAME)["metadata"].get("annotations") or {})
    answer = inference.HttpModel(served.http, MODEL)
    try:
        assert {classifier(sluice)(answer.infer(batch())) for _ in range(20)} == {"v1"}
    finally:
        answer.close()


def test_an_operator_killed_mid_rollout_resumes_at_the_same_step(
    sluice: Cluster, canary: tuple[Isvcs, Served], api: client.ApiClient
) -> None:
    isvcs, served = canary
    steps: list[int] = []

    def seen(body: dict[str, Any]) -> None:
        state = (body.get("status") or {}).get("rollout") or {}
        if state.get("phase") == "Progressing":
            steps.append(int(state.get("step") or 0))

    http, grpc = loads(sluice, served)
    slower = {**ROLLOUT, "canary": {**ROLLOUT["canary"], "steps": [20, 40, 60], "stepSeconds": 8}}  # type: ignore[dict-item]
    with http, grpc:
        http.wait_answers(20)
        # v2 with its own batching: a revision the abort above did not mark failed.
        isvcs.patch_spec(
            NAME,
            {
                "model": {"uri": model_uri(sluice, 2)},
                "runtime": {"batching": {"maxBatchSize": 16}},
                "rollout": slower,
            },
        )
        wait_for(
            lambda: (
                rollout_status(isvcs).get("step", 0) >= 1
                and rollout_status(isvcs).get("phase") == "Progressing"
            ),
            timeout=ROLLOUT_TIMEOUT,
            what="the rollout's second step",
        )
        at = rollout_status(isvcs)["step"]
        leader = leading_pod(api)
        client.CoreV1Api(api).delete_namespaced_pod(
            leader, sluice_operator.NAMESPACE, grace_period_seconds=0
        )
        steps.clear()
        watch_until(isvcs, "Succeeded", seen)
    assert steps, "no Progressing status seen after the restart"
    assert min(steps) >= at, (at, steps)
    assert http.report.failures == []
    assert grpc.report.failures == []
